//! A real browser player for end-to-end tests: hls.js in headless Chromium, driven by
//! `tests/player/play.mjs` (playwright-core and hls.js pinned in its `package-lock.json`,
//! installed by `.ci/run`; the browser is the system `/usr/bin/chromium`).
//!
//! [`play_hls_js`] plays a URL for some seconds and returns what the viewer saw as an
//! [`HlsJsReport`]; [`spawn_hls_js`] does the same in the background, so that a test can kill
//! or restart an encoder (or the gateway) while the player is watching, then
//! [`PlayerHandle::wait`]. Missing node, Chromium or `node_modules` fail the test with the
//! command that installs them; nothing is skipped.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The browser `play.mjs` drives.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Seconds allowed beyond the playing time for starting and closing the browser.
const STARTUP_ALLOWANCE_SECS: u64 = 60;

/// What `play.mjs` reports (its header comment documents every field). `t_wall` fields are
/// Unix time in milliseconds.
#[derive(Debug, Clone, Deserialize)]
pub struct HlsJsReport {
    /// Browser and hls.js versions, and whether MSE takes H.264/AAC.
    pub environment: PlayerEnvironment,
    /// Every fatal hls.js error (recorded also with `--recover`).
    pub fatal_errors: Vec<FatalError>,
    /// hls.js errors, fatal or not, and `<video>` errors (the first 1000).
    pub errors: Vec<PlayerError>,
    /// Every hls.js error, including those beyond the first 1000.
    pub error_count: u64,
    /// FRAG_LOADED and FRAG_CHANGED of media segments, in order (the first 1000).
    pub frags: Vec<Frag>,
    /// LEVEL_LOADED: each media playlist hls.js loaded (the first 1000).
    pub playlists: Vec<PlaylistLoad>,
    /// The `<video>` element every 500 ms.
    pub samples: Vec<Sample>,
    /// Seconds of media played: `currentTime` advance while playing, seeks excluded.
    pub played_seconds: f64,
    /// `waiting` events after playback first started.
    pub stalls: u32,
    /// When they happened.
    pub waiting: Vec<Waiting>,
    /// The `<video>` element ended (an ended playlist played to its end).
    pub ended: bool,
    /// `getVideoPlaybackQuality().totalVideoFrames`.
    pub video_decoded_frames: u64,
    /// `getVideoPlaybackQuality().droppedVideoFrames`.
    pub video_dropped_frames: u64,
    /// What the player wrote to stderr (browser console errors, page errors).
    #[serde(skip)]
    pub player_log: String,
}

/// Where the report was made.
#[derive(Debug, Clone, Deserialize)]
pub struct PlayerEnvironment {
    /// The browser's user agent.
    pub browser: String,
    /// hls.js version.
    pub hls_js: String,
    /// `Hls.isSupported()`.
    pub mse_supported: bool,
    /// `MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f,mp4a.40.2"')`.
    pub mse_h264_aac: bool,
}

/// A fatal hls.js error.
#[derive(Debug, Clone, Deserialize)]
pub struct FatalError {
    /// Unix milliseconds.
    pub t_wall: f64,
    /// `networkError`, `mediaError`, `muxError`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// e.g. `manifestLoadError`, `bufferStalledError`.
    pub details: String,
    /// The error's message, or the HTTP status.
    pub reason: String,
}

/// Any hls.js or `<video>` error.
#[derive(Debug, Clone, Deserialize)]
pub struct PlayerError {
    /// Unix milliseconds.
    pub t_wall: f64,
    /// hls.js error type, or `video`.
    #[serde(rename = "type")]
    pub kind: String,
    /// hls.js error details.
    pub details: String,
    /// Whether hls.js called it fatal.
    pub fatal: bool,
    /// The error's message, or the HTTP status.
    pub reason: String,
}

/// A media segment hls.js loaded or started playing.
#[derive(Debug, Clone, Deserialize)]
pub struct Frag {
    /// Unix milliseconds.
    pub t_wall: f64,
    /// `loaded` (FRAG_LOADED) or `changed` (FRAG_CHANGED: playback entered it).
    pub event: String,
    /// Media sequence number.
    pub sn: u64,
    /// Discontinuity counter.
    pub cc: u64,
    /// Start on the playback timeline, seconds.
    pub start: f64,
    /// Duration, seconds.
    pub duration: f64,
    /// Variant index.
    pub level: u32,
}

/// A media playlist load (LEVEL_LOADED).
#[derive(Debug, Clone, Deserialize)]
pub struct PlaylistLoad {
    /// Unix milliseconds.
    pub t_wall: f64,
    /// `EXT-X-MEDIA-SEQUENCE` (hls.js `startSN`).
    pub media_sequence: u64,
    /// Sequence number of the last segment (`endSN`).
    pub end_sn: u64,
    /// Discontinuity counter of the last segment (`endCC`).
    pub end_cc: u64,
    /// No `EXT-X-ENDLIST`.
    pub live: bool,
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: f64,
    /// Segments in the playlist.
    pub fragments: u64,
}

/// The `<video>` element at one moment.
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    /// Unix milliseconds.
    pub t_wall: f64,
    /// `currentTime`.
    pub current_time: f64,
    /// `readyState` (4 = HAVE_ENOUGH_DATA).
    pub ready_state: u8,
    /// `paused`.
    pub paused: bool,
}

/// A `waiting` event (a stall).
#[derive(Debug, Clone, Deserialize)]
pub struct Waiting {
    /// Unix milliseconds.
    pub t_wall: f64,
    /// `currentTime` when it stalled.
    pub current_time: f64,
}

impl HlsJsReport {
    /// Sequence numbers of the loaded segments, in load order.
    pub fn loaded_sns(&self) -> Vec<u64> {
        self.frags
            .iter()
            .filter(|f| f.event == "loaded")
            .map(|f| f.sn)
            .collect()
    }

    /// Sequence numbers of the segments playback entered, in order.
    pub fn played_sns(&self) -> Vec<u64> {
        self.frags
            .iter()
            .filter(|f| f.event == "changed")
            .map(|f| f.sn)
            .collect()
    }

    /// A few lines for assertion messages (the whole report can be long).
    pub fn summary(&self) -> String {
        let last = self.samples.last();
        format!(
            "hls.js {} in {} (MSE H.264/AAC: {})\n\
             played {:.2} s, {} video frames decoded ({} dropped), {} stalls, ended: {}\n\
             fatal errors: {:?}\n\
             errors ({} in all, first 10): {:?}\n\
             loaded sn: {:?}\nplayed sn: {:?}\n\
             last playlist: {:?}\nlast sample: {:?}\nplayer log:\n{}",
            self.environment.hls_js,
            self.environment.browser,
            self.environment.mse_h264_aac,
            self.played_seconds,
            self.video_decoded_frames,
            self.video_dropped_frames,
            self.stalls,
            self.ended,
            self.fatal_errors,
            self.error_count,
            self.errors.iter().take(10).collect::<Vec<_>>(),
            self.loaded_sns(),
            self.played_sns(),
            self.playlists.last(),
            last,
            self.player_log,
        )
    }
}

/// `tests/player`, checked: node, Chromium and the pinned packages must be installed.
fn player_dir() -> PathBuf {
    let dir = crate::workspace_root().join("tests/player");
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is required by the hls.js player tests and was not found on PATH: \
         apt-get install -y nodejs npm (or run .ci/run)"
    );
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is required by the hls.js player tests: apt-get install -y chromium \
         (or run .ci/run)"
    );
    for package in ["hls.js", "playwright-core"] {
        assert!(
            dir.join("node_modules").join(package).exists(),
            "{package} is not installed in {}: npm ci --prefix tests/player --no-audit --no-fund \
             (or run .ci/run)",
            dir.display()
        );
    }
    dir
}

/// A player running in the background; [`PlayerHandle::wait`] for its report. Dropping it
/// kills the player (node and its browser).
#[derive(Debug)]
pub struct PlayerHandle {
    child: Child,
    url: String,
    deadline: Instant,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

/// Starts hls.js playing `url` for `seconds` in headless Chromium and returns at once.
/// `recover` does hls.js's standard recovery from fatal network and media errors (they are
/// still reported).
pub fn spawn_hls_js(url: &str, seconds: u32, recover: bool) -> PlayerHandle {
    spawn(url, seconds, recover, None)
}

/// Like [`spawn_hls_js`] (with recovery), also capturing the video element every `every` into
/// `shots/<unix ms>.png`, to look at what a viewer saw at a given moment.
pub fn spawn_hls_js_with_screenshots(
    url: &str,
    seconds: u32,
    shots: &Path,
    every: Duration,
) -> PlayerHandle {
    std::fs::create_dir_all(shots).unwrap();
    spawn(url, seconds, true, Some((shots, every)))
}

fn spawn(url: &str, seconds: u32, recover: bool, shots: Option<(&Path, Duration)>) -> PlayerHandle {
    let dir = player_dir();
    let mut command = Command::new("node");
    command
        .arg(dir.join("play.mjs"))
        .arg(url)
        .arg(seconds.to_string())
        .current_dir(&dir)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        // Its own process group, so a timeout or a failed test takes the browser down too.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if recover {
        command.arg("--recover");
    }
    if let Some((shots, every)) = shots {
        command
            .env("SCREENSHOT_DIR", shots)
            .env("SCREENSHOT_EVERY_MS", every.as_millis().to_string());
    }
    let mut child = command
        .spawn()
        .expect("could not run node tests/player/play.mjs");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    PlayerHandle {
        child,
        url: url.to_owned(),
        deadline: Instant::now() + Duration::from_secs(u64::from(seconds) + STARTUP_ALLOWANCE_SECS),
        stdout: Some(stdout),
        stderr: Some(stderr),
    }
}

impl PlayerHandle {
    fn kill_group(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the report; panics (with the player's stderr) if the player fails, prints
    /// no report, or runs past `seconds` + 60 s.
    pub fn wait(mut self) -> HlsJsReport {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= self.deadline {
                self.kill_group();
                let stderr = self.stderr.take().unwrap().join().unwrap();
                panic!(
                    "the hls.js player did not finish playing {} in time; killed. stderr:\n{}",
                    self.url,
                    String::from_utf8_lossy(&stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stdout = self.stdout.take().unwrap().join().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let stderr = String::from_utf8_lossy(&stderr);
        assert!(
            status.success(),
            "the hls.js player failed on {} ({status}):\n{stderr}",
            self.url
        );
        let mut report: HlsJsReport = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
            panic!(
                "the hls.js player printed no valid report ({e}):\n{}\nstderr:\n{stderr}",
                String::from_utf8_lossy(&stdout)
            )
        });
        report.player_log = stderr.into_owned();
        report
    }
}

impl Drop for PlayerHandle {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill_group();
        }
    }
}

/// Plays `url` with hls.js in headless Chromium for `seconds` and returns the report (see
/// [`spawn_hls_js`]).
pub fn play_hls_js(url: &str, seconds: u32, recover: bool) -> HlsJsReport {
    spawn_hls_js(url, seconds, recover).wait()
}
