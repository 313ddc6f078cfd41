// One policy for both WebSocket edges (src/edge_policy.rs, issue 10 points 4 and 7): the
// same table of cases runs against socket.io (socket.io-client, as Echo drives it) and
// Pusher (a raw protocol-7 client on `ws`, comparing the error payloads byte for byte).
// Client-event rate 0 and N, origins (exact, host-only, case, `*`), presence ids 7 and "7",
// whispers on public and encrypted channels, 200/201-byte channel names, oversized whispers.
// Absence is proved with an ordered marker: a later whisper, or a broadcast over RESP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import { startHerald, redisCli, laravelPayload } from './lib/herald.mjs';

const APP = { key: 'herald-key', secret: 'herald-secret' };
const WAIT = 10000;

// Laravel's /broadcasting/auth for socket.io: the user is the JSON after `Bearer ` (so `7`
// and `"7"` are different answers), private channels are allowed, presence channels
// answer channel_data with that user id exactly as given.
async function startAuth() {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const channel = new URLSearchParams(body).get('channel_name') || '';
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization || '');
      const reply = (status, value) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(value)); };
      if (!bearer) return reply(403, { message: '' });
      const user = JSON.parse(bearer[1]);
      if (channel.startsWith('presence-')) return reply(200, { channel_data: { user_id: user, user_info: { name: `u${user}` } } });
      return reply(200, true);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { endpoint: `http://127.0.0.1:${server.address().port}/broadcasting/auth`, close: () => new Promise((r) => server.close(r)) };
}

let auth, main, off;
const servers = {};
before(async () => {
  auth = await startAuth();
  main = await startHerald(['--auth-endpoint', auth.endpoint, '--client-event-rate', '3', '--max-message-size', '1000',
    '--allowed-origins', 'https://exact.test,host.test,CASE.TEST']);
  off = await startHerald(['--auth-endpoint', auth.endpoint, '--client-event-rate', '0']);
  Object.assign(servers, { main, off });
});
after(async () => {
  await main.stop();
  await off.stop();
  await auth.close();
});

// What a peer saw, in order, in one shape for both edges:
// whisper {channel, event, data} | error {text} | subscription_error {channel, text}
// | subscribed {channel, members} | joining {channel, user} | broadcast {channel, event}
class Log {
  constructor() { this.entries = []; this.waiters = []; }
  push(e) {
    this.entries.push(e);
    this.waiters = this.waiters.filter((w) => !w());
  }
  // The index of the first entry matching `pred`, waiting for it up to WAIT.
  find(pred, what = 'an entry') {
    const now = this.entries.findIndex(pred);
    if (now >= 0) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}; saw ${JSON.stringify(this.entries)}`)), WAIT);
      this.waiters.push(() => {
        const i = this.entries.findIndex(pred);
        if (i < 0) return false;
        clearTimeout(t);
        resolve(i);
        return true;
      });
    });
  }
}

const socketio = {
  name: 'socket.io',
  async open(h, user = 1) {
    const socket = io(h.url, { transports: ['websocket'], forceNew: true, reconnection: false });
    const log = new Log();
    socket.onAny((name, ...args) => {
      if (name.startsWith('client-')) log.push({ kind: 'whisper', channel: args[0], event: name, data: args[1] });
      else if (name === 'client_event_error') log.push({ kind: 'error', channel: args[0], text: args[1].message });
      else if (name === 'subscription_error') log.push({ kind: 'subscription_error', channel: args[0], text: args[1] });
      else if (name === 'presence:subscribed') log.push({ kind: 'subscribed', channel: args[0], members: args[1].length });
      else if (name === 'presence:joining') log.push({ kind: 'joining', channel: args[0], user: String(args[1].user_id) });
      else log.push({ kind: 'broadcast', channel: args[0], event: name });
    });
    await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('connect_error', reject); });
    return {
      log,
      // Herald acknowledges a subscribe once it is settled, after any refusal or presence list.
      async subscribe(channel) {
        const headers = { Authorization: `Bearer ${JSON.stringify(user)}` };
        await new Promise((r) => socket.emit('subscribe', { channel, auth: { headers } }, r));
        return log.entries.find((e) => e.channel === channel && ['subscription_error', 'subscribed'].includes(e.kind)) || { kind: 'subscribed' };
      },
      whisper(channel, event, data) { socket.emit('client event', { channel, event, data }); },
      close() { socket.disconnect(); },
    };
  },
  // The Engine.IO handshake from a page at `origin`: null if accepted, else the refusal's body.
  async handshake(h, origin) {
    const res = await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: origin } });
    const body = await res.text();
    return res.status === 200 ? null : `${res.status} ${body}`;
  },
};

const sign = (text) => crypto.createHmac('sha256', APP.secret).update(text).digest('hex');

const pusher = {
  name: 'pusher',
  async open(h, user = 1, headers = {}) {
    const ws = new WebSocket(`ws://127.0.0.1:${h.httpPort}/app/${APP.key}?protocol=7&client=js&version=8.6.0`, { headers });
    ws.on('error', () => {});
    const log = new Log();
    let socketId;
    const established = new Promise((resolve) => {
      ws.on('message', (buf) => {
        const m = JSON.parse(buf.toString());
        // Server events carry their data as a JSON string; client events as the sender wrote it.
        const parsed = () => JSON.parse(m.data);
        if (m.event === 'pusher:connection_established') { socketId = parsed().socket_id; resolve(null); }
        else if (m.event.startsWith('client-')) log.push({ kind: 'whisper', channel: m.channel, event: m.event, data: m.data });
        else if (m.event === 'pusher:error') { log.push({ kind: 'error', text: m.data }); resolve(m.data); }
        else if (m.event === 'pusher:subscription_error') log.push({ kind: 'subscription_error', channel: m.channel, text: m.data });
        else if (m.event === 'pusher_internal:subscription_succeeded') log.push({ kind: 'subscribed', channel: m.channel, members: parsed().presence?.count });
        else if (m.event === 'pusher_internal:member_added') log.push({ kind: 'joining', channel: m.channel, user: parsed().user_id });
        else log.push({ kind: 'broadcast', channel: m.channel, event: m.event });
      });
    });
    const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    let timer;
    const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('no hello in time')), WAIT); });
    const refused = await Promise.race([established, late]).finally(() => clearTimeout(timer));
    return {
      log, refused, closed,
      async subscribe(channel) {
        let data = { channel };
        if (channel.startsWith('presence-')) {
          const channelData = JSON.stringify({ user_id: user, user_info: { name: `u${user}` } });
          data = { channel, channel_data: channelData, auth: `${APP.key}:${sign(`${socketId}:${channel}:${channelData}`)}` };
        } else if (channel.startsWith('private-')) {
          data = { channel, auth: `${APP.key}:${sign(`${socketId}:${channel}`)}` };
        }
        ws.send(JSON.stringify({ event: 'pusher:subscribe', data }));
        const i = await log.find((e) => e.channel === channel && ['subscription_error', 'subscribed'].includes(e.kind), `${channel} settled`);
        return log.entries[i];
      },
      whisper(channel, event, data) { ws.send(JSON.stringify({ event, channel, data })); },
      close() { ws.close(); },
    };
  },
  async handshake(h, origin) {
    const peer = await pusher.open(h, 1, { Origin: origin });
    if (!peer.refused) { peer.close(); return null; }
    return `${await peer.closed} ${peer.refused}`;
  },
};

// Per-edge expectations, byte for byte where the protocol fixes them.
const expected = {
  'socket.io': {
    disabled: 'client events are disabled',
    rate: 'client event rate limit exceeded',
    kind: 'client events are allowed on private and presence channels only',
    tooLarge: 'client event data is too large',
    longName: 400,
    badName: 400,
    origin: '403 {"code":4,"message":"Forbidden"}',
  },
  pusher: {
    disabled: '{"code":4301,"message":"To send client events, you must enable this feature in the Settings."}',
    rate: '{"code":4301,"message":"Client event rejected due to rate limit"}',
    kind: '{"code":4301,"message":"Client events are only allowed on private and presence channels"}',
    tooLarge: '{"code":4301,"message":"Message too large"}',
    // herald's subscription_error keys are sorted (serde_json), Pusher's docs list type first.
    longName: '{"error":"The channel name is longer than the allowed 200 characters.","status":4009,"type":"LimitReached"}',
    badName: '{"error":"Invalid channel name","status":4009,"type":"InvalidChannel"}',
    origin: '4009 {"code":4009,"message":"Origin not allowed"}',
  },
};

let serial = 0;
const unique = (base) => `${base}-${++serial}`;

// `speaker` and `listener` subscribed to `channel` on `h`.
async function pair(edge, h, channel) {
  const speaker = await edge.open(h, 1);
  const listener = await edge.open(h, 2);
  for (const p of [speaker, listener]) assert.equal((await p.subscribe(channel)).kind, 'subscribed');
  return { speaker, listener, close: () => { speaker.close(); listener.close(); } };
}

// Broadcast `Marker` to `channel` over RESP and return the whispers `peer` saw before it.
async function whispersBeforeMarker(h, channel, peer) {
  await redisCli(h.redisPort, 'PUBLISH', `laravel_database_${channel}`, laravelPayload('Marker', {}));
  const at = await peer.log.find((e) => e.kind === 'broadcast' && e.event === 'Marker', 'the marker broadcast');
  return peer.log.entries.slice(0, at).filter((e) => e.kind === 'whisper');
}

const errors = (peer) => peer.log.entries.filter((e) => e.kind === 'error').map((e) => e.text);

const cases = [
  {
    name: '--client-event-rate 0: client events are off, nothing is relayed',
    server: 'off',
    async run(edge, h, want) {
      const channel = unique('private-off');
      const { speaker, listener, close } = await pair(edge, h, channel);
      speaker.whisper(channel, 'client-typing', { n: 1 });
      await speaker.log.find((e) => e.kind === 'error', 'the refusal');
      assert.deepEqual(errors(speaker), [want.disabled]);
      assert.deepEqual(await whispersBeforeMarker(h, channel, listener), []);
      close();
    },
  },
  {
    name: '--client-event-rate 3: three whispers a second pass, the fourth is refused',
    server: 'main',
    async run(edge, h, want) {
      const channel = unique('private-rate');
      const { speaker, listener, close } = await pair(edge, h, channel);
      for (let n = 0; n < 4; n++) speaker.whisper(channel, 'client-burst', { n });
      await speaker.log.find((e) => e.kind === 'error', 'the refusal');
      assert.deepEqual(errors(speaker), [want.rate]);
      const heard = await whispersBeforeMarker(h, channel, listener);
      assert.deepEqual(heard.map((w) => w.data.n), [0, 1, 2]);
      close();
    },
  },
  {
    name: 'origins: exact, host-only, any case, and * allowed; others refused',
    server: 'main',
    async run(edge, h, want) {
      for (const origin of ['https://exact.test', 'https://host.test:8443', 'http://host.test', 'https://case.test', 'HTTPS://EXACT.TEST']) {
        assert.equal(await edge.handshake(h, origin), null, `${origin} is allowed`);
      }
      for (const origin of ['https://evil.test', 'http://exact.test', 'https://host.test.evil.test']) {
        assert.equal(await edge.handshake(h, origin), want.origin, `${origin} is refused`);
      }
      assert.equal(await edge.handshake(servers.off, 'https://evil.test'), null, '* allows any');
    },
  },
  {
    name: 'presence: user ids 7 and "7" are one member, announced once',
    server: 'main',
    async run(edge, h) {
      const channel = unique('presence-room');
      const peers = [];
      const join = async (user) => {
        const p = await edge.open(h, user);
        peers.push(p);
        return p.subscribe(channel);
      };
      const watcher = await edge.open(h, 8);
      peers.push(watcher);
      assert.equal((await watcher.subscribe(channel)).members, 1);
      assert.equal((await join(7)).members, 2);
      assert.equal((await join('7')).members, 2, '"7" is the member 7 already present');
      assert.equal((await join(9)).members, 3);
      const at = await watcher.log.find((e) => e.kind === 'joining' && e.user === '9', 'the joining of 9');
      const joined = watcher.log.entries.slice(0, at).filter((e) => e.kind === 'joining').map((e) => e.user);
      assert.deepEqual(joined, ['7']);
      for (const p of peers) p.close();
    },
  },
  {
    name: 'whispers on public and encrypted channels are refused and relayed to no one',
    server: 'main',
    async run(edge, h, want) {
      for (const base of ['public', 'private-encrypted-x']) {
        const channel = unique(base);
        const { speaker, listener, close } = await pair(edge, h, channel);
        speaker.whisper(channel, 'client-wave', { hi: 1 });
        await speaker.log.find((e) => e.kind === 'error', 'the refusal');
        assert.deepEqual(errors(speaker), [want.kind], channel);
        assert.deepEqual(await whispersBeforeMarker(h, channel, listener), [], channel);
        close();
      }
    },
  },
  {
    name: 'channel names: 200 bytes accepted, 201 bytes or a space refused',
    server: 'main',
    async run(edge, h, want) {
      const peer = await edge.open(h);
      const ok = 'n'.repeat(199) + (serial++ % 10);
      assert.equal(Buffer.byteLength(ok), 200);
      assert.equal((await peer.subscribe(ok)).kind, 'subscribed');
      const long = await peer.subscribe('n'.repeat(201));
      assert.deepEqual([long.kind, long.text], ['subscription_error', want.longName]);
      const bad = await peer.subscribe('has space');
      assert.deepEqual([bad.kind, bad.text], ['subscription_error', want.badName]);
      peer.close();
    },
  },
  {
    name: 'a whisper over --max-message-size is refused; the others hear only the next one',
    server: 'main',
    async run(edge, h, want) {
      const channel = unique('private-big');
      const { speaker, listener, close } = await pair(edge, h, channel);
      speaker.whisper(channel, 'client-big', { pad: 'x'.repeat(1000) });
      speaker.whisper(channel, 'client-next', { pad: 'y'.repeat(880) });
      const at = await listener.log.find((e) => e.kind === 'whisper', 'a whisper');
      assert.equal(listener.log.entries[at].event, 'client-next');
      // The refusal travels on the speaker's own connection: not ordered with the listener's.
      await speaker.log.find((e) => e.kind === 'error', 'the refusal');
      assert.deepEqual(errors(speaker), [want.tooLarge]);
      close();
    },
  },
];

for (const edge of [socketio, pusher]) {
  for (const c of cases) {
    test(`${edge.name}: ${c.name}`, () => c.run(edge, servers[c.server], expected[edge.name]));
  }
}
