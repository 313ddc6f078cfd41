// Pusher recovery needs the history to reach back to where the client stopped, not to
// where it subscribed (README "Pusher recovery": too_old is "the channel's history no
// longer reaches back to where the client stopped"). Found by `herald-bench recover
// --protocol pusher`: a client subscribed for longer than --history-size publications of
// its channel was refused too_old after a drop that missed only a few events, because
// the resume counts from the subscription and reads the history from there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startHerald, metric } from './lib/herald.mjs';
import { until, inbox } from './lib/wait.mjs';
import { startCutProxy } from './lib/cut-proxy.mjs';
import { sdk, pusherClient, subscribed } from './pusher_fixtures.mjs';
import { enableRecovery } from '../../examples/pusher-recovery/herald-recovery.js';

const upTo = (n) => Array.from({ length: n }, (_, i) => i + 1);

// Ten events received, then two missed: with the connection closed (herald saw the reset), or
// still open on herald's side, where the two were written to a client already gone.
for (const silent of [false, true]) test(`a long subscription resumes a short outage the history still holds${silent ? ', its old connection still open' : ''}`, async () => {
  const h = await startHerald(['--history-size', '5']);
  const proxy = await startCutProxy(h.httpPort);
  const client = pusherClient(h, { wsPort: proxy.port });
  try {
    const resumed = inbox();
    const failed = inbox();
    enableRecovery(client, {
      onResumed: (channel, replayed) => resumed.add({ channel, replayed }),
      onResumeFailed: (channel, reason) => failed.add({ channel, reason }),
    });
    const got = inbox();
    (await subscribed(client, 'orders.long')).bind('Paid', got.add);
    const api = sdk(h);
    let n = 0;
    const publish = () => api.trigger('orders.long', 'Paid', { n: ++n });
    // Twice the history's size, all received before the drop.
    for (let i = 0; i < 10; i++) await publish();
    await got.count(10, 'ten events before the drop');
    proxy.cut({ hold: true, silent });
    if (!silent) await until(async () => (await metric(h, 'herald_pusher_resume_sessions')) === 1, 'the closed connection kept');
    // Two missed: well within the history's five.
    await publish();
    await publish();
    proxy.release();
    await until(() => resumed.items.length + failed.items.length > 0, 'herald:resumed or herald:resume_failed');
    assert.deepEqual(failed.items, [], 'the missed events are in the history');
    assert.deepEqual(resumed.items, [{ channel: 'orders.long', replayed: 2 }]);
    await publish();
    await got.count(13, 'all thirteen events');
    assert.deepEqual(got.items.map((d) => d.n), upTo(13));
  } finally {
    client.disconnect();
    await proxy.close();
    await h.stop();
  }
});
