// A TCP proxy for tests that cut a client's connection the way a network does: put it between a
// client (a browser, socket.io-client, pusher-js) and herald, then drop every connection it
// carries at once. The drop is abrupt (a TCP reset on both sides, not a WebSocket close or a
// socket.io disconnect), so each side learns only that the connection broke, as when a phone
// changes networks or a proxy restarts. The proxy keeps accepting connections afterwards; with
// `hold`, the ones that arrive are kept waiting (accepted, not yet connected to herald) until
// `release()`, so a test can act while the client is certainly disconnected and cannot
// reconnect, however fast it retries.
//
//   const proxy = await startCutProxy(h.httpPort);   // listens on 127.0.0.1, a free port
//   proxy.port                      where the client connects instead of herald
//   proxy.open                      connections carried now
//   proxy.accepted                  connections accepted so far (held ones included)
//   proxy.cut({ hold: true })       resets every carried connection; returns how many
//   proxy.cut({ silent: true })     resets only the client's side: herald's stays open, unread
//                                   and never told (a phone that left the network), until close()
//   proxy.held                      connections waiting for release()
//   proxy.release()                 connects the held ones (and later ones) to herald
//   proxy.target = port             where later connections go (a load balancer moving
//                                   clients to another node)
//   await proxy.close()             stops listening and resets whatever is left
import net from 'node:net';

export async function startCutProxy(target, targetHost = '127.0.0.1') {
  const pairs = new Set(); // [client, upstream] carried now
  let waiting = []; // clients accepted while holding
  const abandoned = []; // herald's side of silently cut connections
  let holding = false;
  let accepted = 0;

  const reset = (socket) => (socket.resetAndDestroy ? socket.resetAndDestroy() : socket.destroy());

  // Join a client to a new connection to herald. Bytes the client sent while held are still
  // in its socket's buffer (it was paused) and follow.
  function carry(client) {
    const upstream = net.connect(target, targetHost);
    const pair = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      if (!pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    for (const s of pair) {
      s.on('error', drop);
      s.on('close', drop);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }

  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    accepted += 1;
    client.setNoDelay(true);
    if (!holding) return carry(client);
    client.on('error', () => {});
    client.on('close', () => { waiting = waiting.filter((c) => c !== client); });
    waiting.push(client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });

  return {
    port: server.address().port,
    get open() { return pairs.size; },
    get accepted() { return accepted; },
    get held() { return waiting.length; },
    get target() { return target; },
    set target(port) { target = port; },
    cut({ hold = false, silent = false } = {}) {
      holding = hold;
      const cut = [...pairs];
      pairs.clear();
      for (const [client, upstream] of cut) {
        if (silent) {
          client.unpipe(upstream);
          upstream.unpipe(client);
          upstream.pause();
          abandoned.push(upstream);
        } else {
          reset(upstream);
        }
        reset(client);
      }
      return cut.length;
    },
    release() {
      holding = false;
      const now = waiting;
      waiting = [];
      for (const client of now) {
        client.removeAllListeners('close');
        client.removeAllListeners('error');
        if (!client.destroyed) carry(client);
      }
    },
    close() {
      const closed = new Promise((resolve) => server.close(resolve));
      this.cut();
      for (const client of waiting) reset(client);
      waiting = [];
      for (const upstream of abandoned.splice(0)) reset(upstream);
      return closed;
    },
  };
}
