//! The delivery tasks: one per endpoint, reading the event log after the endpoint's cursor.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use store::{Event, Store, WebhookFailure};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::envelope::envelope;
use crate::http::{HttpTransport, Transport};
use crate::{signature, Environment, RetryPolicy, WebhookEndpoint, WebhookError};

/// How often an idle endpoint task looks at the log without being woken (events written by
/// another process on the same database, a missed wake-up).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Events read from the store at a time (memory stays bounded however far behind an endpoint
/// is).
pub const EVENTS_PAGE: u32 = 100;

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Every event goes to each of these (none: delivery is off).
    pub endpoints: Vec<WebhookEndpoint>,
    /// Named in every envelope.
    pub environment: Environment,
    /// Delays between attempts and when to give up.
    pub retry: RetryPolicy,
    /// See [`DEFAULT_POLL_INTERVAL`].
    pub poll_interval: Duration,
    /// Where attempts (`onair_webhook_deliveries_total`) and the backlog are reported; a
    /// registry of its own by default.
    pub metrics: metrics::Metrics,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            endpoints: Vec::new(),
            environment: Environment::default(),
            retry: RetryPolicy::default(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            metrics: metrics::Metrics::new(),
        }
    }
}

/// Starts one delivery task per endpoint on `tasks`. `wake` changes when the store writes an
/// event ([`store::SqliteStore::subscribe_events`]). The tasks stop at `shutdown`, between
/// attempts or by abandoning one in flight; an event is marked delivered only after a `2xx`,
/// so an abandoned one is sent again at the next start.
pub fn spawn_delivery<S: Store + Clone>(
    store: S,
    config: WebhookConfig,
    wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<(), WebhookError> {
    config.environment.validate()?;
    if config.endpoints.is_empty() {
        return Ok(());
    }
    let transport = Arc::new(HttpTransport::new()?);
    spawn_with(store, config, wake, shutdown, tasks, transport);
    Ok(())
}

pub(crate) fn spawn_with<S: Store + Clone, T: Transport>(
    store: S,
    config: WebhookConfig,
    wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
    transport: Arc<T>,
) {
    let environment = Arc::new(config.environment);
    for endpoint in config.endpoints {
        info!(endpoint = %endpoint.display_url(), "webhook delivery on");
        let worker = EndpointWorker {
            store: store.clone(),
            transport: Arc::clone(&transport),
            endpoint,
            environment: Arc::clone(&environment),
            retry: config.retry,
            poll_interval: config.poll_interval,
            shutdown: shutdown.clone(),
            backlog: config.metrics.webhook_backlog(),
            metrics: config.metrics.clone(),
        };
        tasks.spawn(worker.run(wake.clone()));
    }
}

/// How delivering one event ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A 2xx answer.
    Delivered,
    /// Every attempt failed for the whole retry period.
    GaveUp { attempts: u64, reason: String },
    /// Shutdown came first: nothing is recorded.
    Stopped,
}

struct EndpointWorker<S, T> {
    store: S,
    transport: Arc<T>,
    endpoint: WebhookEndpoint,
    environment: Arc<Environment>,
    retry: RetryPolicy,
    poll_interval: Duration,
    shutdown: CancellationToken,
    metrics: metrics::Metrics,
    backlog: metrics::WebhookBacklog,
}

impl<S: Store, T: Transport> EndpointWorker<S, T> {
    async fn run(self, mut wake: watch::Receiver<u64>) {
        let url = self.endpoint.display_url().to_owned();
        let key = self.endpoint.key().to_owned();
        let Some(mut cursor) = self.retry_store(|| self.store.webhook_cursor(&key)).await else {
            return;
        };
        debug!(endpoint = %url, after_seq = cursor, "webhook delivery resumes");
        let mut wake_open = true;
        loop {
            // Marked seen before reading: an event written after this wakes the wait below.
            wake.borrow_and_update();
            let Some(page) = self
                .retry_store(|| self.store.list_events(cursor, EVENTS_PAGE))
                .await
            else {
                return;
            };
            if page.is_empty() {
                self.backlog.set_oldest(None);
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    changed = wake.changed(), if wake_open => wake_open = changed.is_ok(),
                    () = tokio::time::sleep(self.poll_interval) => {}
                }
                continue;
            }
            for event in page {
                self.backlog
                    .set_oldest(Some(u64::try_from(event.created_at_ms).unwrap_or(0).max(1)));
                match self.deliver(&event).await {
                    Outcome::Stopped => return,
                    Outcome::Delivered => {
                        let done = self
                            .retry_store(|| self.store.advance_webhook_cursor(&key, event.seq))
                            .await;
                        if done.is_none() {
                            return;
                        }
                    }
                    Outcome::GaveUp { attempts, reason } => {
                        self.metrics.webhook_delivery("gave_up");
                        warn!(endpoint = %url, event_id = %event.id, event_type = %event.event_type,
                              attempts, %reason, "webhook delivery gave up on an event");
                        let failure = WebhookFailure {
                            endpoint_key: key.clone(),
                            event_seq: event.seq,
                            event_id: event.id.clone(),
                            attempts,
                            reason,
                            failed_at_ms: unix_ms(),
                        };
                        let done = self
                            .retry_store(|| self.store.record_webhook_failure(failure.clone()))
                            .await;
                        if done.is_none() {
                            return;
                        }
                    }
                }
                cursor = event.seq;
            }
        }
    }

    /// Sends `event` until an attempt gets a 2xx, the retry period ends, or shutdown.
    async fn deliver(&self, event: &Event) -> Outcome {
        let body = match serde_json::to_vec(&envelope(event, &self.environment)) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                return Outcome::GaveUp {
                    attempts: 0,
                    reason: format!("cannot encode the event: {e}"),
                }
            }
        };
        // The retry period runs from when the event happened, across restarts: a backlog
        // older than that behind an endpoint that was down is given up after one attempt
        // each, instead of 24 more hours per event.
        let age =
            || Duration::from_millis(u64::try_from(unix_ms() - event.created_at_ms).unwrap_or(0));
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            // Signed afresh each time: receivers reject old timestamps.
            let signature = signature::header_value(self.endpoint.secret(), unix_secs(), &body);
            let result = tokio::select! {
                () = self.shutdown.cancelled() => return Outcome::Stopped,
                r = self.transport.post(self.endpoint.url(), &signature, body.clone()) => r,
            };
            let reason = match result {
                Ok(status) if (200..300).contains(&status) => {
                    debug!(endpoint = %self.endpoint.display_url(), event_id = %event.id,
                           event_type = %event.event_type, status, attempt, "webhook delivered");
                    self.metrics.webhook_delivery("delivered");
                    return Outcome::Delivered;
                }
                Ok(status) => {
                    self.metrics.webhook_delivery("rejected");
                    format!("HTTP status {status}")
                }
                Err(e) => {
                    self.metrics.webhook_delivery("failed");
                    e
                }
            };
            let Some(delay) = self.retry.next_delay(attempt, age()) else {
                return Outcome::GaveUp {
                    attempts: u64::from(attempt),
                    reason,
                };
            };
            warn!(endpoint = %self.endpoint.display_url(), event_id = %event.id,
                  event_type = %event.event_type, attempt, retry_in = ?delay, %reason,
                  "webhook delivery failed");
            tokio::select! {
                () = self.shutdown.cancelled() => return Outcome::Stopped,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Runs a store operation until it succeeds (a locked or briefly unavailable database
    /// must not lose the endpoint's place); `None` at shutdown.
    async fn retry_store<R, F, Fut>(&self, mut op: F) -> Option<R>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<R, store::StoreError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = tokio::select! {
                () = self.shutdown.cancelled() => return None,
                r = op() => r,
            };
            match result {
                Ok(r) => return Some(r),
                Err(e) => {
                    let delay = self.retry.delay(attempt).min(Duration::from_secs(30));
                    warn!(endpoint = %self.endpoint.display_url(), error = %e, retry_in = ?delay,
                          "webhook delivery: store unavailable");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

pub(crate) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use reqwest::Url;
    use store::{NewLiveStream, SqliteStore};

    use super::*;

    /// Answers from a script (then 200), recording what was sent.
    #[derive(Default)]
    struct ScriptedTransport {
        answers: Mutex<VecDeque<Result<u16, String>>>,
        sent: Mutex<Vec<(String, String)>>,
    }

    impl Transport for ScriptedTransport {
        async fn post(&self, url: &Url, signature: &str, body: Bytes) -> Result<u16, String> {
            if url.path() == "/dead" {
                // Slow and failing: never sends anything useful.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err("cannot connect".into());
            }
            let body = String::from_utf8(body.to_vec()).unwrap();
            self.sent.lock().unwrap().push((signature.to_owned(), body));
            self.answers.lock().unwrap().pop_front().unwrap_or(Ok(200))
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            give_up_after: Duration::from_secs(3600),
        }
    }

    fn sent_ids(t: &ScriptedTransport) -> Vec<String> {
        t.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| {
                serde_json::from_str::<serde_json::Value>(body).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    struct Harness {
        store: SqliteStore,
        transport: Arc<ScriptedTransport>,
        endpoint: WebhookEndpoint,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        metrics: metrics::Metrics,
    }

    /// Starts delivery to one endpoint whose cursor exists (at the end of the log) already.
    async fn start(
        store: &SqliteStore,
        answers: Vec<Result<u16, String>>,
        retry: RetryPolicy,
    ) -> Harness {
        let transport = Arc::new(ScriptedTransport {
            answers: Mutex::new(answers.into()),
            ..ScriptedTransport::default()
        });
        let endpoint = WebhookEndpoint::new("http://127.0.0.1:9/hook", "sekrit").unwrap();
        store.webhook_cursor(endpoint.key()).await.unwrap();
        let config = WebhookConfig {
            endpoints: vec![endpoint.clone()],
            retry,
            poll_interval: Duration::from_millis(50),
            ..WebhookConfig::default()
        };
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let metrics = config.metrics.clone();
        spawn_with(
            store.clone(),
            config,
            store.subscribe_events(),
            shutdown.clone(),
            &tasks,
            Arc::clone(&transport),
        );
        Harness {
            store: store.clone(),
            transport,
            endpoint,
            shutdown,
            tasks,
            metrics,
        }
    }

    impl Harness {
        async fn stop(self) -> u64 {
            self.shutdown.cancel();
            self.tasks.close();
            self.tasks.wait().await;
            self.store
                .webhook_cursor(self.endpoint.key())
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn delivers_in_order_signed_and_advances_the_cursor_only_on_2xx() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        // Before the endpoint exists: not delivered (a new endpoint starts at the end).
        store
            .create_live_stream(NewLiveStream::default())
            .await
            .unwrap();
        let h = start(
            &store,
            vec![Ok(500), Err("cannot connect".into()), Ok(302), Ok(204)],
            fast(),
        )
        .await;
        let a = store
            .create_live_stream(NewLiveStream::default())
            .await
            .unwrap();
        let b = store
            .create_live_stream(NewLiveStream::default())
            .await
            .unwrap();
        let events = store.list_events(0, 100).await.unwrap();
        let (ea, eb) = (&events[1], &events[2]);
        assert_eq!(
            (ea.live_stream_id.as_str(), eb.live_stream_id.as_str()),
            (a.id.as_str(), b.id.as_str())
        );

        // 500, refused, 302: the same event again each time, the cursor stays before it.
        until("four attempts", || {
            h.transport.sent.lock().unwrap().len() >= 4
        })
        .await;
        assert_eq!(
            sent_ids(&h.transport)[..4],
            [ea.id.clone(), ea.id.clone(), ea.id.clone(), ea.id.clone()]
        );
        until("the second event", || {
            h.transport.sent.lock().unwrap().len() >= 5
        })
        .await;
        assert_eq!(sent_ids(&h.transport)[4], eb.id);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if store.webhook_cursor(h.endpoint.key()).await.unwrap() == eb.seq {
                break;
            }
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Every attempt is signed over the exact body sent.
        for (header, body) in h.transport.sent.lock().unwrap().iter() {
            let (t, v1) = header
                .strip_prefix("t=")
                .unwrap()
                .split_once(",v1=")
                .unwrap();
            let t: u64 = t.parse().unwrap();
            assert_eq!(v1, signature::sign("sekrit", t, body.as_bytes()));
        }
        assert!(store
            .webhook_failures(h.endpoint.key())
            .await
            .unwrap()
            .is_empty());
        // Each attempt is counted by outcome; caught up, there is no backlog.
        let text = h.metrics.render();
        for line in [
            r#"onair_webhook_deliveries_total{outcome="rejected"} 2"#,
            r#"onair_webhook_deliveries_total{outcome="failed"} 1"#,
            r#"onair_webhook_deliveries_total{outcome="delivered"} 2"#,
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        until("no backlog", || {
            h.metrics
                .render()
                .contains("onair_webhook_backlog_age_seconds 0\n")
        })
        .await;
        assert_eq!(h.stop().await, eb.seq);
    }

    #[tokio::test]
    async fn a_failing_event_keeps_the_cursor_until_shutdown() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let h = start(&store, vec![Ok(503); 1000], fast()).await;
        store
            .create_live_stream(NewLiveStream::default())
            .await
            .unwrap();
        until("retries", || h.transport.sent.lock().unwrap().len() >= 3).await;
        // The undelivered event is a backlog that ages.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let text = h.metrics.render();
        let age: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("onair_webhook_backlog_age_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(age > 0.0, "{text}");
        // Stopped mid-retry: nothing recorded, the event is sent again at the next start.
        assert_eq!(h.stop().await, 0);
        let h = start(&store, vec![], fast()).await;
        until("redelivery", || {
            !h.transport.sent.lock().unwrap().is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            h.stop().await,
            store.list_events(0, 10).await.unwrap()[0].seq
        );
    }

    #[tokio::test]
    async fn gives_up_after_the_retry_period_records_it_and_moves_on() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let retry = RetryPolicy {
            give_up_after: Duration::from_millis(30),
            ..fast()
        };
        let h = start(&store, vec![Ok(500); 1000], retry).await;
        store
            .create_live_stream(NewLiveStream::default())
            .await
            .unwrap();
        store
            .create_live_stream(NewLiveStream::default())
            .await
            .unwrap();
        let events = store.list_events(0, 10).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if store
                .webhook_failures(h.endpoint.key())
                .await
                .unwrap()
                .len()
                == 2
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no failures recorded");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let failures = store.webhook_failures(h.endpoint.key()).await.unwrap();
        assert_eq!(failures[0].event_id, events[0].id);
        assert_eq!(failures[1].event_id, events[1].id);
        assert_eq!(failures[0].reason, "HTTP status 500");
        assert!(failures[0].attempts >= 2);
        assert_eq!(h.stop().await, events[1].seq);
    }

    /// The retry period counts from when the event happened, not from the first attempt (nor
    /// from the last restart): a backlog older than it costs one attempt per event.
    #[tokio::test]
    async fn a_backlog_older_than_the_retry_period_is_given_up_at_once() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let retry = RetryPolicy {
            give_up_after: Duration::from_millis(200),
            ..fast()
        };
        // The endpoint is known (its cursor stored) but not running while events happen.
        let endpoint = WebhookEndpoint::new("http://127.0.0.1:9/hook", "sekrit").unwrap();
        store.webhook_cursor(endpoint.key()).await.unwrap();
        for _ in 0..3 {
            store
                .create_live_stream(NewLiveStream::default())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let h = start(&store, vec![Ok(500); 1000], retry).await;
        until("three failures", || {
            h.transport.sent.lock().unwrap().len() >= 3
        })
        .await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store
            .webhook_failures(h.endpoint.key())
            .await
            .unwrap()
            .len()
            < 3
        {
            assert!(std::time::Instant::now() < deadline, "not given up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let failures = store.webhook_failures(h.endpoint.key()).await.unwrap();
        assert!(failures.iter().all(|f| f.attempts == 1), "{failures:?}");
        assert_eq!(h.transport.sent.lock().unwrap().len(), 3);
        h.stop().await;
    }

    #[tokio::test]
    async fn a_dead_endpoint_holds_back_only_itself() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let live = WebhookEndpoint::new("http://127.0.0.1:9/live", "a").unwrap();
        let dead = WebhookEndpoint::new("http://127.0.0.1:9/dead", "b").unwrap();
        for e in [&live, &dead] {
            store.webhook_cursor(e.key()).await.unwrap();
        }
        let transport = Arc::new(ScriptedTransport::default());
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        spawn_with(
            store.clone(),
            WebhookConfig {
                endpoints: vec![dead.clone(), live.clone()],
                retry: fast(),
                poll_interval: Duration::from_millis(50),
                ..WebhookConfig::default()
            },
            store.subscribe_events(),
            shutdown.clone(),
            &tasks,
            Arc::clone(&transport),
        );
        for _ in 0..5 {
            store
                .create_live_stream(NewLiveStream::default())
                .await
                .unwrap();
        }
        until("five deliveries to the live endpoint", || {
            transport.sent.lock().unwrap().len() == 5
        })
        .await;
        let events = store.list_events(0, 10).await.unwrap();
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(sent_ids(&transport), ids);
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        assert_eq!(
            store.webhook_cursor(live.key()).await.unwrap(),
            events[4].seq
        );
        assert_eq!(store.webhook_cursor(dead.key()).await.unwrap(), 0);
    }
}
