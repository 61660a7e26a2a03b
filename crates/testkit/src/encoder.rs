//! A real encoder for end-to-end tests: ffmpeg publishing an encoder-made fixture over RTMP in
//! real time (`-re`, stream copy), as OBS would, and the signals a test needs to play a
//! dropped connection (`SIGKILL`) or a frozen encoder whose TCP connection stays open
//! (`SIGSTOP`, then `SIGCONT`).
//!
//! Dropping an [`Encoder`] kills ffmpeg (a stopped one too: `SIGKILL` needs no `SIGCONT`), so
//! a failed test leaves no encoder behind.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running ffmpeg publisher.
#[derive(Debug)]
pub struct Encoder {
    child: Child,
    url: String,
    stderr: Arc<Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl Encoder {
    /// ffmpeg pushing `input` (looped) to `url` in real time with stream copy, for `seconds`
    /// (`None`: until killed). `-v error`: its stderr holds only what went wrong.
    pub fn ffmpeg(input: &Path, url: &str, seconds: Option<u32>) -> Encoder {
        crate::require_tool("ffmpeg");
        let mut command = Command::new("ffmpeg");
        command
            .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(input);
        if let Some(seconds) = seconds {
            command.args(["-t", &seconds.to_string()]);
        }
        let mut child = command
            .args(["-c", "copy", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("could not run ffmpeg");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Encoder {
            child,
            url: url.to_owned(),
            stderr,
            status: None,
        }
    }

    /// The 720p30 H.264/AAC fixture (2 s GOP) pushed to `url`.
    pub fn ffmpeg_720p(url: &str, seconds: Option<u32>) -> Encoder {
        Encoder::ffmpeg(&crate::fixture("avc_aac_720p30.flv"), url, seconds)
    }

    /// ffmpeg's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where it publishes.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What ffmpeg wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("could not run kill");
        assert!(status.success(), "kill {signal} {} failed", self.child.id());
    }

    /// `SIGSTOP`: ffmpeg freezes; its TCP connection stays open and sends nothing.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// `SIGCONT` after [`Encoder::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// `SIGKILL` and reap: the connection drops without an RTMP goodbye (as a crashed
    /// encoder or a pulled cable after the kernel noticed).
    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    /// Waits up to `timeout` for ffmpeg to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        self.kill();
    }
}
