// The app's webhook endpoint, as a test stands it up: every event herald posts, in the order
// they arrived (an Inbox of ./wait.mjs, so a test can wait for one).
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
      for (const e of JSON.parse(body).events) events.add(e);
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
