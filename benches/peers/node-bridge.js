// Peer 1 and 2: the classic tutorial's Node bridge. A real redis-server carries the
// publications; this process psubscribes to everything and forwards over socket.io 4.
//   MODE=broadcast: io.emit(channel + ':' + event, data) to every client (the tutorial).
//   MODE=rooms:     `subscribe` joins a room; io.to(channel).emit(event, channel, data)
//                   (laravel-echo-server's semantics).
// Usage: PORT=7101 REDIS_PORT=7379 MODE=rooms node node-bridge.js
const { Server } = require('socket.io');
const Redis = require('ioredis');

const port = Number(process.env.PORT || 7101);
const mode = process.env.MODE || 'rooms';
const prefix = process.env.PREFIX ?? 'laravel_database_';
const io = new Server(port, { cors: { origin: '*' } });
const redis = new Redis({ port: Number(process.env.REDIS_PORT || 6379), host: '127.0.0.1' });

io.on('connection', (socket) => {
  socket.on('subscribe', (msg) => msg && msg.channel && socket.join(msg.channel));
  socket.on('unsubscribe', (msg) => msg && msg.channel && socket.leave(msg.channel));
});

redis.psubscribe('*');
redis.on('pmessage', (_pattern, channel, raw) => {
  let message;
  try { message = JSON.parse(raw); } catch { return; }
  const name = channel.startsWith(prefix) ? channel.slice(prefix.length) : channel;
  if (mode === 'broadcast') io.emit(`${name}:${message.event}`, message.data);
  else io.to(name).emit(message.event, name, message.data);
});
console.error(`node bridge (${mode}) on ${port}, redis ${process.env.REDIS_PORT || 6379}`);
