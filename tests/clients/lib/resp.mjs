// A plain RESP connection for tests, and a Redis outage made with it.
//
//   const send = await resp(port, open);    // open: a list the test closes afterwards
//   await send('PUBLISH', 'c', 'x')         // one command; resolves with its whole reply,
//                                           // bytes and all (`:3\r\n`; a bulk with its body)
//   await outage(redisPort, open, async (admin) => { ... })
//                                           // Redis takes no new connection and every pub/sub
//                                           // connection to it is cut while `during` runs
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from './herald.mjs';

export async function resp(port, open) {
  const sock = net.connect(port, '127.0.0.1');
  open.push({ close: () => sock.destroy() });
  await once(sock, 'connect');
  const waiting = [];
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (let end; (end = buf.indexOf('\r\n')) >= 0;) {
      const size = buf[0] === 0x24 ? Number(buf.subarray(1, end)) : -1; // `$<n>`: n bytes follow
      const whole = size >= 0 ? end + 2 + size + 2 : end + 2;
      if (buf.length < whole) return;
      waiting.shift()(buf.subarray(0, whole).toString('latin1'));
      buf = buf.subarray(whole);
    }
  });
  const bulk = (x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`;
  return (...args) => new Promise((resolve) => {
    waiting.push(resolve);
    sock.write(`*${args.length}\r\n${args.map(bulk).join('')}`);
  });
}

// Redis at `port` takes no new connection (CONFIG SET maxclients 1: the connections it has
// stay) and every pub/sub connection to it is cut; then `during(admin)`, and Redis takes
// connections again (also if `during` throws).
export async function outage(port, open, during) {
  const admin = await resp(port, open);
  assert.equal(await admin('CONFIG', 'SET', 'maxclients', '1'), '+OK\r\n');
  try {
    assert.match(await admin('CLIENT', 'KILL', 'TYPE', 'pubsub'), /^:[1-9]/);
    return await during(admin);
  } finally {
    await admin('CONFIG', 'SET', 'maxclients', '10000');
  }
}
