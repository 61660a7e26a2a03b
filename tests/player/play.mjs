// Plays an HLS URL with hls.js in headless Chromium (the system /usr/bin/chromium, driven by
// playwright-core) for a number of seconds, as a viewer's browser would, and prints ONE JSON
// report on stdout. Everything else (diagnostics) goes to stderr.
//
//   node play.mjs URL SECONDS [--recover]
//
// --recover does hls.js's documented recovery (fatal NETWORK_ERROR -> hls.startLoad(),
// fatal MEDIA_ERROR -> hls.recoverMediaError()); fatal errors are recorded either way.
// With SCREENSHOT_DIR set, the video element is captured every SCREENSHOT_EVERY_MS (default
// 1000) into SCREENSHOT_DIR/<t_wall>.png, so a caller can look at what a viewer saw when.
// Exit status: 0 when a report was printed (whatever the playback did: the caller judges it),
// 2 for bad arguments, 3 when Chromium is missing or cannot start.
//
// The report (crates/testkit/src/player.rs deserializes it; keep the two in step):
//   environment:  {browser, hls_js, mse_supported, mse_h264_aac}
//   fatal_errors: [{t_wall, type, details, reason}]       every fatal hls.js error
//   errors:       [{t_wall, type, details, fatal, reason}] all hls.js errors, first MAX_EVENTS
//   error_count:  every hls.js error, also those beyond MAX_EVENTS
//   frags:        [{t_wall, event, sn, cc, start, duration, level}] FRAG_LOADED ("loaded")
//                 and FRAG_CHANGED ("changed") of media segments, first MAX_EVENTS
//   playlists:    [{t_wall, media_sequence, end_sn, end_cc, live, target_duration,
//                   fragments}] LEVEL_LOADED, first MAX_EVENTS
//   samples:      [{t_wall, current_time, ready_state, paused}] every 500 ms
//   played_seconds: sum of currentTime advance while playing (seeks excluded)
//   stalls:       `waiting` events after playback first started; waiting: their times
//   ended:        the video element ended
//   video_decoded_frames / video_dropped_frames: getVideoPlaybackQuality()
// t_wall is Unix time in milliseconds, so callers can line events up with what they did
// (killing an encoder, restarting the gateway) at the same moment.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';
const HERE = dirname(fileURLToPath(import.meta.url));
const HLS_JS = join(HERE, 'node_modules/hls.js/dist/hls.min.js');
const MAX_EVENTS = 1000;
const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>onair player</title></head>
<body><video id="v" muted autoplay playsinline width="640" height="360"></video></body></html>`;

function die(code, message) {
  process.stderr.write(`play.mjs: ${message}\n`);
  process.exit(code);
}

const args = process.argv.slice(2);
const recover = args.includes('--recover');
const positional = args.filter((a) => !a.startsWith('--'));
if (positional.length !== 2 || args.some((a) => a.startsWith('--') && a !== '--recover')) {
  die(2, 'usage: node play.mjs URL SECONDS [--recover]');
}
const [url, secondsText] = positional;
// The page comes from the stream's own origin (the request is intercepted, the server never
// sees it): Chromium's Local Network Access denies a page from any other origin, even
// localhost, requests to a loopback server without a permission prompt headless cannot answer.
let PAGE_URL;
try {
  PAGE_URL = new URL('/__onair_player__.html', url).href;
} catch {
  die(2, `not a URL: ${url}`);
}
const seconds = Number(secondsText);
if (!Number.isFinite(seconds) || seconds <= 0) die(2, `SECONDS must be a positive number, got ${secondsText}`);
if (!existsSync(CHROMIUM)) {
  die(3, `${CHROMIUM} not found: install it (apt-get install -y chromium) or run .ci/run`);
}
if (!existsSync(HLS_JS)) {
  die(3, `${HLS_JS} not found: run npm ci --prefix tests/player --no-audit --no-fund (or .ci/run)`);
}

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  die(3, `playwright-core is not installed (${e.message}): run npm ci --prefix tests/player --no-audit --no-fund`);
}

const userDataDir = mkdtempSync(join(tmpdir(), 'onair-player-'));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
} catch (e) {
  rmSync(userDataDir, { recursive: true, force: true });
  die(3, `could not start ${CHROMIUM}: ${e.message}`);
}

// Runs in the page: starts hls.js on the video element and records everything.
function startPlayer({ url, recover, maxEvents }) {
  const video = document.getElementById('v');
  const now = () => Date.now();
  const r = {
    environment: {
      browser: navigator.userAgent,
      hls_js: Hls.version,
      mse_supported: Hls.isSupported(),
      mse_h264_aac:
        typeof MediaSource !== 'undefined' &&
        MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f,mp4a.40.2"'),
    },
    fatal_errors: [],
    errors: [],
    error_count: 0,
    frags: [],
    playlists: [],
    samples: [],
    played_seconds: 0,
    stalls: 0,
    waiting: [],
    ended: false,
    video_decoded_frames: 0,
    video_dropped_frames: 0,
  };
  window.__report = r;
  const push = (list, item) => {
    if (list.length < maxEvents) list.push(item);
  };
  const errorText = (data) => {
    const e = data.error || data.err;
    if (e && e.message) return String(e.message);
    if (data.reason) return String(data.reason);
    if (data.response && data.response.code !== undefined) return `HTTP ${data.response.code}`;
    return '';
  };

  if (!Hls.isSupported()) {
    r.fatal_errors.push({ t_wall: now(), type: 'environment', details: 'hls.js is not supported (no MediaSource)', reason: '' });
    return;
  }
  const hls = new Hls();
  window.__hls = hls;
  hls.on(Hls.Events.ERROR, (_, data) => {
    r.error_count += 1;
    const item = { t_wall: now(), type: String(data.type), details: String(data.details), fatal: !!data.fatal, reason: errorText(data) };
    push(r.errors, item);
    if (!data.fatal) return;
    push(r.fatal_errors, { t_wall: item.t_wall, type: item.type, details: item.details, reason: item.reason });
    if (!recover) return;
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
    else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
  });
  const frag = (event) => (_, data) => {
    const f = data.frag;
    if (typeof f.sn !== 'number') return; // an fMP4 init segment ('initSegment'), not media
    push(r.frags, { t_wall: now(), event, sn: f.sn, cc: f.cc, start: f.start, duration: f.duration, level: f.level });
  };
  hls.on(Hls.Events.FRAG_LOADED, frag('loaded'));
  hls.on(Hls.Events.FRAG_CHANGED, frag('changed'));
  hls.on(Hls.Events.LEVEL_LOADED, (_, data) => {
    const d = data.details;
    push(r.playlists, {
      t_wall: now(),
      media_sequence: d.startSN,
      end_sn: d.endSN,
      end_cc: d.endCC,
      live: !!d.live,
      target_duration: d.targetduration,
      fragments: d.fragments.length,
    });
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    video.play().catch((e) => push(r.errors, { t_wall: now(), type: 'video', details: 'play() rejected', fatal: false, reason: String(e) }));
  });

  // Playback measured on the element: currentTime advance between timeupdates, not across
  // seeks (hls.js jumps to the live edge or over gaps; that is not playing).
  let playing = false;
  let last = null;
  video.addEventListener('playing', () => { playing = true; last = video.currentTime; });
  video.addEventListener('seeking', () => { last = null; });
  video.addEventListener('seeked', () => { last = video.currentTime; });
  video.addEventListener('timeupdate', () => {
    const t = video.currentTime;
    if (last !== null && !video.seeking && !video.paused && t > last) r.played_seconds += t - last;
    if (!video.seeking) last = t;
  });
  video.addEventListener('waiting', () => {
    if (!playing) return; // the initial wait for the first frames is not a stall
    r.stalls += 1;
    push(r.waiting, { t_wall: now(), current_time: video.currentTime });
  });
  video.addEventListener('ended', () => { r.ended = true; });
  video.addEventListener('error', () => {
    const e = video.error;
    push(r.errors, { t_wall: now(), type: 'video', details: `MediaError ${e ? e.code : '?'}`, fatal: false, reason: e ? String(e.message) : '' });
  });
  const sample = () => {
    push(r.samples, { t_wall: now(), current_time: video.currentTime, ready_state: video.readyState, paused: video.paused });
    const q = video.getVideoPlaybackQuality();
    r.video_decoded_frames = q.totalVideoFrames;
    r.video_dropped_frames = q.droppedVideoFrames;
    r.ended = r.ended || video.ended;
  };
  window.__sample = sample;
  setInterval(sample, 500);

  hls.loadSource(url);
  hls.attachMedia(video);
}

let report;
try {
  const page = await context.newPage();
  page.on('pageerror', (e) => process.stderr.write(`play.mjs: page error: ${e.message}\n`));
  page.on('console', (m) => {
    if (m.type() === 'error') process.stderr.write(`play.mjs: console: ${m.text()}\n`);
  });
  await page.route(PAGE_URL, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: PAGE }));
  await page.goto(PAGE_URL);
  await page.addScriptTag({ path: HLS_JS });
  await page.evaluate(startPlayer, { url, recover, maxEvents: MAX_EVENTS });
  const shots = process.env.SCREENSHOT_DIR;
  const every = Number(process.env.SCREENSHOT_EVERY_MS || 1000);
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    await page.waitForTimeout(Math.max(0, Math.min(shots ? every : Infinity, end - Date.now())));
    if (shots && Date.now() < end) {
      await page.locator('#v').screenshot({ path: join(shots, `${Date.now()}.png`) });
    }
  }
  report = await page.evaluate(() => {
    window.__sample();
    return window.__report;
  });
} catch (e) {
  process.stderr.write(`play.mjs: the browser failed: ${e.stack || e}\n`);
  await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(4);
}
await context.close().catch(() => {});
rmSync(userDataDir, { recursive: true, force: true });
process.stdout.write(JSON.stringify(report) + '\n');
