// The use case herald exists for, end to end (issue 12): a buyer's page waits for "paid" while
// its connection drops. examples/payment/public/order.html runs in a real browser (Debian's
// headless Chromium through playwright-core) with Laravel Echo 2.5, signed in to a real Laravel
// app (tests/php/payment-app: examples/payment inside tests/php/auth-app), which authorizes the
// private channel `private-orders.{id}` for the order's buyer only and broadcasts
// App\Events\OrderPaid and App\Events\OrderShipped through its redis broadcaster into herald's
// RESP port (tests/php/payment-app/dispatch.php, as its webhook handler would). The page reaches
// herald through a TCP proxy (lib/cut-proxy.mjs) that can reset every connection at once.
//
// For each of Echo's socket.io connector (socket.io-client 4.8) and reverb connector (pusher-js 8,
// with examples/pusher-recovery/herald-recovery.js when that file exists):
//   - connected: OrderPaid, then OrderShipped, reach the page; it shows "paid" once.
//   - cut: once the page is subscribed, the proxy resets its connection and holds new ones;
//     when the page and herald both know the connection is gone, the app broadcasts OrderPaid;
//     then the proxy lets the page reconnect, and once it has subscribed again the app
//     broadcasts OrderShipped, the ordered marker. The page must show "paid" exactly once, before
//     "shipped": herald recovered what the page missed (socket.io connection state recovery; the
//     Pusher resume), without a duplicate; over socket.io, `socket.recovered` is true. Without
//     recovery, OrderPaid is lost: the test fails with "OrderPaid never arrived".
//
// When the page is subscribed is read from the page, by an init script (instrument() below) that
// wraps the browser builds as the page loads them: socket.io `subscribe` packets carry an ack id,
// which herald answers once the socket is in the channel (after the app's answer), and pusher-js
// channels count `pusher:subscription_succeeded`. The page itself is untouched.
import { test, before, after, afterEach, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startHerald, metric } from './lib/herald.mjs';
import { until, DEADLINE_MS } from './lib/wait.mjs';
import { startCutProxy } from './lib/cut-proxy.mjs';
import { startLaravelAuthApp } from './fixtures/laravel-auth-app.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const paymentApp = path.join(root, 'tests/php/payment-app');
const recoverySnippet = path.join(root, 'examples/pusher-recovery/herald-recovery.js');
const ANN = 1; // the buyer of orders 1 to 4 (tests/php/payment-app/seed.php)

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => { await browser?.close(); });

// Runs in the page before its scripts: when the page's <script>s define `io` and `Pusher`, wrap
// them so window.__subscribed[channel] counts the times herald confirmed the subscription.
function instrument() {
  const confirmed = {};
  window.__subscribed = confirmed;
  const confirm = (channel) => { confirmed[channel] = (confirmed[channel] || 0) + 1; };
  const wrapOnDefine = (name, wrap) => {
    let value;
    Object.defineProperty(window, name, {
      configurable: true,
      get: () => value,
      set: (defined) => { value = wrap(defined); },
    });
  };
  wrapOnDefine('io', (io) => Object.assign((...args) => {
    const socket = io(...args);
    const emit = socket.emit.bind(socket);
    socket.emit = (event, ...rest) => (event === 'subscribe' && typeof rest[rest.length - 1] !== 'function'
      ? emit(event, ...rest, () => confirm(rest[0].channel))
      : emit(event, ...rest));
    return socket;
  }, io));
  wrapOnDefine('Pusher', (Pusher) => class extends Pusher {
    subscribe(name) {
      const channel = super.subscribe(name);
      if (!channel.confirmedCounted) {
        channel.confirmedCounted = true;
        channel.bind('pusher:subscription_succeeded', () => confirm(name));
      }
      return channel;
    }
  });
}

// What the page shows, and what it knows of its connection.
const seen = (page) => page.evaluate(() => ({
  events: [...document.querySelectorAll('#events li')].map((li) => li.textContent),
  paidCount: Number(document.getElementById('paid-count').textContent),
  connection: window.Echo?.connector?.connectionStatus?.(),
  recovered: window.Echo?.connector?.socket?.recovered,
  subscribed: window.__subscribed,
}));

// Waits (polling the page, with the suite's deadline) until `fn(arg)` is true in the page; on
// timeout, fails naming `what` with what the page shows and its console errors.
async function pageUntil(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: DEADLINE_MS, polling: 10 });
  } catch (e) {
    if (!/Timeout/.test(e.message)) throw e;
    throw new Error(`timed out after ${DEADLINE_MS} ms waiting for ${what}; the page: ${JSON.stringify(await seen(page))}`
      + (page.console.length ? `\nthe page's console:\n${page.console.join('\n')}` : ''));
  }
}

const subscribedTimes = (page, channel, n, what) => pageUntil(page,
  ([c, want]) => (window.__subscribed[c] || 0) >= want, [channel, n], what);

const markerShown = (page, what) => pageUntil(page,
  () => [...document.querySelectorAll('#events li')].some((li) => li.textContent === 'shipped'), null, what);

// "paid" exactly once, before the marker "shipped", and never after it; otherwise a message
// saying which of these went wrong.
function assertPaidOnceBeforeMarker({ events, paidCount }) {
  const marker = events.indexOf('shipped');
  const before = events.slice(0, marker).filter((e) => e === 'paid').length;
  const after = events.slice(marker + 1).filter((e) => e === 'paid').length;
  let verdict;
  if (before + after === 0) verdict = 'OrderPaid never arrived (the marker OrderShipped did)';
  else if (before + after > 1) verdict = `OrderPaid arrived ${before + after} times (${before} before the marker OrderShipped)`;
  else if (after) verdict = 'OrderPaid arrived after the marker OrderShipped (out of order)';
  if (verdict) assert.fail(`${verdict}; the page listed ${JSON.stringify(events)}`);
  assert.equal(paidCount, 1, 'the page counts the one OrderPaid it listed');
}

const CONNECTORS = {
  // herald asks the app's /broadcasting/auth (BROADCAST_CONNECTION=redis answers as
  // laravel-echo-server expected), forwarding the page's session cookie.
  'socket.io': { broadcastConnection: 'redis', heraldArgs: (app) => ['--auth-endpoint', app.endpoint] },
  // pusher-js asks the app itself (BROADCAST_CONNECTION=reverb signs with herald's development
  // app's secret), and herald checks the signature.
  reverb: { broadcastConnection: 'reverb', heraldArgs: () => [] },
};

for (const [connector, setup] of Object.entries(CONNECTORS)) {
  describe(`Echo's ${connector} connector`, () => {
    let app, h, proxy;
    let contexts = [];
    let nextOrder = 1;

    before(async () => {
      app = await startLaravelAuthApp({
        front: path.join(paymentApp, 'index.php'),
        seed: path.join(paymentApp, 'seed.php'),
        env: { BROADCAST_CONNECTION: setup.broadcastConnection },
      });
      h = await startHerald(setup.heraldArgs(app));
      app.useRedis(h.redisPort);
      proxy = await startCutProxy(h.httpPort);
    });
    afterEach(async () => {
      proxy.release(); // a failed cut test may have left it holding
      for (const context of contexts) await context.close();
      contexts = [];
    });
    after(async () => {
      await proxy?.close();
      await h?.stop();
      await app?.close();
    });

    const dispatch = (what, order) => app.run(path.join(paymentApp, 'dispatch.php'), what, String(order));

    // Ann signs in and opens her order's page, which reaches herald through the proxy; resolves
    // once herald has confirmed the page's subscription to the order's channel.
    async function orderPage(order) {
      const context = await browser.newContext();
      contexts.push(context);
      await context.addInitScript(instrument);
      const page = await context.newPage();
      page.console = [];
      page.on('pageerror', (e) => page.console.push(String(e)));
      page.on('console', (m) => { if (['error', 'warning'].includes(m.type())) page.console.push(m.text()); });
      await page.goto(`${app.url}/login/${ANN}`);
      const query = new URLSearchParams({ connector, herald: `127.0.0.1:${proxy.port}` });
      await page.goto(`${app.url}/orders/${order}?${query}`);
      await subscribedTimes(page, `private-orders.${order}`, 1, `the page to subscribe to private-orders.${order}`);
      if (connector === 'reverb' && fs.existsSync(recoverySnippet)) {
        const failed = page.console.filter((line) => line.includes('herald-recovery.js not loaded'));
        assert.deepEqual(failed, [], `${recoverySnippet} exists, so the page must load it`);
      }
      return page;
    }

    test('published while connected: the page shows "paid" once, before the next event', async () => {
      const order = nextOrder++;
      const page = await orderPage(order);
      await dispatch('paid', order);
      await dispatch('shipped', order);
      await markerShown(page, 'the marker OrderShipped');
      assertPaidOnceBeforeMarker(await seen(page));
    });

    test('published while the connection is cut: after reconnecting, the page shows "paid" exactly once', async () => {
      const order = nextOrder++;
      const channel = `private-orders.${order}`;
      const page = await orderPage(order);

      assert.equal(proxy.cut({ hold: true }), 1, 'the page had one connection to herald');
      await pageUntil(page, () => window.Echo.connector.connectionStatus() !== 'connected', null,
        'the page to see its connection drop');
      await until(async () => await metric(h, 'herald_ws_connections') === 0, 'herald to see the connection drop');

      await dispatch('paid', order);
      assert.deepEqual((await seen(page)).events, [], 'nothing reached the page while it was cut off');

      proxy.release();
      await subscribedTimes(page, channel, 2, `the page to reconnect and subscribe to ${channel} again`);
      await dispatch('shipped', order);
      await markerShown(page, 'the marker OrderShipped after the reconnection');
      const state = await seen(page);
      assertPaidOnceBeforeMarker(state);
      if (connector === 'socket.io') assert.equal(state.recovered, true, 'socket.io-client says its session was recovered');
    });
  });
}
