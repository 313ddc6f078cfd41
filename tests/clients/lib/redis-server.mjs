// A real redis-server for a test file: the backplane of `herald --cluster`.
//
// herald's own RESP listener is a broadcast server that speaks Redis's pub/sub protocol, not a
// Redis: a cluster of herald nodes meets on a real one, and the tests must run against the
// real thing (Debian's /usr/bin/redis-server, installed by scripts/install-test-deps.sh) to
// show what happens when it answers, and when it dies and comes back. It runs on a free
// loopback port, in a temp dir of its own, with no persistence (`--save '' --appendonly no`),
// and is ready once it answers PING. With `{ tls: true }` it serves TLS only, with a certificate
// for 127.0.0.1 it signs itself (openssl), which nothing trusts: `url` is then `rediss://…`.
//
//   const redis = await startRedisServer();   // { port, url, logs }
//   await redis.crash();                      // kill -9, as a crash or an OOM kill does
//   await redis.start();                      // again on the same port (after crash or stop)
//   await redis.restart();                    // crash() then start()
//   await redis.stop();                       // SIGTERM, for `after`
//   redis.running                             // false after crash() or stop()
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import tls from 'node:tls';
import { DEADLINE_MS } from './wait.mjs';
import { freePort } from './herald.mjs';

export const redisServerBin = process.env.REDIS_SERVER_BIN || '/usr/bin/redis-server';

// True once a RESP connection to `port` (over TLS if `secure`) answers PING with +PONG.
function pong(port, secure) {
  return new Promise((resolve) => {
    const sock = secure
      ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false })
      : net.connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(1000, () => done(false));
    sock.on('error', () => done(false));
    sock.on(secure ? 'secureConnect' : 'connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      reply += d;
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

const exited = (proc) => (proc.exitCode !== null || proc.signalCode !== null
  ? Promise.resolve()
  : new Promise((r) => proc.once('exit', () => r())));

// A self-signed certificate for 127.0.0.1 in `dir`: [cert, key] paths.
function selfSigned(dir) {
  const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-keyout', key, '-out', cert, '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
  { stdio: 'ignore' });
  return [cert, key];
}

export async function startRedisServer({ port, tls: secure = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-redis-'));
  const listen = secure
    ? (() => {
      const [cert, key] = selfSigned(dir);
      return (p) => ['--port', '0', '--tls-port', String(p), '--tls-cert-file', cert, '--tls-key-file', key,
        '--tls-ca-cert-file', cert, '--tls-auth-clients', 'no'];
    })()
    : (p) => ['--port', String(p)];
  const logs = [];
  let proc = null;
  // The port is fixed after the first start, so that restart() comes back where herald looks.
  port = port || await freePort();

  async function start() {
    if (proc && proc.exitCode === null && proc.signalCode === null) throw new Error('redis-server is already running');
    proc = spawn(redisServerBin, [
      ...listen(port), '--bind', '127.0.0.1', '--dir', dir,
      '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'notice',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    const me = proc;
    for (const stream of [me.stdout, me.stderr]) {
      readline.createInterface({ input: stream }).on('line', (line) => {
        logs.push(line);
        if (process.env.HERALD_TEST_VERBOSE) console.error('[redis-server]', line);
      });
    }
    const end = Date.now() + DEADLINE_MS;
    while (!(await pong(port, secure))) {
      if (me.exitCode !== null || me.signalCode !== null) {
        throw new Error(`redis-server exited (${me.exitCode ?? me.signalCode}) on port ${port}:\n${logs.join('\n')}`);
      }
      if (Date.now() > end) throw new Error(`redis-server did not answer PING on port ${port} within ${DEADLINE_MS} ms:\n${logs.join('\n')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function kill(signal) {
    if (!proc) return;
    const done = exited(proc);
    proc.kill(signal);
    await done;
  }

  await start();
  return {
    port,
    url: `${secure ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    logs,
    get pid() { return proc && proc.pid; },
    get running() { return !!proc && proc.exitCode === null && proc.signalCode === null; },
    start,
    crash: () => kill('SIGKILL'),
    async restart() { await kill('SIGKILL'); await start(); },
    async stop() {
      await kill('SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
