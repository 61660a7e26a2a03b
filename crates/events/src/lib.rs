//! Events leaving the gateway: signed webhooks, delivered from the store's event log.
//!
//! The store writes every change of a live stream in one transaction with a row of its event
//! log ([`store::Event`]); that log is the outbox. This crate reads it and POSTs each event to
//! every configured endpoint, in the hosted API's envelope ([`envelope`]) with its
//! `mux-signature` header ([`signature`]), so that receivers written for the hosted API (and
//! its SDKs' `webhooks.unwrap`) accept them unchanged.
//!
//! # Guarantees
//!
//! - **At least once, across restarts**: each endpoint has a cursor in the store (the `seq` of
//!   the last event it is done with), advanced only after a `2xx` answer (or after delivery
//!   gave up on the event, which is then recorded as a [`store::WebhookFailure`]). A crash
//!   between the answer and the cursor write sends that event again.
//! - **In order**: an endpoint gets the events strictly in `seq` order, one at a time; an
//!   event that keeps failing holds back the ones after it (for that endpoint only) until it is
//!   delivered or given up on ([`RetryPolicy`]: increasing delays for 24 hours).
//! - **Isolated**: one task per endpoint, woken when the store writes an event (and by a
//!   periodic poll). A slow or dead endpoint slows nothing else: ingest and the API never
//!   wait for delivery, and other endpoints have their own tasks.
//! - **Bounded**: events are read in pages, each attempt times out after
//!   [`ATTEMPT_TIMEOUT`], at most [`MAX_RESPONSE_BYTES`] of an answer are read, redirects are
//!   not followed.
//!
//! # Driving it
//!
//! ```no_run
//! # async fn demo(store: store::SqliteStore) -> Result<(), events::WebhookError> {
//! use events::{Environment, WebhookConfig, WebhookEndpoint};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let tasks = tokio_util::task::TaskTracker::new();
//! let config = WebhookConfig {
//!     endpoints: vec![WebhookEndpoint::new("https://example.com/hook", "secret")?],
//!     environment: Environment::default(),
//!     ..WebhookConfig::default()
//! };
//! let wake = store.subscribe_events();
//! events::spawn_delivery(store, config, wake, shutdown.clone(), &tasks)?;
//! // ... later: shutdown.cancel(); tasks.close(); tasks.wait().await;
//! # Ok(()) }
//! ```
//!
//! The Server-Sent Events stream of the official CLI (`mux webhooks listen`) is served by the
//! `api` crate (it authenticates like the REST API), with this crate's [`envelope`].
//! [`send_test_event`] sends one signed sample (`onair webhooks test`).
//!
//! Not here yet: asset events.

#![forbid(unsafe_code)]

mod delivery;
mod endpoint;
pub mod envelope;
mod error;
mod http;
mod retry;
pub mod signature;
mod test_event;

pub use delivery::{spawn_delivery, WebhookConfig, DEFAULT_POLL_INTERVAL, EVENTS_PAGE};
pub use endpoint::{
    Environment, WebhookEndpoint, DEFAULT_ENVIRONMENT_ID, DEFAULT_ENVIRONMENT_NAME,
};
pub use error::WebhookError;
pub use http::{ATTEMPT_TIMEOUT, MAX_RESPONSE_BYTES};
pub use retry::RetryPolicy;
pub use test_event::{send_test_event, test_event, TEST_LIVE_STREAM_ID};
