// The Pusher protocol's edges, with a bare WebSocket client: Pusher's error codes on
// connect, bad input answered with pusher:error and the connection kept, limits, the
// heartbeat (ping, then 4201), terminations and the graceful-shutdown close (4200).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { startHerald, once } from './lib/herald.mjs';
import { until, inbox } from './lib/wait.mjs';
import { APP, sdk, RawClient, pusherClient, connected } from './pusher_fixtures.mjs';

const APPS = `
[[apps]]
id = "off"
key = "off-key"
secret = "off-secret"
enabled = false

[[apps]]
id = "one"
key = "one-key"
secret = "one-secret"
max_connections = 1

[[apps]]
id = "origin"
key = "origin-key"
secret = "origin-secret"
allowed_origins = ["app.test"]

[[apps]]
id = "quiet"
key = "quiet-key"
secret = "quiet-secret"
client_events = false

[[apps]]
id = "small"
key = "small-key"
secret = "small-secret"
max_message_size = 400
max_presence_members = 1
max_presence_member_size = 100
`;
const SMALL = { appId: 'small', key: 'small-key', secret: 'small-secret' };
const QUIET = { appId: 'quiet', key: 'quiet-key', secret: 'quiet-secret' };

let h;
const raws = [];
function raw(key, query, headers) { const c = RawClient.connect(h, key, query, headers); raws.push(c); return c; }

async function refused(client, code) {
  const err = await client.expect('pusher:error');
  assert.equal(err.parsed.code, code);
  const closed = await client.closed;
  assert.equal(closed.code, code);
  return err.parsed.message;
}

async function subscribeSigned(c, channel, app = APP, member) {
  const auth = sdk(h, app).authorizeChannel(c.socketId, channel, member);
  c.send({ event: 'pusher:subscribe', data: { channel, ...auth } });
}

before(async () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'herald-')), 'apps.toml');
  fs.writeFileSync(file, APPS);
  h = await startHerald(['--config', file, '--client-event-rate', '3']);
});
after(async () => { for (const c of raws) c.close(); await h.stop(); });

test('unknown app key: 4001', async () => {
  assert.match(await refused(raw('nope'), 4001), /App key/);
});

test('protocol version: 4008 missing, 4006 malformed, 4007 unsupported', async () => {
  await refused(raw(APP.key, 'client=js'), 4008);
  await refused(raw(APP.key, 'protocol=seven'), 4006);
  await refused(raw(APP.key, 'protocol=3'), 4007);
});

test('path not found: 4005', async () => {
  await refused(new RawClient(`ws://127.0.0.1:${h.httpPort}/nowhere?protocol=7`), 4005);
  await refused(new RawClient(`ws://127.0.0.1:${h.httpPort}/app/${APP.key}/extra?protocol=7`), 4005);
  // socket.io's path is left to the socket.io edge, never answered with a Pusher error:
  // the first frame there is Engine.IO's open packet.
  const sio = new WebSocket(`ws://127.0.0.1:${h.httpPort}/socket.io/?EIO=4&transport=websocket`);
  const [first] = await once(sio, 'message');
  sio.close();
  assert.match(first.toString(), /^0\{"sid":/);
});

test('disabled app: 4003', async () => {
  await refused(raw('off-key'), 4003);
});

test('over the connection quota: 4004, and room again once the first leaves', async () => {
  const first = raw('one-key');
  await first.established();
  await refused(raw('one-key'), 4004);
  first.close();
  await first.closed;
  // herald frees the slot once it has handled the close, which nothing acknowledges:
  // connect until a connection is accepted; those refused before were refused with 4004.
  await until(async () => {
    const c = raw('one-key');
    const m = await c.expect((x) => x.event === 'pusher:connection_established' || x.event === 'pusher:error');
    if (m.event === 'pusher:connection_established') return true;
    assert.equal(m.parsed.code, 4004);
    return false;
  }, 'a connection slot for app one');
});

test('allowed origins: a foreign Origin gets 4009, an allowed one connects', async () => {
  await refused(raw('origin-key', undefined, { Origin: 'https://evil.test' }), 4009);
  await raw('origin-key', undefined, { Origin: 'https://app.test' }).established();
});

test('connection_established carries socket_id and activity_timeout as a JSON string', async () => {
  const c = raw(APP.key);
  const m = await c.established();
  assert.equal(typeof m.data, 'string');
  assert.match(m.parsed.socket_id, /^\d+\.\d+$/);
  assert.equal(m.parsed.activity_timeout, 120);
});

test('pusher:ping gets pusher:pong; a WebSocket ping gets a pong frame', async () => {
  const c = raw(APP.key);
  await c.established();
  c.send({ event: 'pusher:ping', data: {} });
  await c.expect('pusher:pong');
  const pong = new Promise((r) => c.ws.once('pong', (d) => r(d.toString())));
  c.ws.ping('hb');
  assert.equal(await pong, 'hb');
});

test('malformed JSON and malformed events: pusher:error 4200, the connection kept', async () => {
  const c = raw(APP.key);
  await c.established();
  for (const bad of ['{not json', '[1,2]', '"str"', JSON.stringify({ event: 'pusher:subscribe', data: { nochannel: 1 } })]) {
    c.send(bad);
    const e = await c.expect('pusher:error');
    assert.equal(e.parsed.code, 4200, bad);
  }
  c.send({ event: 'pusher:subscribe', data: { channel: 'still-alive' } });
  const ok = await c.expect('pusher_internal:subscription_succeeded');
  assert.equal(ok.channel, 'still-alive');
  assert.equal(ok.data, '{}');
});

test('oversized messages: pusher:error 4301 past the app limit, close 1009 past the frame limit', async () => {
  const c = raw('small-key');
  await c.established();
  c.send({ event: 'pusher:ping', data: { pad: 'x'.repeat(500) } });
  assert.equal((await c.expect('pusher:error')).parsed.code, 4301);
  c.send({ event: 'pusher:ping', data: {} });
  await c.expect('pusher:pong');
  c.send('x'.repeat(70 * 1024));
  assert.equal((await c.closed).code, 1009);
});

test('private channel without a valid auth: subscription_error and 4009, connection kept', async () => {
  const c = raw(APP.key);
  await c.established();
  c.send({ event: 'pusher:subscribe', data: { channel: 'private-a' } });
  const se = await c.expect('pusher:subscription_error');
  assert.equal(se.channel, 'private-a');
  assert.deepEqual(se.parsed, { type: 'AuthError', error: 'Invalid signature', status: 401 });
  assert.equal((await c.expect('pusher:error')).parsed.code, 4009);
  // A signature for another socket is refused too.
  const stolen = sdk(h).authorizeChannel('1.1', 'private-a');
  c.send({ event: 'pusher:subscribe', data: { channel: 'private-a', ...stolen } });
  await c.expect('pusher:subscription_error');
  // A presence signature must cover channel_data: altering it breaks the signature.
  const auth = sdk(h).authorizeChannel(c.socketId, 'presence-p', { user_id: '1' });
  c.send({ event: 'pusher:subscribe', data: { channel: 'presence-p', auth: auth.auth, channel_data: '{"user_id":"2"}' } });
  await c.expect('pusher:subscription_error');
  await subscribeSigned(c, 'private-a');
  await c.expect((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === 'private-a');
});

test('private-encrypted channels need the signature too; the server relays ciphertext as is', async () => {
  const c = raw(APP.key);
  await c.established();
  c.send({ event: 'pusher:subscribe', data: { channel: 'private-encrypted-vault' } });
  assert.equal((await c.expect('pusher:subscription_error')).parsed.type, 'AuthError');
  assert.equal((await c.expect('pusher:error')).parsed.code, 4009);
  const withKey = { ...APP, encryptionMasterKeyBase64: Buffer.alloc(32, 7).toString('base64') };
  await subscribeSigned(c, 'private-encrypted-vault', withKey);
  await c.expect((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === 'private-encrypted-vault');
  const cipher = JSON.stringify({ nonce: 'bm9uY2U=', ciphertext: 'Y2lwaGVy' });
  await sdk(h).post({ path: '/events', body: { name: 'Secret', data: cipher, channels: ['private-encrypted-vault'] } });
  const m = await c.expect('Secret');
  assert.equal(m.data, cipher);
  // Client events are not allowed on encrypted channels (pusher-js refuses them too).
  c.send({ event: 'client-x', channel: 'private-encrypted-vault', data: {} });
  assert.equal((await c.expect('pusher:error')).parsed.code, 4301);
});

test('invalid channel names and #server-to-user without signin are refused', async () => {
  const c = raw(APP.key);
  await c.established();
  c.send({ event: 'pusher:subscribe', data: { channel: 'bad name!' } });
  assert.equal((await c.expect('pusher:subscription_error')).channel, 'bad name!');
  c.send({ event: 'pusher:subscribe', data: { channel: '#server-to-user-1' } });
  assert.equal((await c.expect('pusher:subscription_error')).parsed.type, 'AuthError');
});

test('presence limits: member data size and member count', async () => {
  const a = raw('small-key');
  await a.established();
  await subscribeSigned(a, 'presence-big', SMALL, { user_id: '1', user_info: { bio: "x".repeat(150) } });
  assert.equal((await a.expect('pusher:subscription_error')).parsed.type, 'LimitReached');
  await subscribeSigned(a, 'presence-full', SMALL, { user_id: '1' });
  const ok = await a.expect('pusher_internal:subscription_succeeded');
  assert.deepEqual(ok.parsed, { presence: { ids: ['1'], hash: { 1: null }, count: 1 } });
  const b = raw('small-key');
  await b.established();
  await subscribeSigned(b, 'presence-full', SMALL, { user_id: '2' });
  assert.equal((await b.expect('pusher:subscription_error')).parsed.type, 'LimitReached');
  // The same user on a second connection is not a new member.
  await subscribeSigned(b, 'presence-full', SMALL, { user_id: '1' });
  await b.expect('pusher_internal:subscription_succeeded');
});

test('client events: refused on public channels, before subscribing, when disabled, and over the rate', async () => {
  const c = raw(APP.key);
  await c.established();
  c.send({ event: 'pusher:subscribe', data: { channel: 'public' } });
  await c.expect('pusher_internal:subscription_succeeded');
  c.send({ event: 'client-x', channel: 'public', data: {} });
  assert.equal((await c.expect('pusher:error')).parsed.code, 4301);
  c.send({ event: 'client-x', channel: 'private-not-joined', data: {} });
  assert.equal((await c.expect('pusher:error')).parsed.code, 4301);

  const q = raw('quiet-key');
  await q.established();
  await subscribeSigned(q, 'private-q', QUIET);
  await q.expect('pusher_internal:subscription_succeeded');
  q.send({ event: 'client-x', channel: 'private-q', data: {} });
  assert.equal((await q.expect('pusher:error')).parsed.code, 4301);

  const other = raw(APP.key);
  await other.established();
  await subscribeSigned(other, 'private-r');
  await subscribeSigned(c, 'private-r');
  await other.expect('pusher_internal:subscription_succeeded');
  await c.expect('pusher_internal:subscription_succeeded');
  for (let i = 0; i < 4; i++) c.send({ event: 'client-n', channel: 'private-r', data: { i } });
  assert.equal((await c.expect('pusher:error')).parsed.code, 4301, 'the 4th in a second is over the rate of 3');
  for (let i = 0; i < 3; i++) assert.deepEqual((await other.expect('client-n')).data, { i });
  // The refusal came after herald handled the 4th: an API event now follows anything relayed.
  await sdk(h).trigger('private-r', 'Marker', {});
  await other.expect('Marker');
  assert.deepEqual(other.messages.filter((m) => m.event === 'client-n'), [], 'the 4th was not relayed');
});

test('signin with a bad signature: pusher:error 4009 and close', async () => {
  const c = raw(APP.key);
  await c.established();
  c.send({ event: 'pusher:signin', data: { auth: `${APP.key}:${'0'.repeat(64)}`, user_data: '{"id":"1"}' } });
  await refused(c, 4009);
});

test('signin with a watchlist over 100 users: pusher:error 4009 and close', async () => {
  const c = raw(APP.key);
  await c.established();
  const watchlist = Array.from({ length: 101 }, (_, i) => `u${i}`);
  c.send({ event: 'pusher:signin', data: sdk(h).authenticateUser(c.socketId, { id: 'big', watchlist }) });
  assert.equal(await refused(c, 4009), 'The watchlist names more than 100 users');
});

test('terminate_connections closes every connection the user signed in on', async () => {
  const signIn = async () => {
    const c = raw(APP.key);
    await c.established();
    c.send({ event: 'pusher:signin', data: sdk(h).authenticateUser(c.socketId, { id: 'bye' }) });
    const ok = await c.expect('pusher:signin_success');
    assert.deepEqual(JSON.parse(ok.parsed.user_data), { id: 'bye' });
    return c;
  };
  const [a, b] = [await signIn(), await signIn()];
  const bystander = raw(APP.key);
  await bystander.established();
  await sdk(h).terminateUserConnections('bye');
  await refused(a, 4009);
  await refused(b, 4009);
  bystander.send({ event: 'pusher:ping' });
  await bystander.expect('pusher:pong');
});

test('heartbeat: an idle client is pinged, and closed with 4201 when it does not answer', async () => {
  // The heartbeat is the subject: 2 s of silence before the ping and 2 s to answer it, which a
  // busy machine meets (1 s would leave the answering client one second to answer).
  const hb = await startHerald(['--activity-timeout', '2']);
  try {
    const silent = RawClient.connect(hb);
    const answering = RawClient.connect(hb);
    answering.ws.on('message', (buf) => {
      if (JSON.parse(buf.toString()).event === 'pusher:ping') answering.send({ event: 'pusher:pong' });
    });
    assert.equal((await silent.established()).parsed.activity_timeout, 2);
    await answering.established();
    const t0 = Date.now();
    await silent.expect('pusher:ping');
    await answering.expect('pusher:ping');
    const closed = await silent.closed;
    assert.equal(closed.code, 4201);
    assert.ok(Date.now() - t0 >= 3000, 'closed only after the pong wait');
    // Pinged again after answering: it outlived the wait that closed the silent one.
    await answering.expect('pusher:ping');
    assert.equal(answering.ws.readyState, 1, 'the client that answered stays');
    answering.close();
  } finally { await hb.stop(); }
});

test('graceful shutdown closes with 4200 so clients reconnect at once', async () => {
  const s = await startHerald();
  const c = RawClient.connect(s);
  await c.established();
  await s.stop();
  assert.equal((await c.closed).code, 4200);
});

test('pusher-js takes the shutdown 4200 as "reconnect at once"', async () => {
  const s = await startHerald();
  const c = pusherClient(s);
  try {
    await connected(c);
    // A refusal (4000-4099) disconnects; a backoff (4100-4199) reconnects after a second; a
    // 4200 reconnects at once. Time is the subject here, measured from the error itself, so a
    // slow shutdown does not count: 500 ms is far from the backoff's 1000 ms.
    const log = inbox();
    c.connection.bind('error', (e) => log.add(['error', e.data && e.data.code, Date.now()]));
    c.connection.bind('state_change', ({ current }) => log.add(['state', current, Date.now()]));
    await s.stop();
    const [, state, changedAt] = await log.waitFor(([kind]) => kind === 'state', 'a state change');
    const [,, erredAt] = await log.waitFor(([kind, code]) => kind === 'error' && code === 4200, 'the 4200 error');
    assert.equal(state, 'connecting', 'retry, not disconnected or failed');
    assert.ok(changedAt - erredAt < 500, `reconnecting ${changedAt - erredAt} ms after the 4200`);
  } finally { c.disconnect(); }
});
