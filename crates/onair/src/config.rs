//! Configuration: the TOML file (`config/onair.toml` documents every key), merged under the
//! command-line flags and `ONAIR_*` environment variables, validated once before anything binds.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hls::{LatencyMode, SegmenterConfig};
use media::timestamp::TimestampConfig;

use crate::http_server::HttpLimits;

/// Default RTMP listener.
pub const DEFAULT_RTMP_ADDR: &str = "0.0.0.0:5222";
/// Default RTMPS listener.
pub const DEFAULT_RTMPS_ADDR: &str = "0.0.0.0:443";
/// Default SRT listener.
pub const DEFAULT_SRT_ADDR: &str = srt::DEFAULT_SRT_ADDR;
/// Default HTTP listener (API and playback).
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";
/// Default metrics listener (`/metrics`, `/healthz`, `/readyz`): loopback only, since the
/// numbers name live streams and are nobody's business outside the host.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9090";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// How long a drain (`SIGUSR1`) waits for the running broadcasts to end before the gateway
/// stops anyway: long enough for most events, short enough that a deploy finishes.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(3600);

/// Segment target duration by latency mode (the seeds' `latency_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Latency {
    /// 4 s segments.
    Standard,
    /// 2 s segments.
    Reduced,
}

impl From<Latency> for LatencyMode {
    fn from(l: Latency) -> Self {
        match l {
            Latency::Standard => LatencyMode::Standard,
            Latency::Reduced => LatencyMode::Reduced,
        }
    }
}

/// The configuration file (`config/onair.toml` documents every key).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    data_dir: Option<PathBuf>,
    log: LogFileConfig,
    listeners: ListenersFileConfig,
    tls: TlsFileConfig,
    api: ApiFileConfig,
    hls: HlsFileConfig,
    timestamps: TimestampFileConfig,
    broadcasts: BroadcastsFileConfig,
    rtmp: RtmpFileConfig,
    ingest: IngestFileConfig,
    http: HttpFileConfig,
    /// `[[webhooks]]`: one table per endpoint.
    webhooks: Vec<WebhookFileConfig>,
    environment: EnvironmentFileConfig,
    drain: DrainFileConfig,
    reload: ReloadFileConfig,
}

/// `[reload]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ReloadFileConfig {
    on_change: bool,
}

/// `[drain]`: what `SIGUSR1` does.
#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DrainFileConfig {
    deadline_secs: f64,
}

impl Default for DrainFileConfig {
    fn default() -> Self {
        DrainFileConfig {
            deadline_secs: DEFAULT_DRAIN_DEADLINE.as_secs_f64(),
        }
    }
}

/// How log lines are written on standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (coloured only on a terminal, and not with `NO_COLOR`).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`),
    /// `span` (the innermost span's name and fields) and `spans` (every open span).
    Json,
}

/// `[log]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LogFileConfig {
    format: Option<LogFormat>,
    filter: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct WebhookFileConfig {
    url: Option<String>,
    secret: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct EnvironmentFileConfig {
    name: Option<String>,
    id: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BroadcastsFileConfig {
    stale_publisher_after_secs: f64,
    slate_after_stall_secs: f64,
}

impl Default for BroadcastsFileConfig {
    fn default() -> Self {
        BroadcastsFileConfig {
            stale_publisher_after_secs: session::manager::DEFAULT_STALE_PUBLISHER_AFTER
                .as_secs_f64(),
            slate_after_stall_secs: 0.0,
        }
    }
}

/// `[rtmp]`: limits of the RTMP and RTMPS listeners (each listener has its own).
#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RtmpFileConfig {
    max_connections: usize,
    max_unadmitted_per_address: usize,
    max_pending_bytes_before_publish: usize,
    max_unadmitted_bytes: usize,
}

impl Default for RtmpFileConfig {
    fn default() -> Self {
        let d = rtmp::RtmpConfig::default();
        RtmpFileConfig {
            max_connections: d.max_connections,
            max_unadmitted_per_address: d.max_unadmitted_per_address,
            max_pending_bytes_before_publish: d.max_pending_bytes_before_publish,
            max_unadmitted_bytes: d.max_unadmitted_bytes,
        }
    }
}

/// The most `[ingest] threads` accepted.
const MAX_INGEST_THREADS: usize = 256;

/// `[ingest]`: real-time pacing of every publisher (RTMP, RTMPS, SRT), and the threads of RTMP
/// ingest.
#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct IngestFileConfig {
    max_lead_secs: f64,
    max_bitrate: u64,
    burst_secs: f64,
    /// Single-threaded runtimes for RTMP/RTMPS connections; unset: one per CPU.
    threads: Option<usize>,
}

impl Default for IngestFileConfig {
    fn default() -> Self {
        let d = session::PacingConfig::default();
        IngestFileConfig {
            max_lead_secs: d.max_lead.as_secs_f64(),
            max_bitrate: d.max_bitrate,
            burst_secs: d.burst.as_secs_f64(),
            threads: None,
        }
    }
}

/// `[http]`: limits of the HTTP listener (API and playback).
#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HttpFileConfig {
    header_read_timeout_secs: f64,
    max_connections: usize,
    min_send_rate: u64,
    send_window_secs: u64,
    send_buffer: u32,
}

impl Default for HttpFileConfig {
    fn default() -> Self {
        let d = HttpLimits::default();
        HttpFileConfig {
            header_read_timeout_secs: d.header_read_timeout.as_secs_f64(),
            max_connections: d.max_connections,
            min_send_rate: d.min_send_rate,
            send_window_secs: d.send_window.as_secs(),
            send_buffer: d.send_buffer,
        }
    }
}

/// A number of seconds from the file, refused when negative or not finite.
fn seconds(name: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!("{name} ({value}) must be a number of seconds >= 0"))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ListenersFileConfig {
    rtmp: Option<String>,
    rtmps: Option<String>,
    srt: Option<String>,
    http: Option<String>,
    metrics: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ApiFileConfig {
    max_body_bytes: Option<usize>,
    post_requests_per_second: Option<f64>,
    post_burst: Option<u32>,
    other_requests_per_second: Option<f64>,
    other_burst: Option<u32>,
    limit_failed_logins: Option<bool>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TlsFileConfig {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    dev_tls: Option<bool>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HlsFileConfig {
    latency_mode: Latency,
    live_window: usize,
    segments_in_memory: Option<usize>,
    max_segment_duration_secs: u64,
}

impl Default for HlsFileConfig {
    fn default() -> Self {
        HlsFileConfig {
            latency_mode: Latency::Standard,
            live_window: hls::DEFAULT_WINDOW,
            segments_in_memory: None,
            max_segment_duration_secs: hls::segmenter::DEFAULT_MAX_SEGMENT_DURATION.as_secs(),
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TimestampFileConfig {
    max_forward_jump_ms: i64,
    max_backward_jump_ms: i64,
}

impl Default for TimestampFileConfig {
    fn default() -> Self {
        TimestampFileConfig {
            max_forward_jump_ms: media::timestamp::DEFAULT_MAX_FORWARD_JUMP_MS,
            max_backward_jump_ms: media::timestamp::DEFAULT_MAX_BACKWARD_JUMP_MS,
        }
    }
}

/// Validated settings of the media pipeline.
#[derive(Debug, Clone, Copy)]
pub struct PipelineSettings {
    pub segmenter: SegmenterConfig,
    pub window: usize,
    /// Newest segments of the window kept in memory (the rest are read from the recording).
    pub segments_in_memory: usize,
    pub timestamps: TimestampConfig,
    /// A publisher silent this long loses its broadcast to a new encoder with the same key.
    pub stale_publisher_after: Duration,
    /// Slate after a connected encoder's media stalls this long; `None`: two target durations.
    pub slate_after_stall: Option<Duration>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        FileConfig::parse(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    /// Parses the file's text. An error names the line and column and says what is wrong,
    /// but never quotes the line: toml's own message does, and the line may be a secret's
    /// (`secret = "…` unterminated, `secert = "…"` misspelt).
    fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim();
            match e.span() {
                Some(span) => {
                    let before = text.get(..span.start).unwrap_or(text);
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                    anyhow::anyhow!("line {line}, column {column}: {message}")
                }
                None => anyhow::anyhow!("{message}"),
            }
        })
    }

    /// `[timestamps]` (validated by [`FileConfig::pipeline`]).
    fn timestamps(&self) -> TimestampConfig {
        TimestampConfig {
            max_forward_jump_ms: self.timestamps.max_forward_jump_ms,
            max_backward_jump_ms: self.timestamps.max_backward_jump_ms,
        }
    }

    pub fn pipeline(&self, latency_flag: Option<Latency>) -> Result<PipelineSettings> {
        let mode = latency_flag.unwrap_or(self.hls.latency_mode);
        let mut segmenter = SegmenterConfig::for_latency(mode.into());
        if self.hls.live_window == 0 {
            bail!("[hls] live_window must be at least 1");
        }
        let segments_in_memory = self
            .hls
            .segments_in_memory
            .unwrap_or(self.hls.live_window - 1)
            .max(1);
        if segments_in_memory > self.hls.live_window {
            bail!(
                "[hls] segments_in_memory ({segments_in_memory}) must not exceed [hls] live_window ({})",
                self.hls.live_window
            );
        }
        segmenter.max_segment_duration = Duration::from_secs(self.hls.max_segment_duration_secs);
        if segmenter.max_segment_duration < segmenter.target_duration {
            bail!(
                "[hls] max_segment_duration_secs ({}) must not be below the target duration ({} s)",
                self.hls.max_segment_duration_secs,
                segmenter.target_duration.as_secs()
            );
        }
        let t = &self.timestamps;
        if t.max_forward_jump_ms < 1 || t.max_backward_jump_ms < 1 {
            bail!("[timestamps] max_forward_jump_ms and max_backward_jump_ms must be positive");
        }
        let stale = self.broadcasts.stale_publisher_after_secs;
        if !(0.5..=3600.0).contains(&stale) {
            bail!("[broadcasts] stale_publisher_after_secs ({stale}) must be between 0.5 and 3600");
        }
        let stall = self.broadcasts.slate_after_stall_secs;
        if !(stall == 0.0 || (0.5..=600.0).contains(&stall)) {
            bail!("[broadcasts] slate_after_stall_secs ({stall}) must be 0 (two target durations) or between 0.5 and 600");
        }
        Ok(PipelineSettings {
            stale_publisher_after: Duration::from_secs_f64(stale),
            slate_after_stall: (stall > 0.0).then(|| Duration::from_secs_f64(stall)),
            segmenter,
            window: self.hls.live_window,
            segments_in_memory,
            timestamps: self.timestamps(),
        })
    }
}

/// Flags of `onair serve` (each also an environment variable).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Log format on standard error: `text` for people, `json` (one object per line) for
    /// machines [config: `[log] format`; default: text].
    #[arg(long, value_enum, env = "ONAIR_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// RTMP listener address (`HOST:PORT`; a host name is resolved), or `off`
    /// [default: 0.0.0.0:5222].
    #[arg(long, env = "ONAIR_RTMP_ADDR")]
    pub rtmp_addr: Option<String>,
    /// RTMPS listener address, or `off` [default: 0.0.0.0:443; needs --tls-cert/--tls-key or --dev-tls].
    #[arg(long, env = "ONAIR_RTMPS_ADDR")]
    pub rtmps_addr: Option<String>,
    /// SRT listener address (UDP), or `off` [default: 0.0.0.0:6001].
    #[arg(long, env = "ONAIR_SRT_ADDR")]
    pub srt_addr: Option<String>,
    /// HTTP listener (API and HLS playback), or `off` [default: 0.0.0.0:8080].
    #[arg(long, env = "ONAIR_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Metrics and health listener (`/metrics`, `/healthz`, `/readyz`), or `off`
    /// [default: 127.0.0.1:9090].
    #[arg(long, env = "ONAIR_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// PEM certificate chain for RTMPS.
    #[arg(long, env = "ONAIR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for RTMPS.
    #[arg(long, env = "ONAIR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve RTMPS with a generated self-signed certificate (development only).
    #[arg(long, env = "ONAIR_DEV_TLS")]
    pub dev_tls: bool,
    /// Make sure this access token (`ID:SECRET`) exists with read and write permission.
    #[arg(long, env = "ONAIR_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<String>,
    /// POST every event (signed) to this URL, in addition to the config file's [[webhooks]];
    /// needs --webhook-secret.
    #[arg(long, env = "ONAIR_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// The secret --webhook-url's deliveries are signed with (`mux-signature`).
    #[arg(long, env = "ONAIR_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// After SIGUSR1 (drain: no new broadcasts), stop when the last broadcast ends or after
    /// this many seconds, whichever comes first [config: `[drain] deadline_secs`; default: 3600].
    #[arg(long, env = "ONAIR_DRAIN_DEADLINE_SECS")]
    pub drain_deadline_secs: Option<f64>,
    /// Reload (as on SIGHUP) when the configuration file or the certificate or key file
    /// changes, checked every 2 s [config: `[reload] on_change`; default: off].
    #[arg(long, env = "ONAIR_RELOAD_ON_CHANGE")]
    pub reload_on_change: bool,
    /// The ids of the arguments above whose value came from their environment variable
    /// rather than a flag (filled in from clap's matches), so that an error names the
    /// variable the operator actually set.
    #[arg(skip)]
    pub from_env: Vec<String>,
}

/// Where RTMPS gets its certificate.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// Certificate and key files.
    Files { cert: PathBuf, key: PathBuf },
    /// A generated self-signed certificate.
    Dev,
}

/// Validated settings of `onair serve`.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub data_dir: PathBuf,
    pub rtmp_addr: Option<ListenAddr>,
    pub rtmps_addr: Option<ListenAddr>,
    pub srt_addr: Option<ListenAddr>,
    pub http_addr: Option<ListenAddr>,
    pub metrics_addr: Option<ListenAddr>,
    pub tls: Option<TlsSource>,
    pub access_token: Option<(String, String)>,
    pub pipeline: PipelineSettings,
    pub api: api::ApiConfig,
    pub webhooks: events::WebhookConfig,
    pub rtmp: rtmp::RtmpConfig,
    pub srt: srt::SrtConfig,
    pub http: HttpLimits,
    /// See [`DEFAULT_DRAIN_DEADLINE`].
    pub drain_deadline: Duration,
    /// `--log-format`, else `[log] format` (read at start only).
    pub log_format: LogFormat,
    /// `[log] filter`, validated (`RUST_LOG` wins over it).
    pub log_filter: Option<String>,
    /// Reload when a watched file changes (`--reload-on-change`, `[reload] on_change`).
    pub reload_on_change: bool,
    /// `[ingest] threads`: the single-threaded runtimes RTMP and RTMPS connections run on (0:
    /// the shared runtime). Read at start only.
    pub ingest_threads: usize,
}

/// A listener's address, resolved, and the setting it came from (for a bind error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub addr: SocketAddr,
    /// How to name the setting: the flag, the variable or the TOML key that gave the value,
    /// or all three for the default (so the operator knows what to change).
    pub setting: String,
}

/// Where a value came from: a flag, its environment variable, the file or the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Flag,
    Env,
    File,
    Default,
}

/// One setting's three names: `--rtmp-addr`, `ONAIR_RTMP_ADDR`, `[listeners] rtmp`.
struct SettingNames<'a> {
    flag: &'a str,
    env: &'a str,
    toml: &'a str,
}

impl SettingNames<'_> {
    /// The name of the setting as the operator gave it (all three for the default).
    fn name(&self, origin: Origin) -> String {
        match origin {
            Origin::Flag => self.flag.to_owned(),
            Origin::Env => self.env.to_owned(),
            Origin::File => self.toml.to_owned(),
            Origin::Default => format!(
                "the default; set {}, {} or {}",
                self.flag, self.env, self.toml
            ),
        }
    }
}

impl ServeArgs {
    /// Where the value of argument `id` (a field name) came from, given that it is set.
    fn origin(&self, id: &str) -> Origin {
        if self.from_env.iter().any(|e| e == id) {
            Origin::Env
        } else {
            Origin::Flag
        }
    }

    /// The value of a setting and its origin: the flag (or its variable), else the file.
    fn pick<'a>(
        &self,
        id: &str,
        arg: Option<&'a str>,
        file: Option<&'a str>,
    ) -> Option<(&'a str, Origin)> {
        arg.map(|v| (v, self.origin(id)))
            .or(file.map(|v| (v, Origin::File)))
    }
}

/// A listener setting (`HOST:PORT` or `off`): `None` when off, else the first address the
/// host resolves to. An error names the flag, variable or TOML key the value came from.
fn listener(
    name: &str,
    args: &ServeArgs,
    arg: Option<&str>,
    file: Option<&str>,
    default: &str,
) -> Result<Option<ListenAddr>> {
    let flag = format!("--{name}-addr");
    let env = format!("ONAIR_{}_ADDR", name.to_ascii_uppercase());
    let toml = format!("[listeners] {name}");
    let names = SettingNames {
        flag: &flag,
        env: &env,
        toml: &toml,
    };
    let (value, origin) = args
        .pick(&format!("{name}_addr"), arg, file)
        .unwrap_or((default, Origin::Default));
    let value = value.trim();
    if value.is_empty()
        || value.eq_ignore_ascii_case("off")
        || value.eq_ignore_ascii_case("disabled")
    {
        return Ok(None);
    }
    let setting = names.name(origin);
    let addr = resolve(value).with_context(|| {
        format!(
            "{setting}: {value:?} is not an address like 0.0.0.0:5222 or localhost:5222 (or `off`)"
        )
    })?;
    Ok(Some(ListenAddr { addr, setting }))
}

/// `HOST:PORT` (an IP address or a host name, `[::1]:PORT` for IPv6) as the first socket
/// address it resolves to.
fn resolve(value: &str) -> Result<SocketAddr> {
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    if !value.contains(':') {
        bail!("no port");
    }
    let mut addrs = value
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    addrs
        .next()
        .with_context(|| format!("{value} resolves to no address"))
}

impl FileConfig {
    /// The webhook endpoints of the file and of `--webhook-url`/`--webhook-secret`, validated.
    fn webhooks(&self, args: &ServeArgs) -> Result<events::WebhookConfig> {
        let mut endpoints: Vec<events::WebhookEndpoint> = Vec::new();
        let mut add = |endpoint: events::WebhookEndpoint, origin: &str| -> Result<()> {
            if endpoints.iter().any(|e| e.url() == endpoint.url()) {
                bail!(
                    "{origin}: webhook {} is configured twice",
                    endpoint.display_url()
                );
            }
            endpoints.push(endpoint);
            Ok(())
        };
        for (i, w) in self.webhooks.iter().enumerate() {
            let origin = format!("[[webhooks]] #{}", i + 1);
            let Some(url) = w.url.as_deref() else {
                bail!("{origin}: `url` is missing");
            };
            let endpoint = events::WebhookEndpoint::new(url, w.secret.as_deref().unwrap_or(""))
                .with_context(|| origin.clone())?;
            add(endpoint, &origin)?;
        }
        match (args.webhook_url.as_deref(), args.webhook_secret.as_deref()) {
            (None, None) => {}
            (None, Some(_)) => bail!("--webhook-secret / ONAIR_WEBHOOK_SECRET is given without --webhook-url / ONAIR_WEBHOOK_URL"),
            (Some(_), None) => bail!("--webhook-url / ONAIR_WEBHOOK_URL needs --webhook-secret / ONAIR_WEBHOOK_SECRET: every webhook is signed"),
            (Some(url), Some(secret)) => {
                let endpoint = events::WebhookEndpoint::new(url, secret)
                    .context("--webhook-url / ONAIR_WEBHOOK_URL")?;
                add(endpoint, "--webhook-url")?;
            }
        }
        let defaults = events::Environment::default();
        let environment = events::Environment {
            name: self.environment.name.clone().unwrap_or(defaults.name),
            id: self.environment.id.clone().unwrap_or(defaults.id),
        };
        environment.validate().context("invalid [environment]")?;
        Ok(events::WebhookConfig {
            endpoints,
            environment,
            ..events::WebhookConfig::default()
        })
    }

    fn api(&self) -> Result<api::ApiConfig> {
        let mut config = api::ApiConfig::default();
        let a = &self.api;
        if let Some(bytes) = a.max_body_bytes {
            config.max_body_bytes = bytes;
        }
        if let Some(limit) = a.limit_failed_logins {
            config.limit_failed_logins = limit;
        }
        let merge = |limit: Option<api::RateLimit>,
                     rate: Option<f64>,
                     burst: Option<u32>|
         -> Option<api::RateLimit> {
            match (limit, rate) {
                (_, Some(r)) if r <= 0.0 => None,
                (Some(mut l), r) => {
                    if let Some(r) = r {
                        l.per_second = r;
                    }
                    if let Some(b) = burst {
                        l.burst = b;
                    }
                    Some(l)
                }
                (None, r) => r.map(|per_second| api::RateLimit {
                    per_second,
                    burst: burst.unwrap_or(1),
                }),
            }
        };
        config.post_rate_limit = merge(
            config.post_rate_limit,
            a.post_requests_per_second,
            a.post_burst,
        );
        config.other_rate_limit = merge(
            config.other_rate_limit,
            a.other_requests_per_second,
            a.other_burst,
        );
        config.validate().context("invalid [api] configuration")?;
        Ok(config)
    }

    /// Pacing of publishers (`[ingest]`).
    fn pacing(&self) -> Result<session::PacingConfig> {
        let i = &self.ingest;
        let pacing = session::PacingConfig {
            max_lead: seconds("[ingest] max_lead_secs", i.max_lead_secs)?,
            max_bitrate: i.max_bitrate,
            burst: seconds("[ingest] burst_secs", i.burst_secs)?,
        };
        pacing
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid [ingest]: {e}"))?;
        Ok(pacing)
    }

    /// `[ingest] threads`, by default one per CPU the process may use.
    fn ingest_threads(&self) -> Result<usize> {
        match self.ingest.threads {
            Some(n) if n > MAX_INGEST_THREADS => anyhow::bail!(
                "invalid [ingest] threads: {n} (at most {MAX_INGEST_THREADS}; 0 runs ingest on the shared runtime)"
            ),
            Some(n) => Ok(n),
            None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        }
    }

    /// The RTMP/RTMPS listeners' configuration (`[rtmp]`, `[ingest]`).
    fn rtmp(&self) -> Result<rtmp::RtmpConfig> {
        let r = &self.rtmp;
        let config = rtmp::RtmpConfig {
            max_connections: r.max_connections,
            max_unadmitted_per_address: r.max_unadmitted_per_address,
            max_pending_bytes_before_publish: r.max_pending_bytes_before_publish,
            max_unadmitted_bytes: r.max_unadmitted_bytes,
            pacing: self.pacing()?,
            timestamps: self.timestamps(),
            ..rtmp::RtmpConfig::default()
        };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid [rtmp]: {e}"))?;
        Ok(config)
    }

    /// The HTTP listener's limits (`[http]`).
    fn http(&self) -> Result<HttpLimits> {
        let h = &self.http;
        let limits = HttpLimits {
            header_read_timeout: seconds(
                "[http] header_read_timeout_secs",
                h.header_read_timeout_secs,
            )?,
            max_connections: h.max_connections,
            min_send_rate: h.min_send_rate,
            send_window: Duration::from_secs(h.send_window_secs),
            send_buffer: h.send_buffer,
        };
        limits
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid [http]: {e}"))?;
        Ok(limits)
    }

    /// `--drain-deadline-secs` (or its variable), else `[drain] deadline_secs`; an error
    /// names the one given.
    fn drain_deadline(&self, args: &ServeArgs) -> Result<Duration> {
        let (value, setting) = match args.drain_deadline_secs {
            Some(value) => {
                let setting = match args.origin("drain_deadline_secs") {
                    Origin::Env => "ONAIR_DRAIN_DEADLINE_SECS",
                    _ => "--drain-deadline-secs",
                };
                (value, setting)
            }
            None => (self.drain.deadline_secs, "[drain] deadline_secs"),
        };
        seconds(setting, value)
    }

    /// `[log] filter` as written (validated by [`FileConfig::serve`]).
    pub fn log_filter(&self) -> Option<&str> {
        self.log.filter.as_deref()
    }

    /// `[log] filter`, checked: a plain filter (`info`, `info,rtmp=debug`), the kind SIGHUP
    /// can change.
    fn checked_log_filter(&self) -> Result<Option<String>> {
        let Some(filter) = &self.log.filter else {
            return Ok(None);
        };
        filter
            .parse::<tracing_subscriber::filter::Targets>()
            .map_err(|e| {
                anyhow::anyhow!(
                    "[log] filter ({filter:?}) must be like \"info\" or \"info,rtmp=debug\": {e}"
                )
            })?;
        Ok(Some(filter.trim().to_owned()))
    }

    /// The name of `[tls] cert` or `key` as the operator gave it.
    fn tls_setting(&self, args: &ServeArgs, key: &str) -> String {
        let flag = format!("--tls-{key}");
        let env = format!("ONAIR_TLS_{}", key.to_ascii_uppercase());
        let toml = format!("[tls] {key}");
        let id = format!("tls_{key}");
        let given = if key == "cert" {
            args.tls_cert.is_some()
        } else {
            args.tls_key.is_some()
        };
        let origin = if given {
            args.origin(&id)
        } else {
            Origin::File
        };
        SettingNames {
            flag: &flag,
            env: &env,
            toml: &toml,
        }
        .name(origin)
    }

    /// The log format: flag (or `ONAIR_LOG_FORMAT`), else `[log] format`, else text.
    pub fn log_format(&self, flag: Option<LogFormat>) -> LogFormat {
        flag.or(self.log.format).unwrap_or_default()
    }

    /// The data directory: flag, else file, else `./data`.
    pub fn data_dir(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// Merges flags over the file and validates everything `serve` needs.
    pub fn serve(&self, args: &ServeArgs, data_dir_flag: Option<&Path>) -> Result<ServeSettings> {
        let l = &self.listeners;
        let rtmp_addr = listener(
            "rtmp",
            args,
            args.rtmp_addr.as_deref(),
            l.rtmp.as_deref(),
            DEFAULT_RTMP_ADDR,
        )?;
        let mut rtmps_addr = listener(
            "rtmps",
            args,
            args.rtmps_addr.as_deref(),
            l.rtmps.as_deref(),
            DEFAULT_RTMPS_ADDR,
        )?;
        let srt_addr = listener(
            "srt",
            args,
            args.srt_addr.as_deref(),
            l.srt.as_deref(),
            DEFAULT_SRT_ADDR,
        )?;
        let http_addr = listener(
            "http",
            args,
            args.http_addr.as_deref(),
            l.http.as_deref(),
            DEFAULT_HTTP_ADDR,
        )?;
        let metrics_addr = listener(
            "metrics",
            args,
            args.metrics_addr.as_deref(),
            l.metrics.as_deref(),
            DEFAULT_METRICS_ADDR,
        )?;
        let cert = args.tls_cert.clone().or_else(|| self.tls.cert.clone());
        let key = args.tls_key.clone().or_else(|| self.tls.key.clone());
        let dev = args.dev_tls || self.tls.dev_tls.unwrap_or(false);
        let tls = match (cert, key, dev) {
            (Some(cert), Some(key), _) => Some(TlsSource::Files { cert, key }),
            (Some(_), None, _) => bail!(
                "{} is given without a key: --tls-cert and --tls-key ([tls] cert and key) go together",
                self.tls_setting(args, "cert")
            ),
            (None, Some(_), _) => bail!(
                "{} is given without a certificate: --tls-cert and --tls-key ([tls] cert and key) go together",
                self.tls_setting(args, "key")
            ),
            (None, None, true) => Some(TlsSource::Dev),
            (None, None, false) => None,
        };
        if tls.is_none() && rtmps_addr.is_some() {
            // Not an error: RTMPS is simply off until a certificate is configured.
            tracing::warn!(
                "RTMPS is off: give --tls-cert and --tls-key (or --dev-tls) to enable it"
            );
            rtmps_addr = None;
        }
        let access_token = match &args.access_token {
            None => None,
            Some(value) => {
                let setting = match args.origin("access_token") {
                    Origin::Env => "ONAIR_ACCESS_TOKEN",
                    _ => "--access-token",
                };
                let Some((id, secret)) = value.split_once(':') else {
                    bail!("{setting} must be ID:SECRET");
                };
                if id.is_empty() || secret.len() < 16 {
                    bail!("{setting}: the ID must not be empty and the secret must have at least 16 characters");
                }
                Some((id.to_owned(), secret.to_owned()))
            }
        };
        Ok(ServeSettings {
            data_dir: self.data_dir(data_dir_flag),
            rtmp_addr,
            rtmps_addr,
            srt_addr,
            http_addr,
            metrics_addr,
            tls,
            access_token,
            pipeline: self.pipeline(None)?,
            api: self.api()?,
            webhooks: self.webhooks(args)?,
            rtmp: self.rtmp()?,
            srt: srt::SrtConfig {
                pacing: self.pacing()?,
                ..srt::SrtConfig::default()
            },
            http: self.http()?,
            drain_deadline: self.drain_deadline(args)?,
            ingest_threads: self.ingest_threads()?,
            log_format: self.log_format(args.log_format),
            log_filter: self.checked_log_filter()?,
            reload_on_change: args.reload_on_change || self.reload.on_change,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `serve` gives for this file and these flags, with its causes.
    fn serve_error(toml_text: &str, args: &ServeArgs) -> String {
        let file = FileConfig::parse(toml_text).unwrap();
        format!("{:#}", file.serve(args, None).unwrap_err())
    }

    fn webhooks(
        toml_text: &str,
        url: Option<&str>,
        secret: Option<&str>,
    ) -> Result<events::WebhookConfig> {
        let file: FileConfig = toml::from_str(toml_text)?;
        let args = ServeArgs {
            webhook_url: url.map(str::to_owned),
            webhook_secret: secret.map(str::to_owned),
            ..ServeArgs::default()
        };
        file.webhooks(&args)
    }

    fn error(toml_text: &str, url: Option<&str>, secret: Option<&str>) -> String {
        format!("{:#}", webhooks(toml_text, url, secret).unwrap_err())
    }

    #[test]
    fn webhooks_from_file_and_flags() {
        let config = webhooks(
            r#"
            [[webhooks]]
            url = "https://a.example/hook"
            secret = "s1"
            [[webhooks]]
            url = "http://127.0.0.1:9000/h"
            secret = "s2"
            [environment]
            name = "staging"
            id = "env1"
            "#,
            Some("http://127.0.0.1:1/flag"),
            Some("s3"),
        )
        .unwrap();
        let urls: Vec<&str> = config.endpoints.iter().map(|e| e.url().as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://a.example/hook",
                "http://127.0.0.1:9000/h",
                "http://127.0.0.1:1/flag"
            ]
        );
        assert_eq!(config.endpoints[2].secret(), "s3");
        assert_eq!(config.environment.name, "staging");
        assert_eq!(config.environment.id, "env1");

        let none = webhooks("", None, None).unwrap();
        assert!(none.endpoints.is_empty());
        assert_eq!(none.environment, events::Environment::default());
    }

    #[test]
    fn webhook_mistakes_are_clear_errors_without_the_secret() {
        let e = error("", Some("http://127.0.0.1:1/h"), None);
        assert!(e.contains("needs --webhook-secret"), "{e}");
        let e = error("", None, Some("TOPSECRET"));
        assert!(
            e.contains("without --webhook-url") && !e.contains("TOPSECRET"),
            "{e}"
        );
        let e = error("", Some("not a url"), Some("TOPSECRET"));
        assert!(
            e.contains("invalid webhook URL") && !e.contains("TOPSECRET"),
            "{e}"
        );
        let e = error("[[webhooks]]\nurl = \"https://a.example/\"\n", None, None);
        assert!(
            e.contains("[[webhooks]] #1") && e.contains("no secret"),
            "{e}"
        );
        let e = error("[[webhooks]]\nsecret = \"x\"\n", None, None);
        assert!(e.contains("`url` is missing"), "{e}");
        let e = error(
            "[[webhooks]]\nurl = \"http://h/\"\nsecret = \"a\"\n",
            Some("http://h/"),
            Some("b"),
        );
        assert!(e.contains("configured twice"), "{e}");
        let e = error("[environment]\nname = \"\"\n", None, None);
        assert!(e.contains("[environment]"), "{e}");
        assert!(toml::from_str::<FileConfig>(
            "[[webhooks]]\nurl = \"http://h/\"\nsecert = \"a\"\n"
        )
        .is_err());
    }

    #[test]
    fn file_errors_never_quote_a_secret() {
        for (text, at, what) in [
            // Misspelt key: toml quotes the whole line.
            (
                "[[webhooks]]\nurl = \"http://h/\"\nsecert = \"TOPSECRET\"\n",
                "line 3, column 1",
                "unknown field `secert`",
            ),
            // Unterminated string.
            (
                "[[webhooks]]\nurl = \"http://h/\"\nsecret = \"TOPSECRET\n",
                "line 3, column 20",
                "invalid basic string",
            ),
            (
                "[[webhooks]]\nurl = \"http://h/\"\nsecret = [\"TOPSECRET\"]\n",
                "line 3, column 10",
                "invalid type",
            ),
        ] {
            let e = format!("{:#}", FileConfig::parse(text).unwrap_err());
            assert!(!e.contains("TOPSECRET"), "{e}");
            assert!(e.contains(at) && e.contains(what), "{e}");
        }
        assert!(FileConfig::parse("[hls]\nlive_window = 4\n").is_ok());
    }

    #[test]
    fn metrics_listener_from_flag_file_and_default() {
        let addr = |file: &str, flag: Option<&str>| {
            let args = ServeArgs {
                metrics_addr: flag.map(str::to_owned),
                ..ServeArgs::default()
            };
            FileConfig::parse(file)
                .unwrap()
                .serve(&args, None)
                .map(|s| s.metrics_addr.map(|l| l.addr))
        };
        let loopback: SocketAddr = DEFAULT_METRICS_ADDR.parse().unwrap();
        assert!(loopback.ip().is_loopback());
        assert_eq!(addr("", None).unwrap(), Some(loopback));
        assert_eq!(
            addr("[listeners]\nmetrics = \"off\"\n", None).unwrap(),
            None
        );
        assert_eq!(
            addr("[listeners]\nmetrics = \"off\"\n", Some("127.0.0.1:9191")).unwrap(),
            Some("127.0.0.1:9191".parse().unwrap())
        );
        let e = format!("{:#}", addr("", Some("nine")).unwrap_err());
        assert!(e.contains("--metrics-addr"), "{e}");
        // The shipped file documents the default.
        let shipped = FileConfig::parse(include_str!("../../../config/onair.toml")).unwrap();
        assert_eq!(
            shipped.listeners.metrics.as_deref(),
            Some(DEFAULT_METRICS_ADDR)
        );
    }

    #[test]
    fn drain_deadline_from_flag_file_and_default() {
        let deadline = |file: &str, flag: Option<f64>| {
            let args = ServeArgs {
                drain_deadline_secs: flag,
                ..ServeArgs::default()
            };
            FileConfig::parse(file)
                .unwrap()
                .serve(&args, None)
                .map(|s| s.drain_deadline)
        };
        assert_eq!(deadline("", None).unwrap(), DEFAULT_DRAIN_DEADLINE);
        let file = "[drain]\ndeadline_secs = 90.5\n";
        assert_eq!(deadline(file, None).unwrap(), Duration::from_millis(90_500));
        assert_eq!(deadline(file, Some(5.0)).unwrap(), Duration::from_secs(5));
        let e = format!(
            "{:#}",
            deadline("[drain]\ndeadline_secs = -1\n", None).unwrap_err()
        );
        assert!(e.starts_with("[drain] deadline_secs (-1)"), "{e}");
        let from_env = ServeArgs {
            drain_deadline_secs: Some(-2.0),
            from_env: vec!["drain_deadline_secs".to_owned()],
            ..ServeArgs::default()
        };
        let e = serve_error("", &from_env);
        assert!(e.starts_with("ONAIR_DRAIN_DEADLINE_SECS (-2)"), "{e}");
        let e = format!("{:#}", deadline("", Some(f64::NAN)).unwrap_err());
        assert!(e.starts_with("--drain-deadline-secs (NaN)"), "{e}");
        let shipped = FileConfig::parse(include_str!("../../../config/onair.toml")).unwrap();
        assert_eq!(
            shipped.drain.deadline_secs,
            DEFAULT_DRAIN_DEADLINE.as_secs_f64()
        );
    }

    #[test]
    fn hostile_peer_limits_from_the_file() {
        let file = FileConfig::parse(
            "[rtmp]\nmax_unadmitted_per_address = 4\nmax_pending_bytes_before_publish = 8192\n\
             [ingest]\nmax_lead_secs = 3.5\nmax_bitrate = 0\n\
             [http]\nheader_read_timeout_secs = 2.5\nmax_connections = 10\n",
        )
        .unwrap();
        let rtmp = file.rtmp().unwrap();
        assert_eq!(rtmp.max_unadmitted_per_address, 4);
        assert_eq!(rtmp.max_pending_bytes_before_publish, 8192);
        assert_eq!(rtmp.pacing.max_lead, Duration::from_millis(3500));
        assert_eq!(rtmp.pacing.max_bitrate, 0);
        // RTMP ingest uses `[timestamps]` like SRT does.
        let jumps = FileConfig::parse("[timestamps]\nmax_forward_jump_ms = 500\n").unwrap();
        assert_eq!(jumps.rtmp().unwrap().timestamps.max_forward_jump_ms, 500);
        let http = file.http().unwrap();
        assert_eq!(http.header_read_timeout, Duration::from_millis(2500));
        assert_eq!(http.max_connections, 10);
        assert_eq!(http.send_buffer, HttpLimits::default().send_buffer);
        // The defaults are the crates' defaults, and the shipped file documents them.
        let defaults = FileConfig::default();
        assert_eq!(defaults.rtmp().unwrap(), rtmp::RtmpConfig::default());
        assert_eq!(defaults.http().unwrap(), HttpLimits::default());
        let shipped = FileConfig::parse(include_str!("../../../config/onair.toml")).unwrap();
        assert_eq!(shipped.rtmp().unwrap(), rtmp::RtmpConfig::default());
        assert_eq!(shipped.http().unwrap(), HttpLimits::default());
        for bad in [
            "[rtmp]\nmax_unadmitted_per_address = 0\n",
            "[rtmp]\nmax_pending_bytes_before_publish = 10\n",
            "[ingest]\nmax_lead_secs = -1\n",
            "[ingest]\nmax_bitrate = 5\n",
            "[http]\nmax_connections = 0\n",
        ] {
            let file = FileConfig::parse(bad).unwrap();
            assert!(file.rtmp().is_err() || file.http().is_err(), "{bad}");
        }
    }

    #[test]
    fn ingest_threads_default_to_one_per_cpu() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(FileConfig::default().ingest_threads().unwrap(), cpus);
        let shipped = FileConfig::parse(include_str!("../../../config/onair.toml")).unwrap();
        assert_eq!(shipped.ingest_threads().unwrap(), cpus);
        let file = |text: &str| FileConfig::parse(text).unwrap().ingest_threads();
        assert_eq!(file("[ingest]\nthreads = 0\n").unwrap(), 0);
        assert_eq!(file("[ingest]\nthreads = 3\n").unwrap(), 3);
        let e = format!("{:#}", file("[ingest]\nthreads = 100000\n").unwrap_err());
        assert!(e.starts_with("invalid [ingest] threads: 100000"), "{e}");
        assert!(FileConfig::parse("[ingest]\nthreads = -1\n").is_err());
    }

    #[test]
    fn listener_errors_name_the_setting_as_given() {
        let rtmp = |file: &str, flag: Option<&str>, from_env: bool| {
            let args = ServeArgs {
                rtmp_addr: flag.map(str::to_owned),
                from_env: if from_env {
                    vec!["rtmp_addr".to_owned()]
                } else {
                    Vec::new()
                },
                ..ServeArgs::default()
            };
            FileConfig::parse(file).unwrap().serve(&args, None)
        };
        let error = |r: Result<ServeSettings>| format!("{:#}", r.unwrap_err());
        let e = error(rtmp("[listeners]\nrtmp = \"x\"\n", None, false));
        assert!(e.starts_with("[listeners] rtmp: \"x\""), "{e}");
        let e = error(rtmp("", Some("x"), false));
        assert!(e.starts_with("--rtmp-addr: \"x\""), "{e}");
        let e = error(rtmp("[listeners]\nrtmp = \"off\"\n", Some("x"), true));
        assert!(e.starts_with("ONAIR_RTMP_ADDR: \"x\""), "{e}");
        // The setting is kept for a bind error: the default names all three.
        let settings = rtmp("", None, false).unwrap();
        let listen = settings.rtmp_addr.unwrap();
        assert_eq!(listen.addr, DEFAULT_RTMP_ADDR.parse().unwrap());
        assert_eq!(
            listen.setting,
            "the default; set --rtmp-addr, ONAIR_RTMP_ADDR or [listeners] rtmp"
        );
        let e = serve_error("[tls]\ncert = \"c.pem\"\n", &ServeArgs::default());
        assert!(e.starts_with("[tls] cert is given without a key"), "{e}");
        let token = |from_env: bool| {
            let args = ServeArgs {
                access_token: Some("id:short".to_owned()),
                from_env: if from_env {
                    vec!["access_token".to_owned()]
                } else {
                    Vec::new()
                },
                ..ServeArgs::default()
            };
            format!(
                "{:#}",
                FileConfig::default().serve(&args, None).unwrap_err()
            )
        };
        assert!(
            token(true).starts_with("ONAIR_ACCESS_TOKEN: "),
            "{}",
            token(true)
        );
        assert!(
            token(false).starts_with("--access-token: "),
            "{}",
            token(false)
        );
    }

    #[test]
    fn listener_addresses_resolve_host_names() {
        assert!(resolve("localhost:8080").unwrap().ip().is_loopback());
        assert_eq!(resolve("localhost:8080").unwrap().port(), 8080);
        assert_eq!(
            resolve("[::1]:5222").unwrap(),
            "[::1]:5222".parse::<SocketAddr>().unwrap()
        );
        assert!(resolve("localhost").is_err());
        assert!(resolve("no-such-host.invalid:80").is_err());
    }

    #[test]
    fn log_format_from_flag_file_and_default() {
        let file = FileConfig::parse("[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(file.log_format(None), LogFormat::Json);
        assert_eq!(file.log_format(Some(LogFormat::Text)), LogFormat::Text);
        assert_eq!(FileConfig::default().log_format(None), LogFormat::Text);
        assert!(FileConfig::parse("[log]\nformat = \"xml\"\n").is_err());
        let shipped = FileConfig::parse(include_str!("../../../config/onair.toml")).unwrap();
        assert_eq!(shipped.log.format, Some(LogFormat::Text));
        // One `[log]` table holds both keys: the format (read at start) and the filter
        // (reloaded on SIGHUP).
        assert_eq!(shipped.log_filter(), Some("info"));
        let both = FileConfig::parse("[log]\nformat = \"json\"\nfilter = \"warn,rtmp=debug\"\n")
            .unwrap()
            .serve(&ServeArgs::default(), None)
            .unwrap();
        assert_eq!(both.log_format, LogFormat::Json);
        assert_eq!(both.log_filter.as_deref(), Some("warn,rtmp=debug"));
        let e = serve_error(
            "[log]\nfilter = \"info,rtmp=loud\"\n",
            &ServeArgs::default(),
        );
        assert!(e.starts_with("[log] filter (\"info,rtmp=loud\")"), "{e}");
    }
}
