// A real redis-server for a test file: the backplane of `herald --cluster`.
//
// herald's own RESP listener is a broadcast server that speaks Redis's pub/sub protocol, not a
// Redis: a cluster of herald nodes meets on a real one, and the tests must run against the
// real thing (Debian's /usr/bin/redis-server, installed by scripts/install-test-deps.sh) to
// show what happens when it answers, and when it dies and comes back. It runs on a free
// loopback port, in a temp dir of its own, with no persistence (`--save '' --appendonly no`),
// and is ready once it answers PING. With `{ tls: true }` it serves TLS only, with a certificate
// for 127.0.0.1 signed by a CA made for the test (openssl) that nothing trusts unless told:
// `url` is then `rediss://…` and `ca` the CA's PEM file.
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

// A test CA and a certificate for 127.0.0.1 it signed, in `dir`: { ca, cert, key } paths.
function certificates(dir) {
  const at = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: 'ignore' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=herald test CA',
    '-keyout', at('ca.key'), '-out', at('ca.pem'));
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', at('key.pem'), '-out', at('leaf.csr'));
  fs.writeFileSync(at('leaf.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
  openssl('x509', '-req', '-in', at('leaf.csr'), '-CA', at('ca.pem'), '-CAkey', at('ca.key'), '-CAcreateserial',
    '-days', '1', '-extfile', at('leaf.ext'), '-out', at('cert.pem'));
  return { ca: at('ca.pem'), cert: at('cert.pem'), key: at('key.pem') };
}

export async function startRedisServer({ port, tls: secure = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-redis-'));
  const certs = secure ? certificates(dir) : null;
  const listen = secure
    ? (p) => ['--port', '0', '--tls-port', String(p), '--tls-cert-file', certs.cert, '--tls-key-file', certs.key,
      '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'no']
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
    ca: certs?.ca,
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
