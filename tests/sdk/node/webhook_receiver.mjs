// A webhook receiver that verifies every delivery with the official Node SDK
// (`mux.webhooks.unwrap`, async in @mux/mux-node 15), as an application written for the hosted
// API would. Used by the webhook end-to-end tests (crates/testkit/src/webhooks.rs drives it).
//
// Usage: WEBHOOK_SECRET=... [PORT=0] [WEBHOOK_MODE=ok|fail500|hang] [HANG_MS=10000]
//        node webhook_receiver.mjs
// Modes (how a delivery that the SDK verified is answered):
//   ok       200 (the default)
//   fail500  500, as a receiver whose application is broken
//   hang     no answer for HANG_MS (longer than the sender's timeout), then 503 if the
//            connection is still open
// `POST /mode` with the mode's name as the body switches the mode (answered 200).
// Prints one JSON line per thing that happens on stdout:
//   {"listening": PORT}                                  once, first
//   {"verified": {type, id, object_id, status, connected, recording, created_at, ...}}
//                                                        a delivery that passed, answered 200
//   {"failed": {"mode": "fail500"|"hang", type, id}}     one that passed, answered as the mode says
//   {"rejected": "why"}                                  one that did not, answered 400
//   {"mode": "hang"}                                     the mode was switched
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
const MODES = ['ok', 'fail500', 'hang'];
let mode = process.env.WEBHOOK_MODE ?? 'ok';
if (!MODES.includes(mode)) {
  console.error(`WEBHOOK_MODE must be one of ${MODES.join(', ')}`);
  process.exit(2);
}
const hangMs = Number(process.env.HANG_MS ?? 10000);

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const raw = Buffer.concat(chunks).toString('utf8');
    if (req.method === 'POST' && req.url === '/mode') {
      const wanted = raw.trim();
      if (!MODES.includes(wanted)) {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(`unknown mode ${wanted}`);
        return;
      }
      mode = wanted;
      out({ mode });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(mode);
      return;
    }
    try {
      if (req.method !== 'POST') throw new Error(`method ${req.method}`);
      const type = req.headers['content-type'] ?? '';
      if (!type.startsWith('application/json')) throw new Error(`content-type ${type}`);
      const event = await mux.webhooks.unwrap(raw, req.headers, secret);
      // Checked in every mode: each retry is signed afresh and must verify too.
      if (mode === 'fail500') {
        out({ failed: { mode, type: event.type, id: event.id } });
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('broken');
        return;
      }
      if (mode === 'hang') {
        out({ failed: { mode, type: event.type, id: event.id } });
        let closed = false;
        res.on('close', () => (closed = true));
        setTimeout(() => {
          if (!closed) {
            res.writeHead(503, { 'content-type': 'text/plain' });
            res.end('too late');
          }
        }, hangMs);
        return;
      }
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
          // Asset events: the live stream the asset records.
          data_live_stream_id: event.data?.live_stream_id,
          data_created_at: event.data?.created_at,
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
