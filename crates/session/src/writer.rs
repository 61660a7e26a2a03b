//! The broadcast's store writer: lifecycle transitions are written in order by a task of
//! their own, so that a slow or failing store (a locked database, a full disk) never holds up
//! the broadcast's media.
//!
//! A write that fails is retried with backoff ([`FIRST_RETRY`] doubling to [`MAX_RETRY`])
//! until it succeeds: a status is never silently left wrong. Transitions queued behind it
//! wait, so the event log keeps the lifecycle's order. Once the gateway is shutting down a
//! failing write gets [`TRIES_AFTER_SHUTDOWN`] more tries; what is left is reconciled by the
//! next start (the stream's lifecycle is not idle there). A transition the store refuses as
//! inconsistent is logged and skipped, and one for a deleted stream is dropped.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{warn, Instrument};

use crate::store_glue::{self, TransitionRecord, WriteError};

/// Transitions queued for the writer. A broadcast makes a handful; when this many wait (the
/// store has been failing for long while an encoder keeps reconnecting), the actor waits too
/// (backpressure) rather than memory growing.
pub(crate) const WRITER_CHANNEL_CAPACITY: usize = 256;
/// First wait before a failed write is tried again.
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest wait between tries.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(10);
/// Tries left to a failing write once the gateway is shutting down.
pub(crate) const TRIES_AFTER_SHUTDOWN: u32 = 3;

/// What the writer is given, in order.
#[derive(Debug)]
enum Job {
    Write(TransitionRecord),
    /// Answered once everything before it is written (an API call that returns when its
    /// effect is visible).
    Barrier(oneshot::Sender<()>),
    /// A warning of the live stream (and its asset), after the transitions before it.
    Warning {
        live_stream_id: String,
        warning: store::Warning,
        at_ms: i64,
    },
}

/// The sending side; [`TransitionWriter::finish`] waits until everything sent is written.
#[derive(Debug)]
pub(crate) struct TransitionWriter {
    tx: mpsc::Sender<Job>,
    task: JoinHandle<()>,
}

impl TransitionWriter {
    /// Starts the writer of one broadcast (in the caller's tracing span).
    pub(crate) fn spawn(store: store::SqliteStore, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(WRITER_CHANNEL_CAPACITY);
        let task = tokio::spawn(run(store, rx, shutdown).in_current_span());
        TransitionWriter { tx, task }
    }

    /// Queues a transition (waits only while the queue is full).
    pub(crate) async fn send(&self, record: TransitionRecord) {
        if self.tx.send(Job::Write(record)).await.is_err() {
            warn!("the lifecycle writer has stopped; transition not recorded");
        }
    }

    /// Queues a warning, to be logged after the transitions queued before it.
    pub(crate) async fn send_warning(
        &self,
        live_stream_id: &str,
        warning: store::Warning,
        at_ms: i64,
    ) {
        let job = Job::Warning {
            live_stream_id: live_stream_id.to_owned(),
            warning,
            at_ms,
        };
        if self.tx.send(job).await.is_err() {
            warn!("the lifecycle writer has stopped; warning not recorded");
        }
    }

    /// `reply` is answered once every transition queued so far is written; the caller does
    /// not wait for it.
    pub(crate) async fn notify_when_written(&self, reply: oneshot::Sender<()>) {
        // If the writer has stopped, dropping `reply` answers the waiter too.
        let _ = self.tx.send(Job::Barrier(reply)).await;
    }

    /// Waits until every queued transition has been written (or given up on at shutdown).
    pub(crate) async fn finish(self) {
        drop(self.tx);
        if let Err(e) = self.task.await {
            warn!(error = %e, "the lifecycle writer failed");
        }
    }
}

async fn run(store: store::SqliteStore, mut rx: mpsc::Receiver<Job>, shutdown: CancellationToken) {
    while let Some(job) = rx.recv().await {
        let record = match job {
            Job::Write(record) => record,
            Job::Barrier(reply) => {
                let _ = reply.send(());
                continue;
            }
            Job::Warning {
                live_stream_id,
                warning,
                at_ms,
            } => {
                store_glue::record_warning(&store, &live_stream_id, warning, at_ms).await;
                continue;
            }
        };
        let mut delay = FIRST_RETRY;
        let mut tries_after_shutdown = TRIES_AFTER_SHUTDOWN;
        loop {
            match store_glue::record_transition(&store, &record).await {
                Ok(()) => break,
                Err(WriteError::Gone) => {
                    // The live stream was deleted (its delete completed the asset): the
                    // asset outlives it and still gets the final measurements.
                    if let Some(media) = &record.media {
                        store_glue::record_asset_media(&store, &record.broadcast_id, media).await;
                    }
                    break;
                }
                Err(WriteError::Refused(e)) => {
                    warn!(error = %e, state = record.state.as_str(), "lifecycle transition refused by the store; skipped");
                    break;
                }
                Err(WriteError::Failed(e)) => {
                    if shutdown.is_cancelled() {
                        tries_after_shutdown -= 1;
                        if tries_after_shutdown == 0 {
                            warn!(error = %e, state = record.state.as_str(), "stopping with a lifecycle transition unwritten; the next start reconciles the stream");
                            break;
                        }
                    }
                    warn!(error = %e, state = record.state.as_str(), retry_in = ?delay, "could not record a lifecycle transition; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
                    }
                    delay = (delay * 2).min(MAX_RETRY);
                }
            }
        }
    }
}
