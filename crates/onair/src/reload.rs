//! Reloading while the gateway runs (`SIGHUP`): the configuration file given at start
//! (`--config`) is read again and merged under the same flags and environment as at start,
//! then validated as a whole. If anything is wrong (unparseable TOML, a bad value, an
//! unreadable certificate or a key that does not match it) the reload is refused with one
//! log line and everything keeps running as it was.
//!
//! What a valid reload changes, without dropping anyone:
//! - the RTMPS certificate and key (read again from their files, even when the paths did not
//!   change: that is how a renewed certificate is picked up); new RTMPS connections get the
//!   new certificate, established ones keep their session;
//! - the webhook endpoints and environment (`[[webhooks]]`, `[environment]`): delivery stops
//!   and starts again with the new list; each endpoint's cursor is in the store, so nothing
//!   is lost (an attempt in flight may be sent twice: delivery is at least once anyway);
//! - the REST API's limits (`[api]`: body size, rate limits, failed logins), for the requests
//!   that come next (rate-limit buckets start full again);
//! - the RTMP/RTMPS listeners' limits (`[rtmp]`) and the pacing of publishers (`[ingest]`),
//!   for the connections accepted (SRT: the publishers admitted) from then on;
//! - the HTTP and metrics listeners' limits (`[http]`, but `send_buffer`), for the
//!   connections accepted from then on;
//! - the log filter (`[log] filter`), unless `RUST_LOG` is set (it wins, as at start);
//! - the drain deadline (`[drain]`).
//!
//! Everything else (listener addresses, data directory, `[hls]`, `[timestamps]`,
//! `[broadcasts]`, `[http] send_buffer`) is read by the listeners and
//! sessions when they start: a change is logged as needing a restart and not applied.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{FileConfig, ServeArgs, ServeSettings, TlsSource};

/// Where the settings come from: what `onair serve` was started with.
#[derive(Debug, Clone)]
pub struct ReloadSource {
    /// `--config` / `ONAIR_CONFIG`.
    pub config: Option<PathBuf>,
    /// The flags (and their environment variables), which win over the file as at start.
    pub args: ServeArgs,
    /// `--data-dir` / `ONAIR_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
}

impl ReloadSource {
    /// Reads and validates the settings.
    pub fn load(&self) -> Result<ServeSettings> {
        FileConfig::load(self.config.as_deref())?.serve(&self.args, self.data_dir.as_deref())
    }
}

/// Webhook delivery that can be restarted with other endpoints.
#[derive(Debug)]
pub struct Webhooks {
    pub store: store::SqliteStore,
    pub metrics: metrics::Metrics,
    pub wake: watch::Receiver<u64>,
    /// The gateway's shutdown: delivery stops with it.
    pub shutdown: CancellationToken,
    /// The gateway's tasks: shutdown waits for delivery's.
    pub tasks: TaskTracker,
    /// Stops the delivery running now; its tasks.
    running: Option<(CancellationToken, TaskTracker)>,
}

impl Webhooks {
    pub fn new(
        store: store::SqliteStore,
        metrics: metrics::Metrics,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Webhooks {
            wake: store.subscribe_events(),
            store,
            metrics,
            shutdown,
            tasks,
            running: None,
        }
    }

    /// Starts delivery to `config`'s endpoints, after stopping (and waiting for) the delivery
    /// that ran before, so that no endpoint ever has two workers.
    pub async fn start(&mut self, config: &events::WebhookConfig) -> Result<()> {
        if let Some((stop, tasks)) = self.running.take() {
            stop.cancel();
            tasks.wait().await;
        }
        let stop = self.shutdown.child_token();
        let tasks = TaskTracker::new();
        events::spawn_delivery(
            self.store.clone(),
            events::WebhookConfig {
                metrics: self.metrics.clone(),
                ..config.clone()
            },
            self.wake.clone(),
            stop.clone(),
            &tasks,
        )?;
        tasks.close();
        let waited = tasks.clone();
        self.tasks.spawn(async move { waited.wait().await });
        self.running = Some((stop, tasks));
        Ok(())
    }
}

/// Applies `SIGHUP`s: owns the running settings and the handles of what can change.
#[derive(Debug)]
pub struct Reloader {
    source: ReloadSource,
    current: ServeSettings,
    /// The RTMPS listener's certificate, when that listener runs.
    tls: Option<rtmp::RtmpsTls>,
    webhooks: Webhooks,
    /// The REST API, when the HTTP listener runs.
    api: Option<api::ApiState>,
    /// What the RTMP and RTMPS listeners read per connection.
    rtmp: Option<rtmp::SharedRtmpConfig>,
    /// The SRT listener's pacing, when it runs.
    srt_pacing: Option<session::Reloadable<session::PacingConfig>>,
    log: crate::serve::LogFilter,
    /// What the HTTP and metrics listeners read per connection.
    http: Option<session::Reloadable<crate::http_server::HttpLimits>>,
    /// The watched files as last seen ([`Reloader::files_changed`]).
    stamps: Option<Vec<FileStamp>>,
}

/// What tells that a file changed: `None` when it cannot be read (missing).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(Option<(u64, Option<SystemTime>, u64)>);

impl FileStamp {
    fn of(path: &std::path::Path) -> Self {
        FileStamp(std::fs::metadata(path).ok().map(|m| {
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let inode = 0;
            (m.len(), m.modified().ok(), inode)
        }))
    }
}

impl Reloader {
    pub fn new(
        source: ReloadSource,
        current: ServeSettings,
        tls: Option<rtmp::RtmpsTls>,
        webhooks: Webhooks,
        log: crate::serve::LogFilter,
    ) -> Self {
        Reloader {
            source,
            current,
            tls,
            webhooks,
            api: None,
            rtmp: None,
            srt_pacing: None,
            log,
            http: None,
            stamps: None,
        }
    }

    /// The limits the HTTP and metrics listeners read per connection.
    pub fn set_http(&mut self, http: session::Reloadable<crate::http_server::HttpLimits>) {
        self.http = Some(http);
    }

    /// The configuration the RTMP/RTMPS listeners and the SRT listener read per connection.
    pub fn set_ingest(
        &mut self,
        rtmp: rtmp::SharedRtmpConfig,
        srt_pacing: Option<session::Reloadable<session::PacingConfig>>,
    ) {
        self.rtmp = Some(rtmp);
        self.srt_pacing = srt_pacing;
    }

    /// The REST API whose limits a reload changes.
    pub fn set_api(&mut self, api: api::ApiState) {
        self.api = Some(api);
    }

    /// Starts webhook delivery with the settings of the start.
    pub async fn start_webhooks(&mut self) -> Result<()> {
        self.webhooks.start(&self.current.webhooks).await
    }

    /// Whether to reload when a watched file changes ([`Reloader::files_changed`]).
    pub fn watches_files(&self) -> bool {
        self.current.reload_on_change
    }

    /// Whether the configuration file or the certificate or key file (when RTMPS reads
    /// files) changed since the last call: size, modification time or inode (a file replaced
    /// by a rename). The first call only takes note.
    pub fn files_changed(&mut self) -> bool {
        let mut files: Vec<PathBuf> = self.source.config.iter().cloned().collect();
        if let (Some(_), Some(TlsSource::Files { cert, key })) = (&self.tls, &self.current.tls) {
            files.extend([cert.clone(), key.clone()]);
        }
        let stamps: Vec<FileStamp> = files.iter().map(|f| FileStamp::of(f)).collect();
        let changed = self.stamps.as_ref().is_some_and(|before| *before != stamps);
        self.stamps = Some(stamps);
        changed
    }

    /// See [`crate::config::DEFAULT_DRAIN_DEADLINE`].
    pub fn drain_deadline(&self) -> Duration {
        self.current.drain_deadline
    }

    /// Reads the configuration again and applies what can change (see the module's doc).
    /// Returns whether the new configuration was accepted.
    pub async fn reload(&mut self, why: &str) -> bool {
        let config = self
            .source
            .config
            .as_ref()
            .map_or_else(|| "no file".to_owned(), |p| p.display().to_string());
        info!(config, "{why}: reloading the configuration");
        let new = match self.source.load() {
            Ok(new) => new,
            Err(e) => {
                error!(
                    config,
                    "reload refused, the running configuration stays: {e:#}"
                );
                return false;
            }
        };
        // `load` validated everything but the certificate and key, which are only read now:
        // try them before applying anything, so that a bad pair leaves everything as it was.
        if let (Some(tls), Some(TlsSource::Files { cert, key })) = (&self.tls, &new.tls) {
            let before = tls.fingerprint();
            if let Err(e) = tls.reload_files(cert, key) {
                error!(
                    config,
                    cert = %cert.display(),
                    key = %key.display(),
                    "reload refused, the running configuration and certificate stay: {e}"
                );
                return false;
            }
            let after = tls.fingerprint();
            if after == before {
                info!(cert = %cert.display(), sha256 = after, "RTMPS certificate unchanged");
            } else {
                info!(cert = %cert.display(), sha256 = after, previous_sha256 = before, "RTMPS certificate replaced: new connections get it");
            }
        }
        let restart = self.needs_restart(&new);
        if !restart.is_empty() {
            warn!(
                changed = restart.join(", "),
                "changed in the configuration but only applied at the next restart"
            );
        }
        if webhooks_differ(&self.current.webhooks, &new.webhooks) {
            if let Err(e) = self.webhooks.start(&new.webhooks).await {
                error!("webhook delivery could not restart with the new endpoints: {e:#}");
            } else {
                info!(
                    endpoints = new.webhooks.endpoints.len(),
                    before = self.current.webhooks.endpoints.len(),
                    "webhook endpoints reloaded"
                );
            }
            self.current.webhooks = new.webhooks;
        }
        if new.log_filter != self.current.log_filter {
            let filter = new.log_filter.as_deref().unwrap_or("info");
            match self.log.set(filter) {
                Ok(()) => info!(filter, "log filter reloaded"),
                Err(why) => warn!(filter, "[log] filter not changed: {why}"),
            }
            self.current.log_filter = new.log_filter;
        }
        if new.api != self.current.api {
            if let Some(api) = &self.api {
                api.reconfigure(new.api.clone());
                info!(api = ?new.api, "[api] limits reloaded");
            }
            self.current.api = new.api;
        }
        if new.rtmp != self.current.rtmp {
            if let Some(rtmp) = &self.rtmp {
                rtmp.set(new.rtmp.clone());
            }
            info!(
                rtmp = ?new.rtmp,
                "[rtmp]/[ingest] reloaded: RTMP and RTMPS connections accepted from now on use them"
            );
            self.current.rtmp = new.rtmp;
        }
        if new.srt.pacing != self.current.srt.pacing {
            if let Some(pacing) = &self.srt_pacing {
                pacing.set(new.srt.pacing);
            }
            info!(pacing = ?new.srt.pacing, "[ingest] reloaded: SRT publishers admitted from now on are paced with it");
            self.current.srt = new.srt;
        }
        if new.http != self.current.http {
            // The send buffer is an option of the listening socket: it stays until a restart
            // (`needs_restart` says so).
            let applied = crate::http_server::HttpLimits {
                send_buffer: self.current.http.send_buffer,
                ..new.http
            };
            if applied != self.current.http {
                if let Some(http) = &self.http {
                    http.set(applied);
                }
                info!(http = ?applied, "[http] limits reloaded: connections accepted from now on use them");
                self.current.http = applied;
            }
        }
        if new.drain_deadline != self.current.drain_deadline {
            info!(
                deadline_secs = new.drain_deadline.as_secs_f64(),
                before_secs = self.current.drain_deadline.as_secs_f64(),
                "drain deadline reloaded"
            );
            self.current.drain_deadline = new.drain_deadline;
        }
        if self.tls.is_some() {
            self.current.tls = new.tls;
        }
        info!("configuration reloaded");
        true
    }

    /// The settings that differ from the running ones but are only read at start.
    fn needs_restart(&self, new: &ServeSettings) -> Vec<&'static str> {
        let old = &self.current;
        let tls_kind = |s: &ServeSettings| match &s.tls {
            None => 0,
            Some(TlsSource::Dev) => 1,
            Some(TlsSource::Files { .. }) => 2,
        };
        let mut changed = Vec::new();
        for (name, differs) in [
            ("[listeners] rtmp", old.rtmp_addr != new.rtmp_addr),
            ("[listeners] rtmps", old.rtmps_addr != new.rtmps_addr),
            ("[listeners] srt", old.srt_addr != new.srt_addr),
            ("[listeners] http", old.http_addr != new.http_addr),
            ("[listeners] metrics", old.metrics_addr != new.metrics_addr),
            ("data_dir", old.data_dir != new.data_dir),
            (
                "[reload] on_change",
                old.reload_on_change != new.reload_on_change,
            ),
            ("[log] format", old.log_format != new.log_format),
            // Turning RTMPS on or off, or from a development certificate to files.
            ("[tls] (RTMPS on or off)", tls_kind(old) != tls_kind(new)),
            (
                "[hls]/[timestamps]/[broadcasts]",
                format!("{:?}", old.pipeline) != format!("{:?}", new.pipeline),
            ),
            (
                "[http] send_buffer",
                old.http.send_buffer != new.http.send_buffer,
            ),
            ("[ingest] threads", old.ingest_threads != new.ingest_threads),
        ] {
            if differs {
                changed.push(name);
            }
        }
        changed
    }
}

/// Whether the endpoints (URL, secret, order) or the environment changed.
fn webhooks_differ(old: &events::WebhookConfig, new: &events::WebhookConfig) -> bool {
    let key = |c: &events::WebhookConfig| {
        c.endpoints
            .iter()
            .map(|e| (e.url().to_string(), e.secret().to_owned()))
            .collect::<Vec<_>>()
    };
    old.environment != new.environment || key(old) != key(new)
}
