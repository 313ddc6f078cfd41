// redis-cli as a real RESP subscriber (SUBSCRIBE or PSUBSCRIBE) for tests: it runs the Debian
// redis-cli against a port, waits until every subscription is confirmed, and puts each
// delivery in an inbox as [channel, payload]. One parser of redis-cli's line output, so the
// tests that need a RESP subscriber do not each keep their own.
//
//   const got = inbox();
//   const sub = await redisCliSubscriber(h.redisPort, 'PSUBSCRIBE', ['orders.*'], got.add);
//   ...                 got's items are [channel, payload]
//   sub.close()
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { inbox } from './wait.mjs';

// Subscribe with `verb` to `names` on `port`, handing each delivery to `deliver(
// [channel, payload])`; `{ close }` once every subscription is confirmed.
export async function redisCliSubscriber(port, verb, names, deliver) {
  const proc = spawn('redis-cli', ['-p', String(port), verb, ...names], { stdio: ['ignore', 'pipe', 'inherit'] });
  const close = () => proc.kill();
  const confirmed = inbox();
  // A delivery is 3 lines (message, channel, payload), 4 for a pattern's (pmessage, pattern,
  // channel, payload); a confirmation is 3 (kind, name, count).
  const per = verb === 'PSUBSCRIBE' ? 4 : 3;
  let reply = [];
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    reply.push(line);
    if (reply.length < per && !(reply.length === 3 && reply[0].endsWith('subscribe'))) return;
    if (reply[0].endsWith('subscribe')) confirmed.add(reply[1]);
    else deliver(reply.slice(per - 2));
    reply = [];
  });
  try {
    await confirmed.count(names.length, `redis-cli to ${verb} ${names}`);
  } catch (e) {
    close();
    throw e;
  }
  return { close };
}
