// The official Node SDK's asset calls against OnAir. Prints one JSON line per step on stdout;
// the Rust test (crates/onair/tests/e2e_sdk.rs) pushes the broadcasts with ffmpeg between
// the first step and the second (it writes a line to stdin when the broadcasts are over).
//
// Usage: ONAIR_URL=http://127.0.0.1:8080 TOKEN_ID=... TOKEN_SECRET=... node asset_flow.mjs
import { client, next, out } from './steps.mjs';

// Every asset list request the SDK makes, to see it follow `next_cursor`.
const listRequests = [];
const mux = client({
  fetch: (url, init) => {
    const u = new URL(url);
    if (u.pathname === '/video/v1/assets') listRequests.push(u.search);
    return fetch(url, init);
  },
});
const ls = mux.video.liveStreams;
const assets = mux.video.assets;
const collect = async (query) => {
  const ids = [];
  for await (const asset of assets.list(query)) ids.push(asset.id);
  return ids;
};

// The broadcast under test reconnects once inside its window; the other stream makes a second
// asset so that listing needs more than one page.
const main = await ls.create({
  playback_policies: ['public'],
  new_asset_settings: { playback_policies: ['public'] },
  reconnect_window: 3,
});
const other = await ls.create({
  playback_policies: ['public'],
  new_asset_settings: { playback_policies: ['public'] },
  reconnect_window: 0,
});
out('created', {
  main: { id: main.id, stream_key: main.stream_key },
  other: { id: other.id, stream_key: other.stream_key },
});
await next();

listRequests.length = 0;
const all = await collect({ limit: 1 });
out('list_all', { ids: all, requests: [...listRequests] });
listRequests.length = 0;
const mine = await collect({ live_stream_id: main.id });
out('list_by_live_stream', { ids: mine, requests: [...listRequests] });
const stream = await ls.retrieve(main.id);
out('live_stream', stream);
const id = stream.recent_asset_ids.at(-1);
const asset = await assets.retrieve(id);
out('retrieve', asset);
out('input_info', await assets.retrieveInputInfo(id));
const playbackId = asset.playback_ids[0].id;
out('retrieve_playback_id', await assets.retrievePlaybackId(id, playbackId));
out('playback_id_lookup', await mux.video.playbackIds.retrieve(playbackId));
const updated = await assets.update(id, { passthrough: 'sdk-asset', meta: { title: 'SDK show' } });
out('update', { answer: updated, reread: await assets.retrieve(id) });
await assets.delete(id);
let after;
try {
  after = await assets.retrieve(id);
} catch (e) {
  after = e.status;
}
out('delete', { retrieve: after, listed: await collect({ live_stream_id: main.id }) });
process.exit(0);
