// Waiting for what a test expects, with a deadline, instead of sleeping and hoping.
//
// A passing test returns as soon as the awaited thing happens; a failing one fails at the
// deadline (10 s: generous, because a busy 2-core machine can stall a test for seconds) with
// a message naming what it waited for. Absence is proven with an ordered marker: after the
// thing that must not arrive, send something that must arrive and that herald handles after
// it (a publication on the same channel, a reply on the same connection), wait for that
// marker, then assert on what came before it.
//
// Exports (stable: other test files import them):
//   DEADLINE_MS                      10000, or HERALD_TEST_DEADLINE_MS
//   within(promise, what, ms?)       the promise's value, or a rejection naming `what` at the deadline
//   until(cond, what, ms?)           polls cond() (sync or async) every 10 ms; resolves with its first truthy value
//   once(emitter, event, ms?)        the argument list of the emitter's next `event` (Node EventEmitter,
//                                    socket.io-client socket or manager, `ws` WebSocket)
//   inbox()                          an Inbox: `box.add` is a callback that records its argument;
//     box.items                        everything recorded, in order
//     box.waitFor(pred, what?, ms?)    the first recorded item matching pred, waiting for it if needed
//     box.count(n, what?, ms?)         the items once there are at least n
//     box.before(marker, what?, ms?)   the items recorded before the first one matching `marker`
//                                      (waits for the marker): assert on these to prove absence
//   ackSubscribes(socket)            makes every `subscribe` / `unsubscribe` emitted on a socket.io-client
//                                    socket (Laravel Echo's too) carry an ack id; herald acks a subscribe
//                                    after the join or the app's answer (subscription_error comes first)
//                                    and an unsubscribe once it is done. Returns the socket.
//   acked(socket, channel, event?)   resolves when herald has acked the last `event` ('subscribe' by
//                                    default) emitted for `channel` on a socket passed to ackSubscribes
//   subscribe(socket, channel, extra?) emit `subscribe` with an ack and wait for it (plain socket.io-client)
//
// Fixed sleeps remain only where time is the subject of a test (a timeout, a heartbeat); use
// `sleep` from ./herald.mjs for those and say why.

export const DEADLINE_MS = Number(process.env.HERALD_TEST_DEADLINE_MS) || 10000;

export function within(promise, what, ms = DEADLINE_MS) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

export async function until(cond, what = 'a condition', ms = DEADLINE_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await cond();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function once(emitter, event, ms = DEADLINE_MS) {
  return new Promise((resolve, reject) => {
    const handler = (...args) => { clearTimeout(t); resolve(args); };
    const t = setTimeout(() => {
      (emitter.off || emitter.removeListener).call(emitter, event, handler);
      reject(new Error(`timed out after ${ms} ms waiting for ${event}`));
    }, ms);
    emitter.once(event, handler);
  });
}

class Inbox {
  constructor() {
    this.items = [];
    this.waiters = new Set();
    this.add = (item) => {
      this.items.push(item);
      for (const w of [...this.waiters]) w();
    };
  }

  // Resolve with check()'s first non-undefined answer, re-asked after every add.
  #wait(check, what, ms) {
    const now = check();
    if (now !== undefined) return Promise.resolve(now);
    let waiter;
    const got = new Promise((resolve) => {
      waiter = () => { const v = check(); if (v !== undefined) resolve(v); };
      this.waiters.add(waiter);
    });
    const detail = () => `${what}; got ${JSON.stringify(this.items)}`;
    return within(got, { toString: detail }, ms).finally(() => this.waiters.delete(waiter));
  }

  waitFor(pred, what = 'a matching item', ms = DEADLINE_MS) {
    return this.#wait(() => this.items.find(pred), what, ms);
  }

  count(n, what = `${n} items`, ms = DEADLINE_MS) {
    return this.#wait(() => (this.items.length >= n ? [...this.items] : undefined), what, ms);
  }

  before(marker, what = 'the marker', ms = DEADLINE_MS) {
    return this.#wait(() => {
      const i = this.items.findIndex(marker);
      return i < 0 ? undefined : this.items.slice(0, i);
    }, what, ms);
  }
}

export const inbox = () => new Inbox();

const ackTables = new WeakMap();

export function ackSubscribes(socket) {
  if (ackTables.has(socket)) return socket;
  const table = new Map();
  ackTables.set(socket, table);
  const emit = socket.emit.bind(socket);
  socket.emit = (event, ...args) => {
    const channel = args[0] && args[0].channel;
    const wantsAck = (event === 'subscribe' || event === 'unsubscribe')
      && typeof channel === 'string' && typeof args[args.length - 1] !== 'function';
    if (!wantsAck) return emit(event, ...args);
    let done;
    table.set(`${event} ${channel}`, new Promise((resolve) => { done = resolve; }));
    return emit(event, ...args, () => done());
  };
  return socket;
}

export function acked(socket, channel, event = 'subscribe', ms = DEADLINE_MS) {
  const table = ackTables.get(socket);
  if (!table) throw new Error('acked() needs a socket passed to ackSubscribes() first');
  const pending = table.get(`${event} ${channel}`);
  if (!pending) return Promise.reject(new Error(`no ${event} was emitted for ${channel}`));
  return within(pending, `herald's ack of ${event} ${channel}`, ms);
}

export function subscribe(socket, channel, extra = {}, ms = DEADLINE_MS) {
  return within(new Promise((resolve) => socket.emit('subscribe', { channel, ...extra }, () => resolve())),
    `herald's ack of subscribe ${channel}`, ms);
}
