// Signed playback with the official Node SDK: a signing key created through OnAir's API, a
// live stream with a signed playback ID, and tokens made by the SDK's jwt.signPlaybackId (the
// good one and every kind of wrong one). The Rust test (crates/onair/tests/e2e_signed_playback.rs)
// publishes and plays with them, then lets this script delete the key.
//
// Usage: ONAIR_URL=http://127.0.0.1:8080 TOKEN_ID=... TOKEN_SECRET=... node signed_playback.mjs
import { client, next, out } from './steps.mjs';

const mux = client();
const key = await mux.system.signingKeys.create();
const listed = [];
for await (const k of mux.system.signingKeys.list()) listed.push(k);
const read = await mux.system.signingKeys.retrieve(key.id);
const stream = await mux.video.liveStreams.create({
  playback_policies: ['signed'],
  new_asset_settings: { playback_policies: ['signed'] },
});
const playbackId = stream.playback_ids[0].id;
const other = await mux.video.liveStreams.createPlaybackId(stream.id, { policy: 'signed' });
const sign = (id, config = {}) =>
  mux.jwt.signPlaybackId(id, { keyId: key.id, keySecret: key.private_key, ...config });
out('created', {
  key,
  listed,
  read,
  stream_key: stream.stream_key,
  playback_id: playbackId,
  tokens: {
    video: await sign(playbackId),
    short: await sign(playbackId, { expiration: '1h' }),
    expired: await sign(playbackId, { expiration: -10 }),
    other_playback_id: await sign(other.id),
    thumbnail: await sign(playbackId, { type: 'thumbnail' }),
    storyboard: await sign(playbackId, { type: 'storyboard' }),
    gif: await sign(playbackId, { type: 'gif' }),
  },
});
await next();
await mux.system.signingKeys.delete(key.id);
let afterDelete;
try {
  await mux.system.signingKeys.retrieve(key.id);
  afterDelete = 'still there';
} catch (e) {
  afterDelete = e.status;
}
out('deleted', { retrieve_status: afterDelete });
process.exit(0);
