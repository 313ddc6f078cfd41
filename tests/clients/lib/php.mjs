// A PHP script served by PHP's built-in web server (`php -S 127.0.0.1:0 <script>`, the script
// as the router of every request), for the Laravel apps under tests/php.
//
//   const php = await servePhp(script, { HERALD_REDIS_PORT: '6380' });
//   php.url      http://127.0.0.1:<port the server picked>
//   php.logs     the server's stderr lines (its access log, and what the app logs there)
//   await php.close()
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { within } from './wait.mjs';

export async function servePhp(script, env = {}) {
  const proc = spawn('php', ['-S', '127.0.0.1:0', script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const logs = [];
  const url = await within(new Promise((resolve, reject) => {
    proc.on('exit', (code) => reject(new Error(`php -S exited with ${code}:\n${logs.join('\n')}`)));
    readline.createInterface({ input: proc.stderr }).on('line', (line) => {
      logs.push(line);
      const m = /Development Server \((http:\/\/[\d.]+:\d+)\) started/.exec(line);
      if (m) resolve(m[1]);
    });
  }), 'php -S to start');
  proc.removeAllListeners('exit');
  return {
    url,
    logs,
    close() {
      if (proc.exitCode !== null) return Promise.resolve();
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      return done;
    },
  };
}
