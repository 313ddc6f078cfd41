// The app's webhook endpoint, as a test stands it up: every event herald posts, in the order
// they arrived (an Inbox of ./wait.mjs, so a test can wait for one), each with its body's
// time_ms. One node posts its webhooks in order; several nodes' posts may cross on the way, so
// `inSentOrder` orders events of several nodes as they were sent.
//
//   const hooks = await startWebhookReceiver();
//   hooks.url                         give it to herald as --app-webhook
//   await hooks.events.waitFor((e) => e.name === 'member_added', 'the join told')
//   await hooks.close();
import http from 'node:http';
import { inbox } from './wait.mjs';

export async function startWebhookReceiver() {
  const events = inbox();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const { time_ms: sent, events: posted } = JSON.parse(body);
      for (const e of posted) events.add({ ...e, sent });
      res.writeHead(200).end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks`,
    events,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

// `events` (of several nodes) in the order they were sent: by their body's time_ms, and in the
// order they arrived within a millisecond.
export const inSentOrder = (events) => events.map((e, i) => [e, i])
  .sort(([a, i], [b, j]) => a.sent - b.sent || i - j).map(([e]) => e);
