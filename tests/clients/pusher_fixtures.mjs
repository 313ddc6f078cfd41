// Shared by the Pusher test files: the default app's credentials, pusher-js clients
// authorized by the real `pusher` SDK, a raw protocol client, and a fixture HTTP server
// that plays Laravel's /broadcasting/auth for Echo.
import http from 'node:http';
import { createRequire } from 'node:module';
import WebSocket from 'ws';
import PusherJs from 'pusher-js';
import { DEADLINE_MS } from './lib/wait.mjs';

const require = createRequire(import.meta.url);
export const PusherServer = require('pusher');

export const APP = { appId: 'herald', key: 'herald-key', secret: 'herald-secret' };

// The official HTTP SDK pointed at herald.
export function sdk(h, app = APP) {
  return new PusherServer({ ...app, host: '127.0.0.1', port: h.httpPort, useTLS: false });
}

export function clientOptions(h, extra = {}) {
  return {
    wsHost: '127.0.0.1', wsPort: h.httpPort, forceTLS: false,
    enabledTransports: ['ws'], cluster: 'mt1', ...extra,
  };
}

// A pusher-js client whose channel and user auth are signed by the `pusher` SDK, as a
// Laravel backend would sign them. `user` is the presence member / signed-in user;
// `watchlist`, the user ids its signin watches.
export function pusherClient(h, { user = { user_id: '1', user_info: { name: 'Ada' } }, app = APP, signer, watchlist, ...extra } = {}) {
  const server = signer || sdk(h, app);
  return new PusherJs(app.key, clientOptions(h, {
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, cb) => {
        const presence = channelName.startsWith('presence-') ? user : undefined;
        cb(null, server.authorizeChannel(socketId, channelName, presence));
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, cb) => cb(null, server.authenticateUser(socketId, { id: String(user.user_id), name: 'u', ...(watchlist && { watchlist }) })),
    },
    ...extra,
  }));
}

export function connected(client, ms = DEADLINE_MS) {
  if (client.connection.state === 'connected') return Promise.resolve(client);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`not connected: ${client.connection.state}`)), ms);
    client.connection.bind('connected', () => { clearTimeout(t); resolve(client); });
  });
}

// Resolve with the data of the next `event` bound on a pusher-js channel (or connection).
export function next(bindable, event, ms = DEADLINE_MS) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), ms);
    const handler = (data, meta) => { clearTimeout(t); bindable.unbind(event, handler); resolve({ data, meta }); };
    bindable.bind(event, handler);
  });
}

export async function subscribed(client, name, ms = DEADLINE_MS) {
  const ch = client.subscribe(name);
  if (ch.subscribed) return ch;
  await next(ch, 'pusher:subscription_succeeded', ms);
  return ch;
}

// Sign in (pusher:signin) and wait until pusher-js has also subscribed to the user's
// #server-to-user channel, which it does after the signin: from then on events sent to the
// user, and watchlist events, reach the client.
export async function signedIn(client, ms = DEADLINE_MS) {
  client.signin();
  await client.user.signinDonePromise;
  const channel = client.user.serverToUserChannel;
  if (!channel.subscribed) await next(channel, 'pusher:subscription_succeeded', ms);
  return client;
}

// A bare protocol-7 client: every frame it receives, its close code and reason.
export class RawClient {
  constructor(url, headers = {}) {
    this.messages = [];
    this.waiters = [];
    this.ws = new WebSocket(url, { headers });
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.ws.on('error', () => {});
    this.ws.on('message', (buf) => {
      const msg = JSON.parse(buf.toString());
      if (typeof msg.data === 'string') { try { msg.parsed = JSON.parse(msg.data); } catch { /* plain string */ } }
      this.messages.push(msg);
      this.waiters = this.waiters.filter((w) => !w(msg));
    });
  }

  static connect(h, key = APP.key, query = 'protocol=7&client=js&version=8.6.0', headers = {}) {
    return new RawClient(`ws://127.0.0.1:${h.httpPort}/app/${key}?${query}`, headers);
  }

  // Wait for a message satisfying `pred` (an event name or a function).
  expect(pred, ms = DEADLINE_MS) {
    const test = typeof pred === 'string' ? (m) => m.event === pred : pred;
    const seen = this.messages.find(test);
    if (seen) { this.messages.splice(this.messages.indexOf(seen), 1); return Promise.resolve(seen); }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${pred}; got ${JSON.stringify(this.messages)}`)), ms);
      this.waiters.push((m) => {
        if (!test(m)) return false;
        clearTimeout(t);
        this.messages.splice(this.messages.indexOf(m), 1);
        resolve(m);
        return true;
      });
    });
  }

  async established() {
    const m = await this.expect('pusher:connection_established');
    this.socketId = m.parsed.socket_id;
    return m;
  }

  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }
  close() { this.ws.close(); }
}

// A fixture playing Laravel's /broadcasting/auth: form-encoded socket_id and
// channel_name in, the `pusher` SDK's signature out; presence members from `user`.
export async function startAuthServer(h, user = { user_id: 7, user_info: { name: 'Grace' } }) {
  const signer = sdk(h);
  const users = { default: user };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const form = new URLSearchParams(body);
      const socketId = form.get('socket_id');
      const channel = form.get('channel_name');
      const who = users[req.headers['x-user'] || 'default'] || user;
      res.setHeader('content-type', 'application/json');
      if (req.url.startsWith('/broadcasting/user-auth')) {
        res.end(JSON.stringify(signer.authenticateUser(socketId, { id: String(who.user_id) })));
        return;
      }
      const presence = channel.startsWith('presence-') ? who : undefined;
      res.end(JSON.stringify(signer.authorizeChannel(socketId, channel, presence)));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    users,
    endpoint: `http://127.0.0.1:${port}/broadcasting/auth`,
    close: () => new Promise((r) => server.close(r)),
  };
}
