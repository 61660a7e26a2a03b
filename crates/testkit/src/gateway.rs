//! Runs the real `onair serve` binary for end-to-end tests: every listener on `127.0.0.1:0`,
//! a private data directory, the addresses read back from the startup lines, and SIGTERM on
//! drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// ID of the access token every test gateway is started with.
pub const TEST_TOKEN_ID: &str = "test-token";
/// Its secret.
pub const TEST_TOKEN_SECRET: &str = "test-secret-0123456789";

/// A live stream created through the CLI: what a test needs of it.
#[derive(Debug, Clone)]
pub struct CreatedStream {
    /// Its ID.
    pub id: String,
    /// Its stream key.
    pub key: String,
    /// Its first playback ID.
    pub playback_id: String,
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    binary: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// RTMP listener.
    pub rtmp: Option<SocketAddr>,
    /// RTMPS listener (with `--dev-tls`).
    pub rtmps: Option<SocketAddr>,
    /// The SRT listener (UDP).
    pub srt: Option<SocketAddr>,
    /// HTTP listener.
    pub http: Option<SocketAddr>,
    /// The metrics and health listener (`/metrics`, `/healthz`, `/readyz`).
    pub metrics: Option<SocketAddr>,
    /// Stdout lines after `ready`, as they come.
    pub stdout: mpsc::Receiver<String>,
    stderr_path: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

fn listening(line: &str, name: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix(name)?.strip_prefix(" listening on ")?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Gateway {
    /// Starts `binary serve` with a fresh data directory `target/test-output/NAME`, RTMP,
    /// RTMPS (dev certificate), HTTP and metrics on ephemeral loopback ports, plus `extra`
    /// arguments.
    pub fn start(binary: &Path, name: &str, extra: &[&str]) -> Gateway {
        let data_dir = crate::scratch_dir(name);
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        Gateway::start_in(binary, data_dir, extra, Vec::new())
    }

    /// [`Gateway::start`] with environment variables set for the server (over the default
    /// `RUST_LOG`; an empty `RUST_LOG` leaves the choice to the configuration file).
    pub fn start_with_env(
        binary: &Path,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        let data_dir = crate::scratch_dir(name);
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Gateway::start_in(binary, data_dir, extra, env)
    }

    fn start_in(
        binary: &Path,
        data_dir: PathBuf,
        extra: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Gateway {
        let stderr_path = data_dir.join("onair.log");
        // Appended to: a restarted gateway keeps the log of the run before it.
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .unwrap();
        let mut child = Command::new(binary)
            .arg("--data-dir")
            .arg(&data_dir)
            .args([
                "serve",
                "--rtmp-addr",
                "127.0.0.1:0",
                "--rtmps-addr",
                "127.0.0.1:0",
                "--dev-tls",
                "--srt-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--access-token",
                &format!("{TEST_TOKEN_ID}:{TEST_TOKEN_SECRET}"),
            ])
            .args(&extra)
            .env("RUST_LOG", "info,rtmp=debug,session=debug")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        let rx = crate::stdout_lines(&mut child);
        let mut gateway = Gateway {
            child,
            binary: binary.to_path_buf(),
            data_dir,
            rtmp: None,
            rtmps: None,
            srt: None,
            http: None,
            metrics: None,
            stdout: rx,
            stderr_path,
            extra,
            env,
        };
        loop {
            let line = match gateway.stdout.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => line,
                Err(_) => panic!("onair serve did not become ready:\n{}", gateway.log()),
            };
            gateway.rtmp = gateway.rtmp.or_else(|| listening(&line, "rtmp"));
            gateway.rtmps = gateway.rtmps.or_else(|| listening(&line, "rtmps"));
            gateway.srt = gateway.srt.or_else(|| listening(&line, "srt"));
            gateway.http = gateway.http.or_else(|| listening(&line, "http"));
            gateway.metrics = gateway.metrics.or_else(|| listening(&line, "metrics"));
            if line == "ready" {
                break;
            }
        }
        gateway
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The official CLI (`@mux/cli`, [`crate::mux_cli`]) against this gateway: its API URL,
    /// the test access token, and a home of its own under the data directory (where it keeps
    /// its configuration).
    pub fn mux_cli(&self, args: &[&str]) -> Command {
        let home = self.data_dir.join("mux-home");
        let mut command = Command::new(crate::mux_cli());
        command
            .args(args)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("MUX_BASE_URL", format!("http://{}", self.http.unwrap()))
            .env("MUX_TOKEN_ID", TEST_TOKEN_ID)
            .env("MUX_TOKEN_SECRET", TEST_TOKEN_SECRET);
        command
    }

    /// Runs `onair --data-dir DIR ARGS...` (the CLI, against this server's API and data
    /// directory, with the test access token) and returns its stdout parsed as JSON; panics
    /// with stderr if it fails.
    pub fn cli(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli_raw(args);
        assert!(
            out.status.success(),
            "onair {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `onair live-streams create ARGS...`: checks that the new stream is idle and returns
    /// its ID, key and first playback ID.
    pub fn create_stream(&self, args: &[&str]) -> CreatedStream {
        let mut command = vec!["live-streams", "create"];
        command.extend_from_slice(args);
        let v = self.cli(&command);
        assert_eq!(v["status"], "idle", "{v}");
        let text = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
        CreatedStream {
            id: text(&v["id"]),
            key: text(&v["stream_key"]),
            playback_id: text(&v["playback_ids"][0]["id"]),
        }
    }

    /// `METHOD /video/v1{path}` with the test access token and an optional JSON body: the
    /// status and the JSON answer (`Null` when the body is empty).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let r = crate::http::request(
            self.http.expect("the gateway serves HTTP"),
            method,
            &format!("/video/v1{path}"),
            Some((TEST_TOKEN_ID, TEST_TOKEN_SECRET)),
            body,
        )
        .unwrap();
        let v = if r.body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&r.body).unwrap()
        };
        (r.status, v)
    }

    /// The live stream's API `status` (`onair live-streams get ID`).
    pub fn status(&self, id: &str) -> String {
        self.cli(&["live-streams", "get", id])["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// One column (`event_type`, `id`, ...) of a live stream's event log, in order, read from
    /// the database with the sqlite3 shell (read-only; there is no events API yet).
    pub fn event_log(&self, live_stream_id: &str, column: &str) -> Vec<String> {
        assert!(
            column
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && live_stream_id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "event_log: unexpected column or id"
        );
        self.sql(&format!(
            "SELECT {column} FROM events WHERE live_stream_id = '{live_stream_id}' \
             ORDER BY stream_seq"
        ))
    }

    /// The rows of a read-only `query` on the database (sqlite3 shell, one line a row, columns
    /// separated by `|`).
    pub fn sql(&self, query: &str) -> Vec<String> {
        crate::require_tool("sqlite3");
        let out = Command::new("sqlite3")
            .arg("-readonly")
            .arg(self.data_dir.join("onair.db"))
            .arg(query)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sqlite3 could not run {query:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until live stream `id` has API status `status`; panics with the log's tail after
    /// `timeout`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let now = self.status(id);
            if now == status {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "live stream still {now}, not {status}, after {timeout:?}\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last `lines` lines of the server's log, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        format!(
            "--- onair log, last lines ---\n{}",
            all[all.len().saturating_sub(lines)..].join("\n")
        )
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status (Linux only)");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{}/status", self.pid()))
    }

    /// Runs the CLI and returns its raw output.
    pub fn cli_raw(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(&self.binary);
        command.arg("--data-dir").arg(&self.data_dir).args(args);
        if let Some(http) = self.http {
            command.env("ONAIR_API_URL", format!("http://{http}"));
        }
        command.env(
            "ONAIR_ACCESS_TOKEN",
            format!("{TEST_TOKEN_ID}:{TEST_TOKEN_SECRET}"),
        );
        command.output().unwrap()
    }

    /// Kills the server with SIGKILL (a crash: nothing is flushed or closed) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same data directory with the same arguments (new
    /// ephemeral ports), after [`Gateway::kill9`] or [`Gateway::stop`].
    pub fn restart(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_some(),
            "restart: the server is still running"
        );
        let next = Gateway::start_in(
            &self.binary,
            self.data_dir.clone(),
            self.extra.clone(),
            self.env.clone(),
        );
        // The old one has exited: dropping it only closes its pipes.
        drop(std::mem::replace(self, next));
    }

    /// Sends SIGTERM and waits for the exit status (panics after 20 s).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        match self.wait_exit(Duration::from_secs(20)) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                panic!(
                    "onair serve did not stop within 20 s of SIGTERM:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Sends the signal `name` (`HUP`, `USR1`, `TERM`, ...) to the server with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// The exit status, once the server has exited within `timeout` (`None`: still running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the server's log contains `needle` (panics with the log's tail after
    /// `timeout`).
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} not in the log after {timeout:?}\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
