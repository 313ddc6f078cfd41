// Pusher recovery (issue 12): pusher-js 8 and Laravel Echo 2.5's reverb connector with
// examples/pusher-recovery/herald-recovery.js, through a TCP proxy whose sockets the test
// destroys (an unclean drop, not a disconnect()). Events are published during the outage
// and while the client reconnects; each must arrive exactly once, in order, with private
// and presence channels authorised again as usual. Beyond the window or the history, the
// client is told why, and herald counts and logs it.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import EchoModule from 'laravel-echo';
import Pusher from 'pusher-js';
import { startHerald, sleep } from './lib/herald.mjs';
import { within, until, inbox } from './lib/wait.mjs';
import { APP, sdk, pusherClient, connected, subscribed, startAuthServer } from './pusher_fixtures.mjs';
import { enableRecovery } from '../../examples/pusher-recovery/herald-recovery.js';

const Echo = EchoModule.default || EchoModule;

// A TCP proxy to herald: cut() destroys every socket it holds, both sides, at once;
// while held, new connections are destroyed as they arrive.
async function startProxy(port) {
  const sockets = new Set();
  let held = false;
  const server = net.createServer((client) => {
    if (held) { client.destroy(); return; }
    const upstream = net.connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => { sockets.delete(s); client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    cut() { held = true; for (const s of sockets) s.destroy(); },
    release() { held = false; },
    close() { for (const s of sockets) s.destroy(); return new Promise((r) => server.close(r)); },
  };
}

async function metrics(h) {
  return (await fetch(`${h.url}/metrics`)).text();
}
function value(text, line) {
  const m = new RegExp(`^${line.replace(/[{}"]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

// What a recovering client reports to the test.
function recovering(pusher) {
  const resumed = inbox();
  const failed = inbox();
  enableRecovery(pusher, {
    onResumed: (channel, replayed) => resumed.add({ channel, replayed }),
    onResumeFailed: (channel, reason) => failed.add({ channel, reason }),
  });
  return { resumed, failed };
}

const numbers = (box) => box.items.map((d) => d.n);
const upTo = (n) => Array.from({ length: n }, (_, i) => i + 1);

describe('pusher-js 8 with the recovery snippet', () => {
  let h, proxy;
  const clients = [];
  before(async () => {
    h = await startHerald();
    proxy = await startProxy(h.httpPort);
  });
  after(async () => { for (const c of clients) c.disconnect(); await proxy.close(); await h.stop(); });

  test('public, private and presence channels: every event once, in order, across a drop', async () => {
    const resubscribed = [];
    const client = pusherClient(h, { wsPort: proxy.port });
    clients.push(client);
    const { resumed, failed } = recovering(client);
    await connected(client);
    const names = ['orders.1', 'private-orders.1', 'presence-orders.1'];
    const got = {};
    for (const name of names) {
      got[name] = inbox();
      const ch = await subscribed(client, name);
      ch.bind('Paid', got[name].add);
      ch.bind('pusher:subscription_succeeded', () => resubscribed.push(name));
    }
    const firstSocket = client.connection.socket_id;
    const api = sdk(h);
    let n = 0;
    const publish = async (opts) => {
      n += 1;
      await api.triggerBatch(names.map((channel) => ({ channel, name: 'Paid', data: { n }, ...opts })));
    };
    for (let i = 0; i < 3; i++) await publish();
    for (const name of names) await got[name].count(3, `3 events on ${name}`);

    proxy.cut();
    // toOthers from the lost connection: never sent to it, so never replayed.
    await api.triggerBatch(names.map((channel) => ({ channel, name: 'Paid', data: { n: 'not for me' }, socket_id: firstSocket })));
    for (let i = 0; i < 7; i++) await publish();
    proxy.release();
    // Publish while pusher-js reconnects, re-authorises and resumes, and a while after.
    await until(async () => { await publish(); return resumed.items.length === 3; }, 'herald:resumed for the three channels');
    const last = n + 10;
    while (n < last) await publish();
    for (const name of names) await got[name].count(last, `${last} events on ${name}`);
    for (const name of names) assert.deepEqual(numbers(got[name]), upTo(last), name);
    assert.deepEqual(failed.items, []);
    assert.notEqual(client.connection.socket_id, firstSocket);
    assert.ok(resumed.items.every((r) => r.replayed >= 1), JSON.stringify(resumed.items));
    // Re-authorised as always: herald checks the private and presence signatures against
    // the new socket id, and each channel's subscription succeeded once more.
    assert.deepEqual(resubscribed.sort(), [...names].sort());

    // A marker after it all: nothing else (no duplicate) came before it.
    await publish();
    for (const name of names) {
      const before = await got[name].before((d) => d.n === n, `marker on ${name}`);
      assert.deepEqual(before.map((d) => d.n), upTo(last), name);
    }
    const m = await metrics(h);
    assert.ok(value(m, 'herald_pusher_resumed_total') >= 3, m);
    assert.ok(value(m, 'herald_pusher_replayed_total') >= 3, m);
  });

  test('a second drop right after a resume counts on', async () => {
    const client = pusherClient(h, { wsPort: proxy.port });
    clients.push(client);
    const { resumed, failed } = recovering(client);
    const got = inbox();
    (await subscribed(client, 'orders.2')).bind('Paid', got.add);
    const api = sdk(h);
    let n = 0;
    const publish = () => api.trigger('orders.2', 'Paid', { n: ++n });
    await publish();
    await got.count(1, 'the first event');
    for (let round = 1; round <= 3; round++) {
      proxy.cut();
      await publish();
      await publish();
      proxy.release();
      await resumed.count(round, `resume ${round}`);
      await publish();
      await got.count(n, `${n} events`);
    }
    assert.deepEqual(numbers(got), upTo(n));
    assert.deepEqual(failed.items, []);
  });

  test('drops while a publisher never pauses: still exactly once, in order', async () => {
    const client = pusherClient(h, { wsPort: proxy.port });
    clients.push(client);
    const { resumed, failed } = recovering(client);
    const got = inbox();
    (await subscribed(client, 'private-busy')).bind('Tick', got.add);
    const api = sdk(h);
    let n = 0;
    let running = true;
    const publisher = (async () => {
      while (running) {
        n += 1;
        await api.trigger('private-busy', 'Tick', { n });
        await sleep(2); // pacing only: an outage's worth must fit --history-size (1,000)
      }
    })();
    for (let round = 1; round <= 3; round++) {
      await got.count(got.items.length + 5, 'events flowing');
      proxy.cut();
      proxy.release();
      await until(() => resumed.items.length === round || failed.items.length, `resume ${round}`);
      assert.deepEqual(failed.items, []);
    }
    running = false;
    await publisher;
    await got.count(n, `all ${n} events`);
    assert.deepEqual(numbers(got), upTo(n));
    assert.deepEqual(failed.items, []);
  });
});

for (const broadcaster of ['reverb', 'pusher']) describe(`Echo 2.5 ${broadcaster} connector with the recovery snippet`, () => {
  let h, proxy, auth;
  const echos = [];
  before(async () => {
    h = await startHerald();
    proxy = await startProxy(h.httpPort);
    auth = await startAuthServer(h);
  });
  after(async () => { for (const e of echos) e.disconnect(); await proxy.close(); await auth.close(); await h.stop(); });

  test('private and presence channels resume; a presence member comes back', async () => {
    const echo = new Echo({
      broadcaster, Pusher, key: APP.key, cluster: 'mt1', wsHost: '127.0.0.1', wsPort: proxy.port,
      forceTLS: false, enabledTransports: ['ws'], authEndpoint: auth.endpoint,
    });
    echos.push(echo);
    const { resumed, failed } = recovering(echo.connector.pusher);
    const orders = inbox();
    const room = inbox();
    const here = inbox();
    echo.private('orders.9').listen('OrderPaid', orders.add);
    echo.join('room.9').here(here.add).listen('.Paid', room.add);
    await here.count(1, 'here()');
    await until(() => echo.connector.pusher.channel('private-orders.9')?.subscribed, 'the private subscription');
    const api = sdk(h);
    let n = 0;
    const publish = async () => {
      n += 1;
      await api.triggerBatch([
        { channel: 'private-orders.9', name: 'App\\Events\\OrderPaid', data: { n } },
        { channel: 'presence-room.9', name: 'Paid', data: { n } },
      ]);
    };
    await publish();
    await orders.count(1, 'the first OrderPaid');
    proxy.cut();
    for (let i = 0; i < 4; i++) await publish();
    proxy.release();
    await until(async () => { await publish(); return resumed.items.length === 2; }, 'both channels resumed');
    const last = n + 10;
    while (n < last) await publish();
    await orders.count(last, `${last} OrderPaid`);
    await room.count(last, `${last} Paid on the presence channel`);
    assert.deepEqual(numbers(orders), upTo(last));
    assert.deepEqual(numbers(room), upTo(last));
    assert.deepEqual(failed.items, []);
    await here.count(2, 'here() again after the re-subscription');
    assert.deepEqual(here.items[1].map((m) => m.name), ['Grace']);
  });
});

describe('cache channels', () => {
  test('the event sent on subscribing counts; a resumed cache channel gets no second copy', async () => {
    const h = await startHerald();
    const proxy = await startProxy(h.httpPort);
    const client = pusherClient(h, { wsPort: proxy.port });
    try {
      const { resumed, failed } = recovering(client);
      const api = sdk(h);
      await api.trigger('cache-price', 'Price', { n: 1 }); // kept with no subscriber
      const got = inbox();
      const ch = client.subscribe('cache-price');
      ch.bind('Price', got.add);
      await got.count(1, 'the cached event on subscribing');
      await api.trigger('cache-price', 'Price', { n: 2 });
      await got.count(2, 'a live one');
      proxy.cut();
      await until(async () => value(await metrics(h), 'herald_pusher_resume_sessions') === 1, 'the closed connection kept');
      await api.trigger('cache-price', 'Price', { n: 3 });
      await api.trigger('cache-price', 'Price', { n: 4 });
      proxy.release();
      const [r] = await resumed.count(1, 'resumed');
      assert.deepEqual(r, { channel: 'cache-price', replayed: 2 });
      await api.trigger('cache-price', 'Price', { n: 5 });
      await got.count(5, 'five events');
      assert.deepEqual(numbers(got), upTo(5));
      assert.deepEqual(failed.items, []);
      // A new subscriber still gets the last event, as Pusher defines cache channels.
      const other = pusherClient(h);
      try {
        const last = inbox();
        other.subscribe('cache-price').bind('Price', last.add);
        assert.deepEqual(await last.count(1, 'the cached event'), [{ n: 5 }]);
      } finally { other.disconnect(); }
    } finally {
      client.disconnect(); await proxy.close(); await h.stop();
    }
  });
});

describe('refusals', () => {
  test('beyond the window: window_over, counted and logged', async () => {
    const h = await startHerald(['--recovery-window', '1']);
    const proxy = await startProxy(h.httpPort);
    const client = pusherClient(h, { wsPort: proxy.port });
    try {
      const { resumed, failed } = recovering(client);
      const got = inbox();
      (await subscribed(client, 'orders.3')).bind('Paid', got.add);
      proxy.cut();
      await until(async () => value(await metrics(h), 'herald_pusher_resume_sessions') === 1, 'the closed connection kept');
      await sleep(1500); // the window (1 s) is the subject
      proxy.release();
      // pusher-js backs off after the refused attempts: have it reconnect now.
      client.disconnect();
      client.connect();
      const [f] = await failed.count(1, 'herald:resume_failed');
      assert.deepEqual(f, { channel: 'orders.3', reason: 'window_over' });
      assert.deepEqual(resumed.items, []);
      await until(() => client.channel('orders.3').subscribed, 'subscribed again');
      await sdk(h).trigger('orders.3', 'Paid', { n: 1 });
      await got.count(1, 'live events after the refusal');
      const m = await metrics(h);
      assert.equal(value(m, 'herald_pusher_resume_refused_total{reason="window_over"}'), 1, m);
      assert.ok(h.logs.some((l) => l.includes('Pusher resume refused') && l.includes('window_over')));
    } finally {
      client.disconnect(); await proxy.close(); await h.stop();
    }
  });

  test('beyond the history: too_old', async () => {
    const h = await startHerald(['--history-size', '2']);
    const proxy = await startProxy(h.httpPort);
    const client = pusherClient(h, { wsPort: proxy.port });
    try {
      const { failed } = recovering(client);
      const got = inbox();
      (await subscribed(client, 'orders.4')).bind('Paid', got.add);
      await until(async () => value(await metrics(h), 'herald_ws_connections') === 1, 'connected');
      proxy.cut();
      await until(async () => value(await metrics(h), 'herald_pusher_resume_sessions') === 1, 'the closed connection kept');
      for (let n = 1; n <= 5; n++) await sdk(h).trigger('orders.4', 'Paid', { n });
      proxy.release();
      const [f] = await failed.count(1, 'herald:resume_failed');
      assert.deepEqual(f, { channel: 'orders.4', reason: 'too_old' });
      const m = await metrics(h);
      assert.equal(value(m, 'herald_pusher_resume_refused_total{reason="too_old"}'), 1, m);
      assert.ok(h.logs.some((l) => l.includes('Pusher resume refused') && l.includes('too_old')));
    } finally {
      client.disconnect(); await proxy.close(); await h.stop();
    }
  });

  test('--pusher-resume-sessions: past it the oldest closed connection is forgotten', async () => {
    const h = await startHerald(['--pusher-resume-sessions', '1']);
    const proxies = [await startProxy(h.httpPort), await startProxy(h.httpPort)];
    const clients = proxies.map((p) => pusherClient(h, { wsPort: p.port }));
    try {
      const watched = clients.map((c) => recovering(c));
      for (const c of clients) await subscribed(c, 'orders.5');
      proxies[0].cut();
      await until(async () => value(await metrics(h), 'herald_pusher_resume_sessions') === 1, 'the first kept');
      proxies[1].cut();
      await until(async () => value(await metrics(h), 'herald_pusher_resume_evicted_total') === 1, 'the first forgotten');
      for (const p of proxies) p.release();
      const [f] = await watched[0].failed.count(1, 'the first told');
      assert.deepEqual(f, { channel: 'orders.5', reason: 'window_over' });
      await watched[1].resumed.count(1, 'the second resumed');
      assert.ok(h.logs.some((l) => l.includes('--pusher-resume-sessions')));
    } finally {
      for (const c of clients) c.disconnect();
      for (const p of proxies) await p.close();
      await h.stop();
    }
  });

  test('an app without recovery answers disabled; a clean disconnect is not kept', async () => {
    const h = await startHerald(['--recovery-window', '0']);
    const proxy = await startProxy(h.httpPort);
    const client = pusherClient(h, { wsPort: proxy.port });
    try {
      const { failed } = recovering(client);
      await subscribed(client, 'orders.6');
      proxy.cut();
      proxy.release();
      const [f] = await failed.count(1, 'herald:resume_failed');
      assert.deepEqual(f, { channel: 'orders.6', reason: 'disabled' });
    } finally {
      client.disconnect(); await proxy.close(); await h.stop();
    }
    const h2 = await startHerald();
    const c2 = pusherClient(h2);
    try {
      await subscribed(c2, 'orders.7');
      c2.disconnect();
      await until(async () => value(await metrics(h2), 'herald_ws_connections') === 0, 'closed');
      assert.equal(value(await metrics(h2), 'herald_pusher_resume_sessions'), 0);
    } finally {
      await h2.stop();
    }
  });
});
