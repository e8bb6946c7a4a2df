/**
 * A local stand-in for the Anthropic Messages API, so the real Claude Code binary runs offline.
 *
 * Scripted by keywords in the user's prompt (the conversation's last user message that is not a
 * tool_result), deterministic:
 * - default: a plain text answer;
 * - `USE_TOOL`: one Bash tool_use (`echo one`), then text once the tool_result comes back;
 * - `TWO_TOOLS`: Bash `echo one` and a Read of a missing file in one message, then text;
 * - `PARALLEL_TOOLS`: three Bash echo calls in one message, then text;
 * - `REFUSED_TOOL`: a Bash tool_use of a command no test allows (`rm -rf ...`), which Claude Code
 *   in -p mode refuses; then text;
 * - `FAIL_ONCE`: the first /v1/messages call for each prompt of a session answers HTTP 500 with an
 *   Anthropic-style error body; later calls succeed. Claude Code retries, and since the retry
 *   succeeds it logs no api_error event (only the final failure of a request is logged);
 * - `FAIL_ALWAYS`: every /v1/messages call answers HTTP 500, so Claude Code gives up after its
 *   retries (CLAUDE_CODE_MAX_RETRIES) and logs api_error and api_retries_exhausted;
 * - `SLOW_ANSWERS`: like `USE_TOOL`, but every answer to a request that offers tools (the main
 *   loop's, not side requests) comes `slowMs` late, as a long thinking request does;
 * - `TEXT_AND_TOOL`: like `USE_TOOL`, but the answer that calls the tool has text too ("Let me
 *   run it."), as most real answers do, so Claude Code logs an assistant_response mid-turn;
 * - `LONG_TOOL`: one Bash tool_use that runs for `longToolSeconds` (a `node -e` timer, as a test
 *   suite would: Claude Code refuses a bare long `sleep`), then text;
 * - `SUBAGENT`: "Delegating." and one Agent tool_use (a foreground general-purpose subagent,
 *   `run_in_background: false`, prompt `SUBTASK run echo`); the subagent runs Bash `echo sub`, then
 *   answers "Sub done."; once the Agent tool_result is back the main agent answers "Main done.";
 * - `BG_SUBAGENT`: the same with `run_in_background: true`: the Agent tool_result comes back at
 *   once ("async_launched") and the main agent answers "Main done." while the subagent still runs;
 *   when it has finished, Claude Code sends a `<task-notification>` prompt, answered "Noted.";
 * - `TWO_SUBAGENTS`: "Delegating twice." and two foreground Agent tool_uses in one message
 *   (prompts `SUBTASK-A run echo`, `SUBTASK-B run echo`), which Claude Code runs in parallel; each
 *   subagent runs Bash (`echo sub-a` / `echo sub-b`), then answers ("Sub A done." / "Sub B
 *   done."); then the main agent answers "Main done.".
 *
 * Subagent requests are recognized by their prompt (the subagent's first user message, which is
 * the Agent tool's `prompt`): one containing `SUBTASK` and no keyword is a subagent's. A prompt
 * holding `<task-notification>` (Claude Code's report of a finished background subagent) and no
 * keyword gets "Noted.". Keywords are matched in KEYWORDS order, so `BG_SUBAGENT` and
 * `TWO_SUBAGENTS` come before `SUBAGENT`, which both contain.
 *
 * A tool is only asked for when the request offers that tool (side requests Claude Code makes
 * without tools get text), and only while the conversation holds no tool_result yet.
 * Streaming requests get SSE (message_start, content_block_start/delta/stop, message_delta with
 * usage, message_stop); others get the message as JSON. count_tokens and /v1/models answer too.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tracked } from './procs';

export interface StandinRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** Parsed JSON body, or the raw text when it is not JSON. */
  body: unknown;
  /** What the stand-in made of it (for /v1/messages): the scenario and the reply's kind. */
  scenario?: string;
  reply?: string;
  /** The request id it answered with (Claude Code's `request_id`), and the text of its answer, if any. */
  requestId?: string;
  text?: string;
}

export interface AnthropicStandin {
  url: string;
  requests: StandinRequest[];
  stop(): Promise<void>;
}

type Block =
  { type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

interface Reply {
  status: number;
  /** Set for errors: the body to send as JSON. */
  error?: { type: 'error'; error: { type: string; message: string } };
  content?: Block[];
  stopReason?: 'end_turn' | 'tool_use';
}

export const KEYWORDS = [
  'USE_TOOL',
  'TWO_TOOLS',
  'PARALLEL_TOOLS',
  'REFUSED_TOOL',
  'FAIL_ONCE',
  'FAIL_ALWAYS',
  'SLOW_ANSWERS',
  'LONG_TOOL',
  'TEXT_AND_TOOL',
  // Before SUBAGENT: both contain it.
  'BG_SUBAGENT',
  'TWO_SUBAGENTS',
  'SUBAGENT',
] as const;

/** The subagent prompts of SUBAGENT / BG_SUBAGENT and TWO_SUBAGENTS, and what each runs. */
export const SUBTASKS = {
  'SUBTASK run echo': { command: 'echo sub', answer: 'Sub done.' },
  'SUBTASK-A run echo': { command: 'echo sub-a', answer: 'Sub A done.' },
  'SUBTASK-B run echo': { command: 'echo sub-b', answer: 'Sub B done.' },
} as const;

export interface StandinOptions {
  /** How late SLOW_ANSWERS answers (ms). */
  slowMs?: number;
  /** How long LONG_TOOL's command sleeps (s). */
  longToolSeconds?: number;
}

/** Where TWO_TOOLS points Read: a file that does not exist. */
export const MISSING_FILE = 'ccbridge-missing-file.txt';
/** The command REFUSED_TOOL asks for; no `--allowedTools` rule of the tests allows it. */
export const REFUSED_COMMAND = 'rm -rf /tmp/ccbridge-nonexistent-xyz';

const USAGE = { input_tokens: 120, cache_read_input_tokens: 400, cache_creation_input_tokens: 30 };

interface Message {
  role: string;
  content: string | { type: string; text?: string }[];
}

function textOf(content: Message['content']): string {
  if (typeof content === 'string') return content;
  return content.map((b) => (b.type === 'text' ? (b.text ?? '') : '')).join('\n');
}

function isToolResults(m: Message): boolean {
  return Array.isArray(m.content) && m.content.some((b) => b.type === 'tool_result');
}

/**
 * Where the current prompt is: the last user message that is not a tool_result message (on
 * --resume the conversation starts with the earlier prompts). Claude Code adds
 * <system-reminder> text blocks to it; the keyword search does not mind them.
 */
function lastPrompt(messages: Message[]): number {
  for (let i = messages.length - 1; i >= 0; i--)
    if (messages[i]!.role === 'user' && !isToolResults(messages[i]!)) return i;
  return -1;
}

/**
 * Claude Code tells the model its working directory ("Primary working directory: ...", in a
 * role "system" message of `messages` or in `system`); Read wants an absolute path.
 */
function workingDirectory(body: Record<string, unknown>): string {
  const blocks = (v: unknown): string =>
    typeof v === 'string'
      ? v
      : Array.isArray(v)
        ? v.map((b: { text?: unknown }) => (typeof b?.text === 'string' ? b.text : '')).join('\n')
        : '';
  const messages = (Array.isArray(body.messages) ? body.messages : []) as Message[];
  const text = [blocks(body.system), ...messages.map((m) => blocks(m.content))].join('\n');
  return /(?:Primary working directory|Working directory):\s*(\S+)/.exec(text)?.[1] ?? '/tmp';
}

export async function startAnthropicStandin(options: StandinOptions = {}): Promise<AnthropicStandin> {
  const requests: StandinRequest[] = [];
  /** Prompts (session, position, text) whose FAIL_ONCE failure was served. */
  const failed = new Set<string>();
  let counter = 0;

  function script(
    body: Record<string, unknown>,
    headers: http.IncomingHttpHeaders,
    n: number,
  ): { scenario: string; reply: Reply } {
    const messages = (Array.isArray(body.messages) ? body.messages : []) as Message[];
    const at = lastPrompt(messages);
    const prompt = at >= 0 ? textOf(messages[at]!.content) : '';
    const scenario = KEYWORDS.find((k) => prompt.includes(k)) ?? 'default';
    const tools = new Set(((Array.isArray(body.tools) ? body.tools : []) as { name?: string }[]).map((t) => t.name));
    const text = (t: string): Reply => ({ status: 200, content: [{ type: 'text', text: t }], stopReason: 'end_turn' });
    const id = (i: number) => `toolu_standin_${n}_${i}`;

    const failure: Reply = {
      status: 500,
      error: { type: 'error', error: { type: 'api_error', message: `Internal server error (stand-in ${scenario})` } },
    };
    if (scenario === 'FAIL_ALWAYS') return { scenario, reply: failure };
    if (scenario === 'FAIL_ONCE') {
      const key = `${String(headers['x-claude-code-session-id'] ?? '')}:${at}:${prompt}`;
      if (!failed.has(key)) {
        failed.add(key);
        return { scenario, reply: failure };
      }
      return { scenario, reply: text('Answered after a retry.') };
    }
    const answered = messages.slice(at + 1).some(isToolResults);
    const bash = (i: number, command: string, description: string): Block => ({
      type: 'tool_use',
      id: id(i),
      name: 'Bash',
      input: { command, description },
    });
    const tooled = (blocks: Block[]): Reply => ({ status: 200, content: blocks, stopReason: 'tool_use' });
    if (scenario === 'default') {
      // A subagent of SUBAGENT, BG_SUBAGENT or TWO_SUBAGENTS: the longest matching SUBTASK prompt.
      const sub = (Object.keys(SUBTASKS) as (keyof typeof SUBTASKS)[])
        .filter((k) => prompt.includes(k))
        .sort((a, b) => b.length - a.length)[0];
      if (sub) {
        const { command, answer } = SUBTASKS[sub];
        if (answered || !tools.has('Bash')) return { scenario: 'subagent', reply: text(answer) };
        return { scenario: 'subagent', reply: tooled([bash(0, command, 'subagent echo')]) };
      }
      if (prompt.includes('<task-notification>')) return { scenario: 'task-notification', reply: text('Noted.') };
    }
    const agent = (i: number, description: string, subtask: keyof typeof SUBTASKS, background: boolean): Block => ({
      type: 'tool_use',
      id: id(i),
      name: 'Agent',
      input: { description, prompt: subtask, subagent_type: 'general-purpose', run_in_background: background },
    });
    switch (scenario) {
      case 'SUBAGENT':
      case 'BG_SUBAGENT':
        if (answered) return { scenario, reply: text('Main done.') };
        if (tools.has('Agent'))
          return {
            scenario,
            reply: tooled([
              { type: 'text', text: 'Delegating.' },
              agent(0, 'echo task', 'SUBTASK run echo', scenario === 'BG_SUBAGENT'),
            ]),
          };
        return { scenario, reply: text('4') };
      case 'TWO_SUBAGENTS':
        if (answered) return { scenario, reply: text('Main done.') };
        if (tools.has('Agent')) {
          return {
            scenario,
            reply: tooled([
              { type: 'text', text: 'Delegating twice.' },
              agent(0, 'echo task A', 'SUBTASK-A run echo', false),
              agent(1, 'echo task B', 'SUBTASK-B run echo', false),
            ]),
          };
        }
        return { scenario, reply: text('4') };
    }
    if (answered) return { scenario, reply: text('The tool answered.') };
    switch (scenario) {
      case 'USE_TOOL':
      case 'SLOW_ANSWERS':
        if (tools.has('Bash')) return { scenario, reply: tooled([bash(0, 'echo one', 'first')]) };
        break;
      case 'TEXT_AND_TOOL':
        if (tools.has('Bash'))
          return { scenario, reply: tooled([{ type: 'text', text: 'Let me run it.' }, bash(0, 'echo one', 'first')]) };
        break;
      case 'LONG_TOOL':
        if (tools.has('Bash')) {
          const ms = 1_000 * (options.longToolSeconds ?? 1);
          return {
            scenario,
            reply: tooled([bash(0, `node -e "setTimeout(() => console.log('done'), ${ms})"`, 'run the test suite')]),
          };
        }
        break;
      case 'TWO_TOOLS':
        if (tools.has('Bash') && tools.has('Read')) {
          const file = `${workingDirectory(body).replace(/\/$/, '')}/${MISSING_FILE}`;
          return {
            scenario,
            reply: tooled([
              bash(0, 'echo one', 'first'),
              { type: 'tool_use', id: id(1), name: 'Read', input: { file_path: file } },
            ]),
          };
        }
        break;
      case 'PARALLEL_TOOLS':
        if (tools.has('Bash'))
          return {
            scenario,
            reply: tooled([
              bash(0, 'echo one', 'first'),
              bash(1, 'echo two', 'second'),
              bash(2, 'echo three', 'third'),
            ]),
          };
        break;
      case 'REFUSED_TOOL':
        if (tools.has('Bash'))
          return { scenario, reply: tooled([bash(0, REFUSED_COMMAND, 'remove a scratch directory')]) };
        break;
    }
    return { scenario, reply: text('4') };
  }

  function message(model: string, n: number, reply: Reply) {
    const content = reply.content ?? [];
    return {
      id: `msg_standin_${n}`,
      type: 'message',
      role: 'assistant',
      model,
      content,
      stop_reason: reply.stopReason,
      stop_sequence: null,
      usage: { ...USAGE, output_tokens: outputTokens(content) },
    };
  }

  function outputTokens(content: Block[]): number {
    return content.reduce((sum, b) => sum + (b.type === 'text' ? Math.max(1, Math.ceil(b.text.length / 4)) : 20), 0);
  }

  function stream(res: http.ServerResponse, model: string, n: number, reply: Reply) {
    const content = reply.content ?? [];
    const events: [string, unknown][] = [];
    events.push([
      'message_start',
      {
        type: 'message_start',
        message: { ...message(model, n, reply), content: [], stop_reason: null, usage: { ...USAGE, output_tokens: 1 } },
      },
    ]);
    events.push(['ping', { type: 'ping' }]);
    content.forEach((block, index) => {
      if (block.type === 'text') {
        events.push([
          'content_block_start',
          { type: 'content_block_start', index, content_block: { type: 'text', text: '' } },
        ]);
        // Two deltas, as a real stream splits its text.
        const half = Math.ceil(block.text.length / 2);
        for (const part of [block.text.slice(0, half), block.text.slice(half)].filter(Boolean)) {
          events.push([
            'content_block_delta',
            { type: 'content_block_delta', index, delta: { type: 'text_delta', text: part } },
          ]);
        }
      } else {
        events.push([
          'content_block_start',
          {
            type: 'content_block_start',
            index,
            content_block: { type: 'tool_use', id: block.id, name: block.name, input: {} },
          },
        ]);
        const json = JSON.stringify(block.input);
        const half = Math.ceil(json.length / 2);
        for (const part of [json.slice(0, half), json.slice(half)]) {
          events.push([
            'content_block_delta',
            { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: part } },
          ]);
        }
      }
      events.push(['content_block_stop', { type: 'content_block_stop', index }]);
    });
    events.push([
      'message_delta',
      {
        type: 'message_delta',
        delta: { stop_reason: reply.stopReason, stop_sequence: null },
        usage: { output_tokens: outputTokens(content) },
      },
    ]);
    events.push(['message_stop', { type: 'message_stop' }]);
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'request-id': `req_standin_${n}`,
    });
    for (const [event, data] of events) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    res.end();
  }

  function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown = raw;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        /* keep the text */
      }
      const path = (req.url ?? '/').split('?')[0]!;
      const record: StandinRequest = { method: req.method ?? '', path, headers: req.headers, body };
      requests.push(record);
      const n = ++counter;
      const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
      const model = typeof b.model === 'string' ? b.model : 'claude-standin';

      if (req.method === 'POST' && path === '/v1/messages') {
        const { scenario, reply } = script(b, req.headers, n);
        record.scenario = scenario;
        record.requestId = `req_standin_${n}`;
        if (reply.error) {
          record.reply = `error ${reply.status}`;
          return json(res, reply.status, reply.error, { 'request-id': `req_standin_${n}`, 'x-should-retry': 'true' });
        }
        record.reply = (reply.content ?? []).map((c) => (c.type === 'text' ? 'text' : `tool_use:${c.name}`)).join(',');
        const text = (reply.content ?? [])
          .filter((c) => c.type === 'text')
          .map((c) => (c as { text?: string }).text ?? '')
          .join('\n');
        if (text) record.text = text;
        const answer = () =>
          b.stream === true
            ? stream(res, model, n, reply)
            : json(res, 200, message(model, n, reply), { 'request-id': `req_standin_${n}` });
        const offersTools = Array.isArray(b.tools) && b.tools.length > 0;
        if (scenario === 'SLOW_ANSWERS' && offersTools) {
          setTimeout(answer, options.slowMs ?? 1_000);
          return;
        }
        return answer();
      }
      // Claude Code's connectivity probe at start-up.
      if (path === '/api/hello') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(req.method === 'HEAD' ? undefined : '{"message":"hello"}');
      }
      if (req.method === 'POST' && path === '/v1/messages/count_tokens') {
        return json(res, 200, { input_tokens: Math.max(1, Math.ceil(raw.length / 4)) });
      }
      if (req.method === 'GET' && path === '/v1/models') {
        const data = ['claude-standin'].map((id) => ({
          type: 'model',
          id,
          display_name: 'Stand-in',
          created_at: '2025-01-01T00:00:00Z',
        }));
        return json(res, 200, { data, has_more: false, first_id: data[0]!.id, last_id: data[data.length - 1]!.id });
      }
      const models = /^\/v1\/models\/(.+)$/.exec(path);
      if (req.method === 'GET' && models) {
        return json(res, 200, {
          type: 'model',
          id: decodeURIComponent(models[1]!),
          display_name: 'Stand-in',
          created_at: '2025-01-01T00:00:00Z',
        });
      }
      return json(res, 404, {
        type: 'error',
        error: { type: 'not_found_error', message: `stand-in: no ${req.method} ${path}` },
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: tracked(
      'Messages API stand-in',
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    ),
  };
}
