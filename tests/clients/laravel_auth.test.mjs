// herald's `--auth-endpoint` against a real Laravel app instead of a stand-in: tests/php/auth-app
// (Laravel 8.83 from Debian's php-laravel-framework, served by `php -S`), whose
// /broadcasting/auth is Laravel's BroadcastController through the redis broadcaster and
// routes/channels.php: `App.Models.User.{id}` for its user only, presence `chat.{room}` answering
// {id, name}. Laravel Echo 2.5 (socket.io connector) tabs sign in the two ways a Laravel app has:
// the session cookie (GET /login/{id}, the cookie sent at the socket.io handshake) and a bearer
// token (Echo's `bearerToken`, sent in each subscription's auth headers; Laravel's TokenGuard).
// Refusals are Laravel's own 403 (AccessDeniedHttpException), as herald relays them in
// `subscription_error`. Broadcasts come from the same app (a ShouldBroadcastNow event through
// the RedisBroadcaster into herald's RESP port). CSRF is as a real app has it: VerifyCsrfToken
// in the web group with nothing excepted, and /broadcasting/auth taken out of it by Laravel's own
// Broadcast::routes(), so Echo needs no X-CSRF-TOKEN (herald forwards one when Echo sends it).
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import { startHerald, redisCli, laravelPayload, once, metric } from './lib/herald.mjs';
import { inbox, until, ackSubscribes, acked } from './lib/wait.mjs';
import { startLaravelAuthApp } from './fixtures/laravel-auth-app.mjs';

let app, h;
let open = [];
before(async () => {
  app = await startLaravelAuthApp();
  h = await startHerald(['--auth-endpoint', app.endpoint]);
  app.useRedis(h.redisPort);
});
// Every test starts with no tab left joined to a channel by an earlier one.
afterEach(async () => {
  for (const e of open) e.disconnect();
  open = [];
  await until(async () => await metric(h, 'herald_ws_connections') === 0, 'herald to close the tabs of the test');
});
after(async () => {
  await h?.stop();
  await app?.close();
});

const ANN = { id: 1, name: 'Ann' };
const BOB = { id: 2, name: 'Bob' };

// Echo options that sign a tab in as user `id`, each way a Laravel app knows.
const WAYS = {
  // The browser's cookies from signing in, sent with the socket.io handshake.
  'session cookie': async (id) => ({ extraHeaders: { Cookie: (await app.login(id)).cookie } }),
  // An SPA's or mobile app's token: Echo puts it in every subscription's auth headers.
  'bearer token': async (id) => ({ bearerToken: app.users[id].token }),
};

// An Echo tab (a guest without `options`). Its subscribes carry an ack id, so `joined` can wait
// until herald has joined the channel or told the refusal; refusals land in `tab.refusals`.
// Each tab gets its own `auth` and `userAuthentication`: Echo 2.5 writes `bearerToken` and
// `csrfToken` into the headers objects of its default options, which every Echo instance of the
// process shares (harmless in a browser page with one Echo, not in a test with several).
async function tab(options = {}) {
  const echo = new Echo({
    broadcaster: 'socket.io', host: h.url, client: io, transports: ['websocket'],
    forceNew: true, reconnection: false,
    auth: { headers: {} }, userAuthentication: { endpoint: '/broadcasting/user-auth', headers: {} },
    ...options,
  });
  open.push(echo);
  const socket = ackSubscribes(echo.connector.socket);
  echo.refusals = inbox();
  socket.on('subscription_error', (channel, status) => echo.refusals.add([channel, status]));
  if (!socket.connected) await once(socket, 'connect');
  return echo;
}

const joined = (echo, channel) => acked(echo.connector.socket, channel);
const left = (echo, channel) => acked(echo.connector.socket, channel, 'unsubscribe');

// A marker on a public channel, published after what must not arrive has been.
const publishMarker = (channel, n) =>
  redisCli(h.redisPort, 'PUBLISH', `laravel_database_${channel}`, laravelPayload('Marker', { n }));

for (const [way, signIn] of Object.entries(WAYS)) {
  test(`private App.Models.User.{id} (${way}): its user joins and gets the app's broadcast; another user and a guest get Laravel's 403`, async () => {
    const ann = await tab(await signIn(1));
    const bob = await tab(await signIn(2));
    const guest = await tab();
    const annGot = inbox(), bobGot = inbox(), guestGot = inbox();
    ann.private('App.Models.User.1').listen('UserNotified', annGot.add);
    bob.private('App.Models.User.1').listen('UserNotified', bobGot.add);
    guest.private('App.Models.User.1').listen('UserNotified', guestGot.add);
    // Each tab also hears something after the broadcast: Bob on his own channel, the guest on a
    // public one.
    bob.private('App.Models.User.2').listen('UserNotified', bobGot.add);
    guest.channel('news').listen('.Marker', guestGot.add);
    await Promise.all([
      joined(ann, 'private-App.Models.User.1'), joined(bob, 'private-App.Models.User.1'),
      joined(guest, 'private-App.Models.User.1'), joined(bob, 'private-App.Models.User.2'),
      joined(guest, 'news'),
    ]);
    assert.deepEqual(ann.refusals.items, [], 'Ann may listen to her own channel');
    assert.deepEqual(bob.refusals.items, [['private-App.Models.User.1', 403]], 'the callback refused Bob');
    assert.deepEqual(guest.refusals.items, [['private-App.Models.User.1', 403]], 'no guard signs a guest in');

    await app.notify(1, 'for Ann');
    assert.deepEqual(await annGot.count(1), [{ note: 'for Ann', socket: null }]);
    await app.notify(2, 'for Bob');
    await publishMarker('news', 1);
    assert.deepEqual(await bobGot.before((e) => e.note === 'for Bob', 'Bob\'s own notice'), [],
      'nothing of Ann\'s channel reaches Bob');
    assert.deepEqual(await guestGot.before((e) => e.n === 1, 'the marker'), [],
      'nothing of Ann\'s channel reaches the guest');
  });

  test(`presence chat.{room} (${way}): here, joining and leaving carry the user info Laravel returned; a guest is refused`, async () => {
    const room = `chat.${way.replace(/\W/g, '-')}`;
    const ann = await tab(await signIn(1));
    const annHere = inbox(), annSees = inbox();
    ann.join(room).here(annHere.add)
      .joining((u) => annSees.add(['joining', u]))
      .leaving((u) => annSees.add(['leaving', u]))
      .listen('.Marker', (e) => annSees.add(['marker', e.n]));
    assert.deepEqual(await annHere.count(1), [[ANN]]);

    const bob = await tab(await signIn(2));
    const bobHere = inbox();
    bob.join(room).here(bobHere.add);
    const [members] = await bobHere.count(1);
    assert.deepEqual([...members].sort((x, y) => x.id - y.id), [ANN, BOB]);
    assert.deepEqual(await annSees.count(1), [['joining', BOB]]);

    bob.leave(room);
    await left(bob, `presence-${room}`);
    assert.deepEqual(await annSees.count(2), [['joining', BOB], ['leaving', BOB]]);

    const guest = await tab();
    const guestHere = inbox();
    guest.join(room).here(guestHere.add);
    await joined(guest, `presence-${room}`);
    assert.deepEqual(guest.refusals.items, [[`presence-${room}`, 403]]);
    assert.deepEqual(guestHere.items, [], 'a guest is never told who is here');
    await publishMarker(`presence-${room}`, 1);
    assert.deepEqual(await annSees.before((e) => e[0] === 'marker'), [['joining', BOB], ['leaving', BOB]],
      'the refused guest never joined');
  });
}

test('CSRF: the app\'s VerifyCsrfToken refuses a session POST without the token, and Broadcast::routes() exempts /broadcasting/auth', async () => {
  const { cookie, csrfToken } = await app.login(1);
  const post = (headers) => app.request('/profile', { method: 'POST', headers: { Accept: 'application/json', Cookie: cookie, ...headers } });
  assert.equal((await post({})).status, 419, 'the web group checks CSRF (TokenMismatchException)');
  const ok = await post({ 'X-CSRF-TOKEN': csrfToken });
  assert.deepEqual([ok.status, await ok.json()], [200, { id: 1 }]);

  // Echo without a token (no <meta name="csrf-token"> in Node) and with a wrong one: Laravel
  // itself takes /broadcasting/auth out of VerifyCsrfToken, so both are authorized.
  const bare = await tab({ extraHeaders: { Cookie: cookie } });
  const wrong = await tab({ extraHeaders: { Cookie: cookie }, csrfToken: 'not-the-session-token' });
  for (const t of [bare, wrong]) t.private('App.Models.User.1');
  await Promise.all([joined(bare, 'private-App.Models.User.1'), joined(wrong, 'private-App.Models.User.1')]);
  assert.deepEqual([bare.refusals.items, wrong.refusals.items], [[], []]);
});
