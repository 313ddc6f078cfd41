// The history read on Pusher's signed HTTP API (issue 12):
// GET /apps/{id}/channels/{channel}/events?after=<offset>&limit=<n>, through the official
// `pusher` SDK as a Laravel app's server would call it. Signature required; `after` and
// `limit`; 410 when the history no longer reaches back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHerald } from './lib/herald.mjs';
import { inbox } from './lib/wait.mjs';
import { sdk, pusherClient, subscribed } from './pusher_fixtures.mjs';

let h;
let client;
before(async () => {
  h = await startHerald(['--history-size', '3', '--pusher-history-limit', '2']);
  client = pusherClient(h);
});
after(async () => { client.disconnect(); await h.stop(); });

// A signed read: [status, body (JSON when 200, text otherwise)].
async function read(params, channel = 'orders.h') {
  try {
    const res = await sdk(h).get({ path: `/channels/${channel}/events`, params });
    return [res.status, await res.json()];
  } catch (e) {
    if (e.status) return [e.status, e.body];
    throw e;
  }
}

test('signed reads after an offset, limited; 410 when the history does not reach back', async () => {
  const got = inbox();
  (await subscribed(client, 'orders.h')).bind('Paid', got.add);

  const unsigned = await fetch(`${h.url}/apps/herald/channels/orders.h/events?after=1-0`);
  assert.equal(unsigned.status, 401);
  const [, start] = await read({});
  assert.deepEqual(start.events, []);
  assert.match(start.position, /^[0-9a-f]+-0$/);
  const epoch = start.position.split('-')[0];

  const api = sdk(h);
  for (let n = 1; n <= 5; n++) {
    await api.trigger('orders.h', 'Paid', { n }, n === 4 ? { socket_id: '123.456' } : {});
  }
  await got.count(5, 'the five events live');

  assert.deepEqual(await read({ after: `${epoch}-2` }), [200, {
    events: [
      { offset: `${epoch}-3`, event: 'Paid', channel: 'orders.h', data: '{"n":3}' },
      { offset: `${epoch}-4`, event: 'Paid', channel: 'orders.h', data: '{"n":4}', socket_id: '123.456' },
    ],
    more: true,
    position: `${epoch}-5`,
  }]);
  const [, one] = await read({ after: `${epoch}-2`, limit: 1 });
  assert.deepEqual(one.events.map((e) => e.offset), [`${epoch}-3`]);
  assert.equal(one.more, true);
  const [, last] = await read({ after: `${epoch}-4` });
  assert.deepEqual(last.events.map((e) => e.data), ['{"n":5}']);
  assert.equal(last.more, false);
  const [, none] = await read({ after: `${epoch}-5` });
  assert.deepEqual(none.events, []);

  // --history-size 3: 1 and 2 are gone, so "after 0" cannot be answered whole.
  const [gone, why] = await read({ after: `${epoch}-0` });
  assert.equal(gone, 410);
  assert.match(why, /does not reach back/);
  assert.equal((await read({ after: '1-0' }))[0], 410, 'another epoch');
  assert.equal((await read({ after: `${epoch}-2` }, 'never.subscribed'))[0], 410);

  for (const bad of [{ after: `${epoch}-2`, limit: 3 }, { after: `${epoch}-2`, limit: 0 }, { after: 'nope' }]) {
    const [status, text] = await read(bad);
    assert.equal(status, 400, JSON.stringify(bad));
    assert.match(text, /Invalid (limit|after)/);
  }
});
