import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { httpRequest } from '@ccbridge/llmflow';

/** A raw HTTP server: `answer` is called with each request's socket and its index on that socket. */
async function rawServer(answer: (socket: net.Socket, nth: number) => void) {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    let nth = 0;
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      // Each request of these tests is headers and a body of content-length bytes.
      for (;;) {
        const head = buffered.indexOf('\r\n\r\n');
        if (head < 0) return;
        const length = Number(/content-length: (\d+)/i.exec(buffered.slice(0, head))?.[1] ?? 0);
        if (buffered.length < head + 4 + length) return;
        buffered = buffered.slice(head + 4 + length);
        answer(socket, nth++);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    connections: () => sockets.length,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

const ok = (socket: net.Socket, body = '{}') =>
  socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);

test('a kept-alive connection the server drops as it is reused is tried once more, on a new one', async () => {
  // Each connection answers its first request and resets on its second: what a server that closed
  // an idle connection does to the request that arrives on it.
  const server = await rawServer((socket, nth) => (nth === 0 ? ok(socket, '{"n":1}') : socket.resetAndDestroy()));
  try {
    assert.deepEqual(await httpRequest('POST', server.url, 5_000, '{}'), { status: 200, text: '{"n":1}' });
    assert.deepEqual(await httpRequest('POST', server.url, 5_000, '{}'), { status: 200, text: '{"n":1}' });
    assert.equal(server.connections(), 2);
  } finally {
    await server.close();
  }
});

test('no answer within the time, or an answer cut off, is an error, not a hang', { timeout: 20_000 }, async () => {
  const silent = await rawServer(() => {});
  const cut = await rawServer((socket) => {
    socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial');
    socket.destroy();
  });
  try {
    await assert.rejects(httpRequest('POST', silent.url, 200, '{}'), /no answer within 200 ms/);
    await assert.rejects(httpRequest('POST', cut.url, 5_000, '{}'));
  } finally {
    await silent.close();
    await cut.close();
  }
});

test('a request node refuses at once (a header it cannot send) is an error, with no timer left to fail later', async () => {
  await assert.rejects(httpRequest('POST', 'http://127.0.0.1:1/', 100, '{}', { 'x-bad': 'a\nb' }), /header/i);
  // Past the request's time: a timer left behind would throw now, outside any promise.
  await new Promise((resolve) => setTimeout(resolve, 300));
});
