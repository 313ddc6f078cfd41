// herald serving TLS itself (`--tls-cert`/`--tls-key` on the HTTP port, `--redis-tls-cert`/
// `--redis-tls-key` on RESP), with a certificate for 127.0.0.1 and localhost signed by a CA
// the test makes (openssl, lib/tls.mjs), and the real clients trusting that CA:
//   - Laravel Echo on socket.io-client over wss://, and over https:// long-polling upgraded to
//     wss://, gets an event published with redis-cli over TLS;
//   - a socket.io client that does not trust the CA cannot connect;
//   - pusher-js over wss:// (its own process, trusting the CA through NODE_EXTRA_CA_CERTS)
//     gets an event triggered with the `pusher` SDK over https://;
//   - a headless Chromium page (the leaf's key pinned with --ignore-certificate-errors-spki-list,
//     as a browser trusting the CA would accept it) connects Echo over wss:// and gets an event.
// The Rust side (tests/tls.rs) covers the handshake deadline, refusals, expiry and reload.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import { chromium } from 'playwright-core';
import { startHerald, laravelPayload } from './lib/herald.mjs';
import { privateCa } from './lib/tls.mjs';
import { inbox, once, within, ackSubscribes, acked } from './lib/wait.mjs';
import { PusherServer, APP } from './pusher_fixtures.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
let h, pki, ca;

before(async () => {
  pki = privateCa();
  ca = fs.readFileSync(pki.caFile);
  const cert = path.join(pki.dir, 'leaf.pem');
  const key = path.join(pki.dir, 'leaf.key');
  h = await startHerald(['--tls-cert', cert, '--tls-key', key, '--redis-tls-cert', cert, '--redis-tls-key', key]);
});
after(async () => {
  await h?.stop();
  fs.rmSync(pki.dir, { recursive: true, force: true });
});

// PUBLISH a Laravel envelope with redis-cli over TLS, trusting the test CA.
function publishTls(channel, event, data) {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['--tls', '--cacert', pki.caFile, '-h', '127.0.0.1', '-p', String(h.redisPort),
      'PUBLISH', `laravel_database_${channel}`, laravelPayload(event, data)], (err, stdout, stderr) => {
      if (err) reject(new Error(stderr || err.message)); else resolve(stdout.trim());
    });
  });
}

// An Echo tab on socket.io-client trusting the CA (`ca` reaches Node's TLS through
// engine.io-client), subscribed to `channel` (herald acked it) and listening for `.event`.
async function echoTab(channel, event, transports) {
  const echo = new Echo({
    broadcaster: 'socket.io', host: `https://127.0.0.1:${h.httpPort}`, client: io, transports,
    forceNew: true, reconnection: false, ca,
  });
  const socket = ackSubscribes(echo.connector.socket);
  const got = inbox();
  echo.channel(channel).listen(`.${event}`, (d) => got.add(d));
  if (!socket.connected) await once(socket, 'connect');
  await acked(socket, channel);
  return { echo, socket, got };
}

test('Echo over wss:// gets what redis-cli publishes over TLS', async () => {
  const tab = await echoTab('tls-ws', 'Shipped', ['websocket']);
  try {
    assert.equal(tab.socket.io.engine.transport.name, 'websocket');
    assert.equal(await publishTls('tls-ws', 'Shipped', { n: 1 }), '1');
    const [d] = await tab.got.count(1, 'the event over wss://');
    assert.equal(d.n, 1);
  } finally {
    tab.echo.disconnect();
  }
});

test('Echo over https:// long-polling upgrades to wss:// and gets events', async () => {
  const tab = await echoTab('tls-poll', 'Shipped', ['polling', 'websocket']);
  try {
    if (tab.socket.io.engine.transport.name !== 'websocket') await once(tab.socket.io.engine, 'upgrade');
    assert.equal(await publishTls('tls-poll', 'Shipped', { n: 1 }), '1');
    const [d] = await tab.got.count(1, 'the event after the upgrade');
    assert.equal(d.n, 1);
  } finally {
    tab.echo.disconnect();
  }
});

test('a client that does not trust the CA cannot connect', async () => {
  const socket = io(`https://127.0.0.1:${h.httpPort}`, { transports: ['websocket'], forceNew: true, reconnection: false });
  try {
    const err = await once(socket, 'connect_error');
    assert.match(String(err.description?.message ?? err.message ?? err), /certificate|self.signed|websocket error/i);
  } finally {
    socket.close();
  }
});

test('pusher-js over wss:// gets an event the pusher SDK triggers over https://', async () => {
  const child = spawn(process.execPath, [path.join(here, 'fixtures/pusher-tls-client.mjs'), String(h.httpPort), 'tls-pusher'], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: pki.caFile }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = inbox();
  readline.createInterface({ input: child.stdout }).on('line', (l) => lines.add(JSON.parse(l)));
  try {
    await lines.waitFor((l) => l.subscribed || l.error, 'pusher-js to subscribe over wss://');
    assert.ok(!lines.items.some((l) => l.error), JSON.stringify(lines.items));
    const sdk = new PusherServer({ ...APP, host: '127.0.0.1', port: h.httpPort, useTLS: true,
      agent: new https.Agent({ ca }) });
    await sdk.trigger('tls-pusher', 'shipped', { n: 2 });
    const got = await lines.waitFor((l) => l.event === 'shipped', 'the event over wss://');
    assert.deepEqual(got.data, { n: 2 });
  } finally {
    child.kill('SIGTERM');
  }
});

test('Chromium: Echo over wss:// from a page', async () => {
  const spki = execFileSync('sh', ['-c',
    `openssl x509 -in "${path.join(pki.dir, 'leaf.pem')}" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`])
    .toString().trim();
  const asset = path.join(here, 'node_modules');
  const pages = http.createServer((req, res) => {
    const files = {
      '/socket.io.min.js': path.join(asset, 'socket.io-client/dist/socket.io.min.js'),
      '/echo.iife.js': path.join(asset, 'laravel-echo/dist/echo.iife.js'),
    };
    if (files[req.url]) {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end(fs.readFileSync(files[req.url]));
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>app</title><script src="/socket.io.min.js"></script><script src="/echo.iife.js"></script>');
  });
  await new Promise((r) => pages.listen(0, '127.0.0.1', r));
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${spki}`],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${pages.address().port}/`);
    const connected = page.evaluate(async (port) => {
      const echo = new Echo.default({
        broadcaster: 'socket.io', host: `wss://127.0.0.1:${port}`, client: io, transports: ['websocket'],
      });
      window.got = [];
      echo.channel('tls-browser').listen('.Shipped', (d) => window.got.push(d));
      await new Promise((resolve, reject) => {
        echo.connector.socket.on('connect', resolve);
        echo.connector.socket.on('connect_error', (e) => reject(new Error(String(e))));
      });
      return echo.connector.socket.io.engine.transport.name;
    }, h.httpPort);
    assert.equal(await within(connected, 'Chromium to connect over wss://'), 'websocket');
    const deadline = Date.now() + 10000;
    let got = [];
    while (!got.length && Date.now() < deadline) {
      await publishTls('tls-browser', 'Shipped', { n: 3 });
      got = await page.evaluate(() => window.got);
      if (!got.length) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(got[0]?.n, 3, 'the event reached the page');
  } finally {
    await browser.close();
    pages.close();
  }
});
