// A real browser (Debian's headless Chromium through playwright-core): a page served from
// another origin signs in with a cookie, connects to herald with Laravel Echo over long-polling
// (credentials included, so CORS must echo the origin), upgrades to WebSocket, and joins a
// presence channel that herald authorizes by forwarding that cookie to the app. A page from an
// origin herald does not allow is refused on polling and on WebSocket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startHerald } from './lib/herald.mjs';
import { startAuthApp } from './fixtures/laravel-auth.mjs';

const modules = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules');
const assets = {
  '/socket.io.min.js': path.join(modules, 'socket.io-client/dist/socket.io.min.js'),
  '/echo.iife.js': path.join(modules, 'laravel-echo/dist/echo.iife.js'),
};

let h, app, pages, browser, pagePort;
before(async () => {
  pages = http.createServer((req, res) => {
    const file = assets[req.url];
    if (file) {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end(fs.readFileSync(file));
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>app</title><script src="/socket.io.min.js"></script><script src="/echo.iife.js"></script>');
  });
  await new Promise((r) => pages.listen(0, '127.0.0.1', r));
  pagePort = pages.address().port;
  app = await startAuthApp();
  h = await startHerald(['--auth-endpoint', app.endpoint, '--allowed-origins', `http://localhost:${pagePort}`]);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  await browser?.close();
  await h?.stop();
  await app?.close();
  pages?.close();
});

test('Echo in Chromium from another origin: cookie, polling, upgrade, presence', async () => {
  const page = await browser.newPage();
  await page.goto(`http://localhost:${pagePort}/`);
  const result = await page.evaluate(async (heraldPort) => {
    // The Laravel session cookie; cookies ignore ports, so herald on localhost gets it too.
    document.cookie = 'laravel_session=1; path=/; SameSite=Lax';
    const echo = new Echo.default({
      broadcaster: 'socket.io', host: `http://localhost:${heraldPort}`, client: io, withCredentials: true,
    });
    const socket = echo.connector.socket;
    const first = await new Promise((resolve) => socket.io.on('open', () => resolve(socket.io.engine.transport.name)));
    const upgraded = await new Promise((resolve) => {
      if (socket.io.engine.transport.name === 'websocket') return resolve('websocket');
      socket.io.engine.on('upgrade', (t) => resolve(t.name));
    });
    const here = await new Promise((resolve) => echo.join('room').here(resolve));
    return { first, upgraded, here, socketId: echo.socketId() };
  }, h.httpPort);
  assert.equal(result.first, 'polling');
  assert.equal(result.upgraded, 'websocket');
  assert.deepEqual(result.here, [{ id: 1, name: 'Ann' }]);
  const asked = app.requests.find((r) => r.form.socket_id === result.socketId);
  assert.equal(asked.headers.cookie, 'laravel_session=1', 'the browser cookie reached the app through herald');
  await page.close();
});

test('Chromium on a disallowed origin is refused on polling and on WebSocket', async () => {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${pagePort}/`);
  const result = await page.evaluate(async (heraldPort) => {
    const attempt = (transports) => new Promise((resolve) => {
      const socket = io(`http://localhost:${heraldPort}`, { transports, reconnection: false, forceNew: true, withCredentials: true });
      socket.on('connect', () => { socket.close(); resolve('connected'); });
      socket.on('connect_error', () => { socket.close(); resolve('refused'); });
    });
    const polling = await attempt(['polling']);
    const websocket = await attempt(['websocket']);
    const res = await fetch(`http://localhost:${heraldPort}/socket.io/?EIO=4&transport=polling`).then(() => 'readable', () => 'blocked');
    return { polling, websocket, res };
  }, h.httpPort);
  assert.deepEqual(result, { polling: 'refused', websocket: 'refused', res: 'blocked' });
  await page.close();
});
