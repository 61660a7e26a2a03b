// The official Node SDK against OnAir. Prints one JSON line per step on stdout; the Rust test
// (crates/onair/tests/e2e_sdk.rs) drives it step by step through stdin so that it can push
// media with the key the SDK returned between steps.
//
// Usage: ONAIR_URL=http://127.0.0.1:8080 TOKEN_ID=... TOKEN_SECRET=... node live_stream_flow.mjs
import { client, next, out } from './steps.mjs';

const mux = client();
const ls = mux.video.liveStreams;

const created = await ls.create({
  playback_policies: ['public'],
  new_asset_settings: { playback_policies: ['public'] },
  latency_mode: 'reduced',
  reconnect_window: 30,
  passthrough: 'sdk-test',
});
out('create', created);
// The legacy request forms (a playback_policy string, in new_asset_settings too), a reconnect
// window with a fraction and meta: read back, listed and updated in the current shapes.
const legacy = await ls.create({
  playback_policy: 'public',
  new_asset_settings: { playback_policy: 'public' },
  reconnect_window: 12.5,
  meta: { title: 'SDK show', creator_id: 'sdk-user', external_id: 'ext-1' },
});
const legacyRead = await ls.retrieve(legacy.id);
const legacyUpdated = await ls.update(legacy.id, {
  meta: { title: 'SDK show, renamed' },
  reconnect_window: 0.5,
});
const legacyListed = [];
for await (const stream of ls.list({ limit: 100 })) {
  if (stream.id === legacy.id) legacyListed.push(stream);
}
await ls.delete(legacy.id);
out('legacy', { created: legacy, read: legacyRead, updated: legacyUpdated, listed: legacyListed });
const read = await ls.retrieve(created.id);
out('retrieve', read);
const listed = [];
for await (const stream of ls.list({ limit: 100 })) listed.push(stream.id);
out('list', listed);
const pid = await ls.createPlaybackId(created.id, { policy: 'signed' });
out('create_playback_id', pid);
out('retrieve_playback_id', await ls.retrievePlaybackId(created.id, pid.id));
await ls.deletePlaybackId(created.id, pid.id);
out('delete_playback_id', (await ls.retrieve(created.id)).playback_ids);
const reset = await ls.resetStreamKey(created.id);
out('reset_stream_key', reset);
await ls.disable(created.id);
out('disable', await ls.retrieve(created.id));
await ls.enable(created.id);
out('enable', await ls.retrieve(created.id));
// The test now pushes media with reset.stream_key and plays reset.playback_ids[0].id.
out('ready_to_publish', { stream_key: reset.stream_key, playback_id: reset.playback_ids[0].id });
await next();
out('while_live', await ls.retrieve(created.id));
await ls.complete(created.id);
out('complete', await ls.retrieve(created.id));
await ls.delete(created.id);
try {
  await ls.retrieve(created.id);
  out('deleted', 'still there');
} catch (e) {
  out('deleted', e.status);
}
process.exit(0);
