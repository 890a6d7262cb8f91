import net from 'node:net';

/**
 * A TCP forwarder on `listenPort` to 127.0.0.1:`targetPort`: lets a test open and close a
 * service's address on its own schedule (closed = connection refused), independently of the
 * process behind it, e.g. to bring a restarted server back only once its state is restored.
 */
export interface TcpProxy {
  readonly port: number;
  close(): Promise<void>;
}

export async function startTcpProxy(listenPort: number, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, '127.0.0.1', () => resolve());
  });
  return {
    port: listenPort,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
