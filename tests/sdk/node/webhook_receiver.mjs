// A webhook receiver that verifies every delivery with the official Node SDK
// (`mux.webhooks.unwrap`, async in @mux/mux-node 15), as an application written for the hosted
// API would. Used by crates/onair/tests/e2e_webhooks.rs.
//
// Usage: WEBHOOK_SECRET=... [PORT=0] node webhook_receiver.mjs
// Prints one JSON line per thing that happens on stdout:
//   {"listening": PORT}                                  once, first
//   {"verified": {type, id, object_id, status, connected, recording, created_at, ...}}
//                                                        a delivery that passed, answered 200
//   {"rejected": "why"}                                  one that did not, answered 400
import http from 'node:http';
import Mux from '@mux/mux-node';

const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error('WEBHOOK_SECRET is required');
  process.exit(2);
}
// Credentials are not used to verify webhooks; the SDK wants some to be constructed.
const mux = new Mux({ tokenId: 'x', tokenSecret: 'y' });
const out = (v) => console.log(JSON.stringify(v));

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const raw = Buffer.concat(chunks).toString('utf8');
    try {
      if (req.method !== 'POST') throw new Error(`method ${req.method}`);
      const type = req.headers['content-type'] ?? '';
      if (!type.startsWith('application/json')) throw new Error(`content-type ${type}`);
      const event = await mux.webhooks.unwrap(raw, req.headers, secret);
      out({
        verified: {
          type: event.type,
          id: event.id,
          created_at: event.created_at,
          object: event.object,
          environment: event.environment,
          attempts: event.attempts,
          accessor: event.accessor,
          accessor_source: event.accessor_source,
          request_id: event.request_id,
          status: event.data?.status,
          connected: event.data?.connected,
          recording: event.data?.recording,
          data_id: event.data?.id,
          data_created_at: event.data?.created_at,
          live_stream_id: event.data?.live_stream_id,
          active_asset_id: event.data?.active_asset_id,
          recent_asset_ids: event.data?.recent_asset_ids,
          is_live: event.data?.is_live,
        },
      });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    } catch (e) {
      out({ rejected: String(e?.message ?? e) });
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end('rejected');
    }
  });
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  out({ listening: server.address().port });
});
process.on('SIGTERM', () => process.exit(0));
