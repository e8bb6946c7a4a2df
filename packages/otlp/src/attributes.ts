/** Converting between OTLP attribute lists and plain JavaScript values. */
import type { AnyValue, KeyValue } from './types';

export type AttributeValue = string | number | boolean | AttributeValue[] | { [key: string]: AttributeValue } | null;

/** The plain value an AnyValue holds; 64-bit integers beyond 2^53 stay decimal strings. */
export function fromAnyValue(v: AnyValue | undefined): AttributeValue {
  if (!v) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) {
    const n = Number(v.intValue);
    return Number.isSafeInteger(n) ? n : String(v.intValue);
  }
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(fromAnyValue);
  if (v.kvlistValue) return attributesToRecord(v.kvlistValue.values);
  if (v.bytesValue !== undefined) return v.bytesValue;
  return null;
}

export function attributesToRecord(kvs: KeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of kvs ?? []) out[kv.key] = fromAnyValue(kv.value);
  return out;
}

export function toAnyValue(v: AttributeValue): AnyValue {
  if (v === null) return {};
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
  if (Array.isArray(v)) return { arrayValue: { values: v.map(toAnyValue) } };
  return { kvlistValue: { values: recordToAttributes(v) } };
}

/** Attributes in key order; null and undefined values are left out (OTLP has no null). */
export function recordToAttributes(record: Record<string, AttributeValue | undefined>): KeyValue[] {
  // One loop, no [key, value] pair per attribute: this runs for every span the bridge sends.
  const out: KeyValue[] = [];
  for (const key of Object.keys(record)) {
    const value = record[key];
    if (value !== undefined && value !== null) out.push({ key, value: toAnyValue(value) });
  }
  return out;
}
