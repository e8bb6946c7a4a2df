/**
 * A V8 CPU profile (`.cpuprofile`, as profile-hook.cjs writes it) summed up: self time by where
 * the code lives (the bridge's packages, npm packages, Node's core, V8's builtins, garbage
 * collection) and by function. V8 counts JSON.stringify and JSON.parse in their caller's own time.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  /** Sampled time the process was busy (not idle), seconds. */
  busySeconds: number;
  /** Shares of the busy time, in %, by where the code lives. */
  byPlace: Record<string, number>;
  /** The functions with the most time of their own: `name place:line`, % of the busy time. */
  topFunctions: [string, number][];
}

const SPECIAL = /^\((garbage collector|program|idle|root)\)$/;

function placeOf(url: string, functionName: string, root: string): string {
  if (!url) return SPECIAL.test(functionName) ? functionName : 'V8 builtins';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1]!;
  const ours = /\/(packages|services)\/([^/]+)\//.exec(url);
  if (ours && url.includes(root)) return `${ours[1]}/${ours[2]}`;
  return url.startsWith('node:') ? 'Node core' : path.relative(root, url.replace(/^file:\/\//, ''));
}

export function summariseProfile(file: string, root: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const byPlace = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    // A sample stands for the time until the next one (µs).
    const us = profile.timeDeltas[i + 1] ?? 0;
    const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
    if (functionName === '(idle)') return;
    busy += us;
    const place = placeOf(url, functionName, root);
    byPlace.set(place, (byPlace.get(place) ?? 0) + us);
    const where = url ? `${path.relative(root, url.replace(/^file:\/\//, ''))}:${lineNumber + 1}` : place;
    const name = `${functionName || '(anonymous)'} ${where}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
  });
  const shares = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => [k, Math.round((us / busy) * 1000) / 10] as [string, number]);
  return {
    file,
    busySeconds: Math.round(busy / 1e4) / 100,
    byPlace: Object.fromEntries(shares(byPlace, 30)),
    topFunctions: shares(byFunction, top),
  };
}
