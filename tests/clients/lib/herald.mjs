// Starts a real herald binary for a test file and stops it afterwards.
// Both ports are picked by herald itself (port 0); we read the bound addresses
// from its JSON log lines.
import net from 'node:net';
import { spawn, execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import readline from 'node:readline';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const heraldBin = process.env.HERALD_BIN || path.join(root, 'target/debug/herald');

// A `--redis-bind` or `--http-bind` in `args` replaces the loopback default (clap refuses a flag
// given twice): `--http-bind 0.0.0.0:0` starts herald exposed, still reached through 127.0.0.1.
// A loopback port nobody listens on now (the kernel's pick, released at once), for a server a
// test starts on a port it must know beforehand (a restart on the same port, ports shared).
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export async function startHerald(args = [], env = {}) {
  const binds = [['--redis-bind', '127.0.0.1:0'], ['--http-bind', '127.0.0.1:0']]
    .filter(([flag]) => !args.includes(flag)).flat();
  const proc = spawn(heraldBin, [
    ...binds, '--log-format', 'json', ...args,
  ], { env: { ...process.env, RUST_LOG: process.env.HERALD_TEST_LOG || 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs = [];
  let redisPort, httpPort;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('herald did not start:\n' + logs.join('\n'))), 10000);
    proc.on('exit', (code) => reject(new Error(`herald exited with ${code}:\n` + logs.join('\n'))));
    for (const stream of [proc.stdout, proc.stderr]) {
      readline.createInterface({ input: stream }).on('line', (line) => {
        logs.push(line);
        if (process.env.HERALD_TEST_VERBOSE) console.error('[herald]', line);
        try {
          const f = JSON.parse(line).fields || {};
          if (f.redis_addr) redisPort = Number(f.redis_addr.split(':').pop());
          if (f.http_addr) httpPort = Number(f.http_addr.split(':').pop());
        } catch { /* not JSON */ }
        if (redisPort && httpPort) { clearTimeout(timer); resolve(); }
      });
    }
  });
  proc.removeAllListeners('exit');
  return {
    proc, logs, redisPort, httpPort,
    url: `http://127.0.0.1:${httpPort}`,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode; // exited, or killed
      const done = new Promise((r) => proc.once('exit', (code) => r(code)));
      proc.kill('SIGTERM');
      return done;
    },
  };
}

// Publish with the real redis-cli, as an app or an operator would.
export function redisCli(port, ...args) {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-p', String(port), ...args], (err, stdout, stderr) => {
      if (err) reject(new Error(stderr || err.message)); else resolve(stdout.trim());
    });
  });
}

// A Laravel-shaped broadcast payload, as RedisBroadcaster json_encodes it.
export function laravelPayload(event, data, socket = null) {
  return JSON.stringify({ event, data: { ...data, socket }, socket });
}

// Only where time is the subject of a test (a timeout, a heartbeat); otherwise wait for an
// event with ./wait.mjs.
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The next `event` of an emitter (its argument list), with the toolkit's deadline.
export { once } from './wait.mjs';

// The value of one /metrics line (a counter or gauge without labels).
export async function metric(h, name) {
  const text = await (await fetch(`${h.url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}
