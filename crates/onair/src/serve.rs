//! `onair serve`: binds every listener (failing before serving anything if one cannot be
//! bound), wires ingest -> sessions -> playback, and shuts down cleanly on SIGINT/SIGTERM:
//! listeners stop, publishers are disconnected, every open segment is closed and written.
//!
//! Signals while it runs:
//! - `SIGHUP` reloads the configuration and the RTMPS certificate ([`crate::reload`]);
//! - `SIGUSR1` drains: no new broadcast starts (publishers are refused with a reason,
//!   `/readyz` says not ready), running broadcasts, playback and the API go on, and the
//!   gateway stops (exit status 0) when the last broadcast ends or at the drain deadline.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use session::{SessionConfig, SessionManager};
use store::Store;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{ListenAddr, LogFormat, ServeSettings, TlsSource};
use crate::reload::{ReloadSource, Reloader, Webhooks};

/// How often the watched files are checked (`--reload-on-change`): a stat of at most three
/// files.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// How often a draining gateway checks whether its last broadcast has ended.
const DRAIN_POLL: Duration = Duration::from_millis(250);

/// How long shutdown waits for sessions to write their last segment.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Logs to stderr in `format`; `RUST_LOG` filters, else the file's `[log] filter` (default
/// `info`).
///
/// A plain filter (`info`, `rtmp=debug,info`) becomes a [`Targets`] filter, decided once
/// per call site. Only directives that need more (span names or fields, regexes) get an
/// `EnvFilter`, which takes a lock and a map lookup each time a span is entered: a publisher's
/// connection span is entered dozens of times a second.
///
/// The `Targets` filter sits behind a reload layer, so that SIGHUP can change `[log] filter`:
/// that layer answers per call site too (a reload rebuilds the call sites' interest), so it
/// adds no lock on the hot path.
///
/// [`Targets`]: tracing_subscriber::filter::Targets
pub fn init_logging(format: LogFormat, file_filter: Option<&str>) -> LogFilter {
    use tracing_subscriber::filter::{EnvFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let env = std::env::var("RUST_LOG").unwrap_or_default();
    let from_env = !env.trim().is_empty();
    let spec = match (env.trim(), file_filter.map(str::trim)) {
        ("", None | Some("")) => "info",
        ("", Some(file)) => file,
        (env, _) => env,
    };
    let ansi = colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    match spec.parse::<Targets>() {
        Ok(targets) => {
            let (filter, handle) = tracing_subscriber::reload::Layer::new(targets);
            tracing_subscriber::registry()
                .with(filter)
                .with(fmt_layer(format, ansi))
                .init();
            LogFilter {
                handle: Some(handle),
                from_env,
            }
        }
        Err(_) => {
            tracing_subscriber::registry()
                .with(EnvFilter::new(spec))
                .with(fmt_layer(format, ansi))
                .init();
            LogFilter {
                handle: None,
                from_env,
            }
        }
    }
}

/// The layer that writes log lines on stderr in `format` (`ansi`: colours, text only).
fn fmt_layer<S>(
    format: LogFormat,
    ansi: bool,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => layer.with_ansi(ansi).boxed(),
        // Span fields (`live_stream_id`, `peer`, `protocol`) ride along: `span` is the
        // innermost span, `spans` every open one, outermost first.
        LogFormat::Json => layer
            .with_ansi(false)
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    }
}

/// Whether text logs are coloured: only on a terminal (a log redirected to a file or a
/// collector stays plain text), and never when `NO_COLOR` is set to anything but the empty
/// string (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Changes the log filter on SIGHUP (`[log] filter`), unless `RUST_LOG` chose it.
#[derive(Debug)]
pub struct LogFilter {
    handle: Option<
        tracing_subscriber::reload::Handle<
            tracing_subscriber::filter::Targets,
            tracing_subscriber::Registry,
        >,
    >,
    /// `RUST_LOG` was set: it wins over the file, as at start.
    from_env: bool,
}

impl LogFilter {
    /// Applies `filter` (already validated: [`crate::config::ServeSettings::log_filter`]);
    /// `Err` says why it was not.
    pub fn set(&self, filter: &str) -> std::result::Result<(), String> {
        if self.from_env {
            return Err("RUST_LOG is set, and wins over [log] filter until a restart".to_owned());
        }
        let Some(handle) = &self.handle else {
            return Err("the filter at start was an EnvFilter (spans, fields or regexes): restart to change it".to_owned());
        };
        let targets = filter
            .parse::<tracing_subscriber::filter::Targets>()
            .map_err(|e| e.to_string())?;
        handle.reload(targets).map_err(|e| e.to_string())
    }
}

/// Runs the gateway until SIGINT or SIGTERM, or the end of a drain. `source` is where
/// `settings` came from, read again on SIGHUP.
pub fn run(settings: ServeSettings, source: ReloadSource, log: LogFilter) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings, source, log))
}

/// Binds a TCP listener (RTMP, RTMPS); `None` when it is off.
async fn bind(name: &str, listen: Option<&ListenAddr>) -> Result<Option<TcpListener>> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(listen.addr)
        .await
        .with_context(|| cannot_listen(name, listen))?;
    Ok(Some(listener))
}

/// The error of a listener that cannot bind: names the listener, the address and the
/// setting it came from, so that whoever reads a supervisor's log knows what to change.
fn cannot_listen(name: &str, listen: &ListenAddr) -> String {
    format!(
        "{name}: cannot listen on {} ({}; `off` disables it)",
        listen.addr, listen.setting
    )
}

/// Binds an HTTP-style listener (HTTP, metrics) with the HTTP listener's socket options.
fn bind_http(
    name: &str,
    listen: Option<&ListenAddr>,
    limits: &crate::http_server::HttpLimits,
) -> Result<Option<TcpListener>> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let listener = crate::http_server::bind(listen.addr, limits)
        .with_context(|| cannot_listen(name, listen))?;
    Ok(Some(listener))
}

async fn serve(settings: ServeSettings, source: ReloadSource, log: LogFilter) -> Result<()> {
    // Signals are caught from the start: a SIGHUP during start-up must not kill the process
    // (the default action), it is handled once serving.
    let mut signals = Signals::new()?;
    // One registry for the whole gateway, handed to each part (never a global one).
    let metrics = metrics::Metrics::new();
    private_data_dir(&settings.data_dir)
        .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    let store = store::SqliteStore::open(&settings.data_dir)
        .await
        .with_context(|| format!("opening the database in {}", settings.data_dir.display()))?;

    let tls = match &settings.tls {
        None => None,
        Some(TlsSource::Files { cert, key }) => {
            Some(rtmp::RtmpsTls::from_files(cert, key).context("loading the RTMPS certificate")?)
        }
        Some(TlsSource::Dev) => Some(
            rtmp::RtmpsTls::dev(["localhost", "127.0.0.1"])
                .context("generating a development certificate")?,
        ),
    };
    // Every listener is bound before anything is printed or written (the one-time access
    // token above all): a start that fails on a busy port leaves nothing behind.
    let rtmp_listener = bind("rtmp", settings.rtmp_addr.as_ref()).await?;
    let rtmps_listener = bind("rtmps", settings.rtmps_addr.as_ref()).await?;
    let srt_server = match &settings.srt_addr {
        Some(listen) => Some(
            srt::SrtServer::bind(listen.addr, settings.srt.clone())
                .await
                .with_context(|| cannot_listen("srt", listen))?
                .with_metrics(metrics.listener("srt")),
        ),
        None => None,
    };
    let http_listener = bind_http("http", settings.http_addr.as_ref(), &settings.http)?;
    let metrics_listener = bind_http("metrics", settings.metrics_addr.as_ref(), &settings.http)?;

    let shutdown = CancellationToken::new();
    let mut session_config = SessionConfig::new(&settings.data_dir);
    session_config.live_window = settings.pipeline.window;
    session_config.segments_in_memory = settings.pipeline.segments_in_memory;
    session_config.max_segment_duration = settings.pipeline.segmenter.max_segment_duration;
    session_config.stale_publisher_after = settings.pipeline.stale_publisher_after;
    session_config.slate_stall_after = settings.pipeline.slate_after_stall;
    session_config.metrics = metrics.clone();
    let manager = SessionManager::new(store, session_config, shutdown.clone());
    // Before any encoder can connect: broadcasts a previous run left unfinished (crash or
    // shutdown) become disconnected now and go idle after their reconnect window.
    let restored = manager
        .recover()
        .await
        .map_err(|e| anyhow::anyhow!("reconciling unfinished broadcasts: {e}"))?;
    if restored > 0 {
        info!(
            restored,
            "unfinished broadcasts restored: idle after their reconnect window"
        );
    }
    // The API's state, and the signing keys that signed playback IDs are verified with (the
    // API adds and removes keys in the same set).
    let api_state = match &http_listener {
        Some(_) => {
            // The webhook event stream (`mux webhooks listen`) names the webhooks'
            // environment and its open streams end on shutdown.
            let event_streams = api::EventStreams {
                environment: settings.webhooks.environment.clone(),
                shutdown: shutdown.clone(),
                heartbeat: api::HEARTBEAT_INTERVAL,
            };
            let state = api::ApiState::with_event_streams(
                manager.clone(),
                settings.api.clone(),
                event_streams,
            );
            let keys = state
                .load_signing_keys()
                .await
                .context("loading the signing keys")?;
            info!(signing_keys = keys, "signing keys loaded");
            Some(state)
        }
        None => None,
    };
    let tasks = TaskTracker::new();
    // Webhooks read the event log in their own tasks: a slow or dead endpoint never holds up
    // ingest or the API. Stopped by `shutdown`; what was not delivered is sent at the next
    // start (the cursor moves only after a 2xx).
    // SIGHUP restarts it with new endpoints.
    let webhook_count = settings.webhooks.endpoints.len();
    let webhooks = Webhooks::new(
        manager.store().clone(),
        metrics.clone(),
        shutdown.clone(),
        tasks.clone(),
    );
    let reload_tls = match (&rtmps_listener, &tls) {
        (Some(_), Some(tls)) => Some(tls.clone()),
        _ => None,
    };
    let mut reloader = Reloader::new(source, settings.clone(), reload_tls, webhooks, log);
    reloader
        .start_webhooks()
        .await
        .context("starting webhook delivery")?;
    if let Some(state) = &api_state {
        reloader.set_api(state.clone());
    }
    // Read by the HTTP and metrics listeners per connection; SIGHUP replaces it.
    let http_limits = session::Reloadable::new(settings.http);
    reloader.set_http(http_limits.clone());
    // Read by the RTMP and RTMPS listeners per connection; SIGHUP replaces it.
    let rtmp_config = rtmp::SharedRtmpConfig::new(settings.rtmp.clone());
    reloader.set_ingest(
        rtmp_config.clone(),
        srt_server.as_ref().map(srt::SrtServer::pacing),
    );

    // The last step that can fail: from here on the start succeeds, so a token created now
    // is never lost to a failed start.
    println!("data directory {}", settings.data_dir.display());
    ensure_access_token(manager.store(), settings.access_token.as_ref()).await?;
    if webhook_count > 0 {
        println!("webhooks: delivering events to {webhook_count} endpoint(s)");
    }
    // RTMP and RTMPS connections run on single-threaded runtimes of their own (see
    // `session::runtimes`); the listeners' accept loops stay here.
    let (ingest_runtimes, ingest_threads) = session::IngestRuntimes::start(settings.ingest_threads)
        .context("starting the ingest threads")?;
    info!(threads = ingest_runtimes.threads(), "RTMP ingest threads");
    match rtmp_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            println!("rtmp listening on {addr} (publish to rtmp://{addr}/app with the stream key)");
            tasks.spawn(rtmp::serve(
                listener,
                None,
                manager.clone(),
                rtmp_config.clone(),
                metrics.listener("rtmp"),
                ingest_runtimes.clone(),
                shutdown.clone(),
            ));
        }
        None => println!("rtmp off"),
    }
    match (rtmps_listener, tls) {
        (Some(listener), Some(tls)) => {
            let addr = listener.local_addr()?;
            println!(
                "rtmps listening on {addr} (publish to rtmps://{addr}/app with the stream key)"
            );
            tasks.spawn(rtmp::serve(
                listener,
                Some(tls.acceptor()),
                manager.clone(),
                rtmp_config.clone(),
                metrics.listener("rtmps"),
                ingest_runtimes.clone(),
                shutdown.clone(),
            ));
        }
        _ => println!("rtmps off"),
    }
    match srt_server {
        Some(server) => {
            let addr = server.local_addr();
            println!("srt listening on {addr} (publish to srt://{addr}?streamid=STREAM_KEY&passphrase=SRT_PASSPHRASE)");
            let timestamps = settings.pipeline.timestamps;
            tasks.spawn(server.serve(
                manager.clone(),
                move |_: &str| media::TsDemuxer::new(timestamps),
                shutdown.clone(),
            ));
        }
        None => println!("srt off"),
    }
    match (http_listener, api_state) {
        (Some(listener), Some(state)) => {
            let addr = listener.local_addr()?;
            println!("http listening on {addr} (API http://{addr}/video/v1, play http://{addr}/PLAYBACK_ID.m3u8)");
            let signing_keys = state.signing_keys().clone();
            let app = crate::http_metrics::api(api::router(state), metrics.clone()).merge(
                crate::http_metrics::playback(
                    playback::router(manager.clone(), signing_keys),
                    metrics.clone(),
                ),
            );
            tasks.spawn(crate::http_server::serve(
                listener,
                app,
                http_limits.clone(),
                metrics.listener("http"),
                shutdown.clone(),
            ));
        }
        _ => println!("http off"),
    }
    let readiness =
        crate::metrics_listener::Readiness::new(&settings.data_dir, manager.store().clone());
    match metrics_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            println!("metrics listening on {addr} (http://{addr}/metrics, /healthz, /readyz)");
            tasks.spawn(crate::http_server::serve(
                listener,
                crate::metrics_listener::router(metrics.clone(), Arc::clone(&readiness)),
                http_limits.clone(),
                metrics.listener("metrics"),
                shutdown.clone(),
            ));
        }
        None => println!("metrics off"),
    }
    readiness.set_listening(true);
    println!("ready");

    let mut drain_until: Option<Instant> = None;
    let mut drain_poll = tokio::time::interval(DRAIN_POLL);
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    if reloader.watches_files() {
        reloader.files_changed();
        info!(
            every_secs = WATCH_INTERVAL.as_secs(),
            "reloading when the configuration, certificate or key file changes"
        );
    }
    loop {
        tokio::select! {
            signal = signals.recv() => match signal {
                Signal::Stop => break,
                Signal::Reload => {
                    // What SIGHUP reads does not count as a change for the watch (noted
                    // before reading: a write during the reload is seen at the next check).
                    reloader.files_changed();
                    reloader.reload("SIGHUP").await;
                }
                Signal::Drain => {
                    if drain_until.is_some() {
                        info!(running = manager.running(), "already draining");
                        continue;
                    }
                    manager.drain();
                    readiness.set_draining();
                    let deadline = reloader.drain_deadline();
                    drain_until = Some(Instant::now() + deadline);
                    info!(
                        running = manager.running(),
                        deadline_secs = deadline.as_secs_f64(),
                        "SIGUSR1: draining: new broadcasts are refused; stopping when the last running one ends"
                    );
                }
            },
            _ = watch.tick(), if reloader.watches_files() => {
                if reloader.files_changed() {
                    reloader.reload("file changed").await;
                }
            }
            _ = drain_poll.tick(), if drain_until.is_some() => {
                let running = manager.running();
                if running == 0 {
                    info!("drained: the last broadcast has ended");
                    break;
                }
                if drain_until.is_some_and(|until| Instant::now() >= until) {
                    warn!(running, "drain deadline reached: stopping with broadcasts still running");
                    break;
                }
            }
        }
    }
    readiness.set_listening(false);
    info!("shutting down: closing listeners, disconnecting publishers, writing open segments");
    shutdown.cancel();
    tasks.close();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        tasks.wait().await;
        manager.wait().await;
    })
    .await;
    if drained.is_err() {
        warn!("shutdown grace period of {SHUTDOWN_GRACE:?} elapsed; exiting anyway");
    }
    if let Some(threads) = ingest_threads {
        let _ = tokio::task::spawn_blocking(move || threads.stop()).await;
    }
    info!("stopped");
    Ok(())
}

/// Creates the data directory accessible by the gateway's user only (0700): it holds the
/// database (stream keys) and the recordings. A directory that others can enter (made by an
/// earlier version, or by hand) is tightened, with a warning.
fn private_data_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warn!(dir = %dir.display(), mode = format!("{mode:o}"), "data directory was accessible to others: now 0700");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// What a signal asks of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGINT, SIGTERM: stop now (gracefully).
    Stop,
    /// SIGHUP: reload the configuration and the certificate.
    Reload,
    /// SIGUSR1: drain.
    Drain,
}

/// The signals `serve` handles, registered once at start.
#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let register = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot listen for {name}"))
        };
        Ok(Signals {
            interrupt: register(SignalKind::interrupt(), "SIGINT")?,
            terminate: register(SignalKind::terminate(), "SIGTERM")?,
            hangup: register(SignalKind::hangup(), "SIGHUP")?,
            user1: register(SignalKind::user_defined1(), "SIGUSR1")?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Stop,
            _ = self.terminate.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
            _ = self.user1.recv() => Signal::Drain,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> Result<Self> {
        Ok(Signals)
    }

    async fn recv(&mut self) -> Signal {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}

/// `ONAIR_ACCESS_TOKEN=ID:SECRET` makes sure that token exists; without it, the first start
/// creates one and prints it once.
async fn ensure_access_token(
    store: &store::SqliteStore,
    token: Option<&(String, String)>,
) -> Result<()> {
    if let Some((id, secret)) = token {
        store
            .ensure_access_token(id, secret, store::Permissions::READ_WRITE)
            .await
            .context("creating the access token from ONAIR_ACCESS_TOKEN")?;
        return Ok(());
    }
    if store
        .count_access_tokens()
        .await
        .context("counting access tokens")?
        == 0
    {
        let issued = store
            .create_access_token("default", store::Permissions::READ_WRITE)
            .await
            .context("creating the first access token")?;
        println!(
            "created access token (shown once): ONAIR_ACCESS_TOKEN={}:{}",
            issued.token.id, issued.secret
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
