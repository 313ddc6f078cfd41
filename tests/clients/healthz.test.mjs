// /healthz says what is degraded: 200 `{"status":"ok"}`, or 503 naming each listener that is
// not accepting connections or is at its connection cap. Each state is caused for real in the
// running binary: connections up to a cap, and file descriptors run out (prlimit lowers herald's
// limit, then RESP clients use up what is left). The probe asks over one kept-alive connection,
// as a load balancer does, so it still gets through when no new connection can be accepted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
import { startHerald } from './lib/herald.mjs';
import { until, within } from './lib/wait.mjs';

// GET /healthz on the one connection of `agent`: [status, content-type, body parsed].
function healthz(h, agent) {
  return within(new Promise((resolve, reject) => {
    http.get(`${h.url}/healthz`, { agent }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve([res.statusCode, res.headers['content-type'], JSON.parse(body)]));
    }).on('error', reject);
  }), 'an answer from /healthz');
}

const probe = () => new http.Agent({ keepAlive: true, maxSockets: 1 });
const OK = [200, 'application/json', { status: 'ok' }];
const degraded = (problems) => [503, 'application/json', { status: 'degraded', problems }];

// Resolves once `h` answers /healthz with `want` (the state changes as herald sees the
// connections come and go, which the test cannot observe directly).
async function healthBecomes(h, agent, want, what) {
  let last;
  try {
    await until(async () => isDeepStrictEqual(last = await healthz(h, agent), want), what);
  } catch (e) {
    e.message += `; the last answer: ${JSON.stringify(last)}`;
    throw e;
  }
}

// A RESP client that herald has accepted and registered (it answered PING).
async function respClient(port) {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => {});
  const reply = new Promise((resolve) => sock.once('data', (d) => resolve(d.toString())));
  sock.write('PING\r\n');
  assert.equal(await within(reply, 'PONG'), '+PONG\r\n');
  return sock;
}

test('ok while healthy; degraded while RESP is at --maxclients', async () => {
  const h = await startHerald(['--maxclients', '1']);
  const agent = probe();
  try {
    assert.deepEqual(await healthz(h, agent), OK);
    const client = await respClient(h.redisPort);
    await healthBecomes(h, agent, degraded({
      resp: 'at its connection cap (1 of 1, --maxclients): new connections are refused',
    }), 'RESP at its cap');
    client.destroy();
    await healthBecomes(h, agent, OK, 'healthy again once the client left');
  } finally {
    agent.destroy();
    await h.stop();
  }
});

test('degraded while HTTP is at --max-connections', async () => {
  const h = await startHerald(['--max-connections', '2']);
  const agent = probe();
  try {
    assert.deepEqual(await healthz(h, agent), OK, 'the probe\'s own connection is one of two');
    const other = net.connect(h.httpPort, '127.0.0.1');
    other.on('error', () => {});
    await healthBecomes(h, agent, degraded({
      http: 'at its connection cap (2 of 2, --max-connections): new connections are refused',
    }), 'HTTP at its cap');
    other.destroy();
    await healthBecomes(h, agent, OK, 'healthy again once the connection closed');
  } finally {
    agent.destroy();
    await h.stop();
  }
});

test('degraded while the RESP listener cannot accept (out of file descriptors)', async () => {
  const h = await startHerald();
  const agent = probe();
  const clients = [];
  try {
    assert.deepEqual(await healthz(h, agent), OK);
    // Two descriptors left: two clients get in, the rest wait in the backlog while every
    // accept fails.
    const open = fs.readdirSync(`/proc/${h.proc.pid}/fd`).length;
    execFileSync('prlimit', ['--pid', String(h.proc.pid), `--nofile=${open + 2}:${open + 2}`]);
    for (let i = 0; i < 6; i++) {
      const sock = net.connect(h.redisPort, '127.0.0.1');
      sock.on('error', () => {});
      clients.push(sock);
    }
    await healthBecomes(h, agent, degraded({
      resp: 'not accepting connections: Too many open files (os error 24)',
    }), 'RESP not accepting');
    for (const sock of clients) sock.destroy();
    await healthBecomes(h, agent, OK, 'healthy again once descriptors were freed');
  } finally {
    for (const sock of clients) sock.destroy();
    agent.destroy();
    await h.stop();
  }
});
