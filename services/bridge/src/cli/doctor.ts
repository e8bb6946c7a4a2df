/**
 * `ccbridge doctor`: reads this shell's Claude Code settings and says what is wrong (checks.ts),
 * then sends a synthetic turn where Claude Code would send it and waits until its root shows
 * in LLMFlow: the whole path, Collector and bridge included, without running Claude Code.
 *
 * `ccbridge send-fixture`: only the second half, to an endpoint given on the command line.
 */
import { checkClaudeCodeEnv, logsTarget, type Finding, type LogsTarget, type Protocol } from './checks';
import { sendTurn, syntheticTurn, waitInLlmflow } from './turn';
import { EXIT, UsageError, answer, flag, settings, type Args } from './io';

interface Delivery {
  target: LogsTarget;
  sent: boolean;
  answered?: string;
  error?: string;
  llmflow: string;
  rootSpanId: string;
  traceId: string;
  /** Whether the turn's root showed in LLMFlow (undefined: not waited for). */
  arrived?: boolean;
  seconds?: number;
}

function timeoutOf(args: Args): number {
  const raw = flag(args, 'timeout') ?? '30';
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError('--timeout takes seconds above 0');
  return seconds * 1000;
}

async function deliver(
  target: LogsTarget,
  llmflow: string,
  wait: boolean,
  timeoutMs: number,
  headers: Record<string, string>,
): Promise<Delivery> {
  const turn = syntheticTurn();
  const delivery: Delivery = { target, sent: false, llmflow, rootSpanId: turn.rootSpanId, traceId: turn.traceId };
  const started = Date.now();
  try {
    delivery.answered = await sendTurn(target, turn.request, headers);
    delivery.sent = true;
  } catch (err) {
    delivery.error = (err as Error).cause
      ? `${(err as Error).message}: ${String(((err as Error).cause as Error).message ?? (err as Error).cause)}`
      : (err as Error).message;
    return delivery;
  }
  if (wait) {
    delivery.arrived = await waitInLlmflow(llmflow, turn.rootSpanId, timeoutMs);
    delivery.seconds = Math.round((Date.now() - started) / 100) / 10;
  }
  return delivery;
}

/** OTEL_EXPORTER_OTLP_HEADERS (`key=value,key=value`), as Claude Code would send them. */
function otlpHeaders(env: NodeJS.ProcessEnv): Record<string, string> {
  const raw = env.OTEL_EXPORTER_OTLP_LOGS_HEADERS ?? env.OTEL_EXPORTER_OTLP_HEADERS ?? '';
  return Object.fromEntries(
    raw
      .split(',')
      .map((kv) => kv.split('='))
      .filter((kv) => kv.length >= 2 && kv[0]!.trim())
      .map(([k, ...v]) => [k!.trim(), decodeURIComponent(v.join('=').trim())]),
  );
}

function deliveryLines(d: Delivery): string[] {
  const lines = [
    `sent a synthetic turn over ${d.target.protocol} to ${d.target.url}: ${d.sent ? `accepted (${d.answered})` : `FAILED: ${d.error}`}`,
  ];
  if (!d.sent) return lines;
  if (d.arrived === true)
    lines.push(
      `its root (span ${d.rootSpanId}) is in LLMFlow at ${d.llmflow} after ${d.seconds} s: the whole path works`,
    );
  else if (d.arrived === false)
    lines.push(
      `its root (span ${d.rootSpanId}) did NOT show in LLMFlow at ${d.llmflow} within ${d.seconds} s: check the bridge's logs and \`ccbridge status\` (is the worker running, and LLMFLOW_URL right?)`,
    );
  return lines;
}

const SYMBOL: Record<Finding['severity'], string> = { ok: 'ok  ', error: 'FIX ', advice: 'tip ' };

export async function doctor(args: Args): Promise<number> {
  const env = process.env;
  const findings = checkClaudeCodeEnv(env);
  const errors = findings.filter((f) => f.severity === 'error');
  const target = logsTarget(env);
  let delivery: Delivery | undefined;
  if (errors.length === 0 && target && !args.flags.has('no-send')) {
    delivery = await deliver(
      target,
      flag(args, 'llmflow') ?? settings().llmflowUrl,
      true,
      timeoutOf(args),
      otlpHeaders(env),
    );
  }
  answer(args, { findings, ...(delivery && { delivery }) }, () => [
    ...findings.map((f) => `${SYMBOL[f.severity]}${f.message}${f.fix ? `\n      ${f.fix}` : ''}`),
    ...(errors.length > 0 ? [`${errors.length} setting(s) to fix before Claude Code's turns can reach LLMFlow.`] : []),
    ...(delivery ? deliveryLines(delivery) : []),
  ]);
  return errors.length === 0 && (!delivery || (delivery.sent && delivery.arrived !== false)) ? EXIT.ok : EXIT.problem;
}

const PROTOCOLS: Protocol[] = ['grpc', 'http/protobuf', 'http/json'];

export async function sendFixture(args: Args): Promise<number> {
  const protocol = (flag(args, 'protocol') ?? 'http/protobuf') as Protocol;
  if (!PROTOCOLS.includes(protocol)) throw new UsageError(`--protocol is one of ${PROTOCOLS.join(', ')}`);
  const endpoint = flag(args, 'endpoint') ?? (protocol === 'grpc' ? 'http://127.0.0.1:4317' : 'http://127.0.0.1:4318');
  const url =
    protocol === 'grpc' || /\/v1\/logs\/?$/.test(endpoint) ? endpoint : `${endpoint.replace(/\/+$/, '')}/v1/logs`;
  const token = flag(args, 'token');
  const delivery = await deliver(
    { protocol, url },
    flag(args, 'llmflow') ?? settings().llmflowUrl,
    !args.flags.has('no-wait'),
    timeoutOf(args),
    token ? { authorization: `Bearer ${token}` } : {},
  );
  answer(args, delivery, () => deliveryLines(delivery));
  return delivery.sent && delivery.arrived !== false ? EXIT.ok : EXIT.problem;
}
