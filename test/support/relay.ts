/**
 * A TCP relay on a port of its own (0: the system's choice, so nothing can take it first) in
 * front of a peer that comes and goes: a test points a client at the relay once, then stops and
 * starts the peer behind it on whatever ports each run gets. While no target is set, or the
 * target does not answer, each connection is reset, as a peer that is down would.
 */
import net from 'node:net';
import { tracked } from './procs';

export interface Relay {
  url: string;
  port: number;
  /** Where connections go from now on ("host:port", or undefined: refuse them). */
  target: string | undefined;
  stop(): Promise<void>;
}

export async function startRelay(target?: string): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    if (!relay.target) return client.resetAndDestroy();
    const [host, port] = [
      relay.target.slice(0, relay.target.lastIndexOf(':')),
      Number(relay.target.slice(relay.target.lastIndexOf(':') + 1)),
    ];
    const upstream = net.connect(port, host);
    sockets.add(upstream);
    upstream.once('close', () => sockets.delete(upstream));
    upstream.once('error', () => client.resetAndDestroy());
    client.once('error', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const relay: Relay = {
    url: `http://127.0.0.1:${port}`,
    port,
    target,
    stop: tracked(
      'relay',
      () =>
        new Promise((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    ),
  };
  return relay;
}
