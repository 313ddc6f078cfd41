// A deliberately dumb WebSocket client over `net`, for sending what real clients never send:
// raw Engine.IO packets, bad frames, silence. It reads the HTTP answer to the upgrade as bytes.
import net from 'node:net';
import crypto from 'node:crypto';
import { DEADLINE_MS } from './wait.mjs';

export function rawUpgrade(port, pathAndQuery, headers = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const key = crypto.randomBytes(16).toString('base64');
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    sock.on('connect', () => sock.write(
      `GET ${pathAndQuery} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n${extra}\r\n`));
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onData);
      const head = buf.subarray(0, end).toString();
      const status = Number(head.split(' ')[1]);
      const rest = buf.subarray(end + 4);
      if (status !== 101) {
        // Non-101: collect the body until the server closes or Content-Length is met.
        let body = rest;
        const len = Number((/content-length: (\d+)/i.exec(head) || [])[1] || -1);
        const done = () => resolve({ status, head, body: body.toString() });
        if (len >= 0 && body.length >= len) return done();
        sock.on('data', (d) => { body = Buffer.concat([body, d]); if (len >= 0 && body.length >= len) done(); });
        sock.on('close', done);
        return;
      }
      resolve({ status, head, ws: new RawWs(sock, rest) });
    };
    sock.on('data', onData);
    sock.on('error', reject);
  });
}

export class RawWs {
  constructor(sock, initial) {
    this.sock = sock;
    this.buf = initial;
    this.messages = [];
    this.waiters = [];
    this.closed = false;
    this.closeCode = undefined;
    sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.parse(); });
    sock.on('close', () => { this.closed = true; this.flush(); });
    sock.on('error', () => {});
    this.parse();
  }

  parse() {
    for (;;) {
      if (this.buf.length < 2) break;
      let len = this.buf[1] & 0x7f, off = 2;
      if (len === 126) { if (this.buf.length < 4) break; len = this.buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (this.buf.length < 10) break; len = Number(this.buf.readBigUInt64BE(2)); off = 10; }
      if (this.buf.length < off + len) break;
      const op = this.buf[0] & 0x0f;
      const payload = this.buf.subarray(off, off + len);
      this.buf = this.buf.subarray(off + len);
      if (op === 1) this.messages.push(payload.toString());
      else if (op === 8) { this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005; }
    }
    this.flush();
  }

  flush() {
    while (this.waiters.length && (this.messages.length || this.closed)) {
      const w = this.waiters.shift();
      w(this.messages.length ? this.messages.shift() : null);
    }
  }

  // The next text message, or null once the connection is closed.
  next(ms = DEADLINE_MS) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no message in time')), ms);
      this.waiters.push((m) => { clearTimeout(t); resolve(m); });
      this.flush();
    });
  }

  send(data, opcode = 1) {
    const payload = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const mask = crypto.randomBytes(4);
    let header;
    if (payload.length < 126) header = Buffer.from([0x80 | opcode, 0x80 | payload.length]);
    else if (payload.length < 65536) { header = Buffer.alloc(4); header[0] = 0x80 | opcode; header[1] = 0x80 | 126; header.writeUInt16BE(payload.length, 2); }
    else { header = Buffer.alloc(10); header[0] = 0x80 | opcode; header[1] = 0x80 | 127; header.writeBigUInt64BE(BigInt(payload.length), 2); }
    const masked = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]));
    this.sock.write(Buffer.concat([header, mask, masked]));
  }

  // Resolve when the server has closed the TCP connection.
  closedWithin(ms = DEADLINE_MS) {
    return new Promise((resolve, reject) => {
      if (this.closed) return resolve(true);
      const t = setTimeout(() => reject(new Error('still open')), ms);
      this.sock.once('close', () => { clearTimeout(t); resolve(true); });
    });
  }

  end() { this.sock.destroy(); }
}
