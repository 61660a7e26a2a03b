//! Where ingest connections run: on the caller's runtime, or on a pool of single-threaded
//! runtimes, each on a thread of its own (`[ingest] threads`).
//!
//! A publisher's connection wakes up for every read (dozens a second) and hands what it read to
//! its broadcast's actor. On tokio's multi-threaded runtime, each of those wake-ups can also
//! wake an idle worker (a futex wake and a context switch) that finds nothing to do: measured
//! at 20 publishers, one worker instead of two took about a fifth less CPU and a third fewer
//! context switches (docs/PERFORMANCE.md). On a single-threaded runtime a connection, the actor
//! of the broadcast it starts (admission spawns the actor from the connection's task, so on the
//! same runtime) and their timers never wake another thread; the pool spreads connections over
//! as many of them as there are threads, so ingest still uses every core.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Spawns ingest connections: see the module documentation. Cheap to clone.
#[derive(Clone, Default)]
pub struct IngestRuntimes {
    /// `None`: the caller's runtime.
    pool: Option<Arc<[Worker]>>,
}

struct Worker {
    handle: Handle,
    /// Tasks spawned here and not finished.
    load: Arc<AtomicUsize>,
}

impl fmt::Debug for IngestRuntimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestRuntimes")
            .field("threads", &self.threads())
            .finish()
    }
}

/// The threads of an [`IngestRuntimes`] pool; [`IngestThreads::stop`] ends them.
#[derive(Debug)]
pub struct IngestThreads {
    stop: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl IngestRuntimes {
    /// Connections run on the runtime that spawns them.
    pub fn shared() -> Self {
        IngestRuntimes { pool: None }
    }

    /// A pool of `threads` single-threaded runtimes (`0`: [`IngestRuntimes::shared`]), with the
    /// handle that stops them.
    pub fn start(threads: usize) -> io::Result<(IngestRuntimes, Option<IngestThreads>)> {
        if threads == 0 {
            return Ok((IngestRuntimes::shared(), None));
        }
        let stop = CancellationToken::new();
        let mut workers = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("onair-ingest-{i}-blocking"))
                .build()?;
            workers.push(Worker {
                handle: runtime.handle().clone(),
                load: Arc::new(AtomicUsize::new(0)),
            });
            let stopped = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("onair-ingest-{i}"))
                .spawn(move || runtime.block_on(stopped.cancelled()));
            match thread {
                Ok(thread) => handles.push(thread),
                Err(e) => {
                    IngestThreads {
                        stop,
                        threads: handles,
                    }
                    .stop();
                    return Err(e);
                }
            }
        }
        Ok((
            IngestRuntimes {
                pool: Some(workers.into()),
            },
            Some(IngestThreads {
                stop,
                threads: handles,
            }),
        ))
    }

    /// How many threads the pool has (`0`: the caller's runtime).
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.len())
    }

    /// Runs the future that `make` returns on the pool's least busy runtime (`make` runs there
    /// too: a socket moved with `into_std` is registered with that runtime's reactor by
    /// `from_std` inside it), or on the caller's runtime without a pool.
    pub fn spawn<F, Fut>(&self, make: F) -> tokio::task::JoinHandle<()>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(pool) = &self.pool else {
            return tokio::spawn(async move { make().await });
        };
        let worker = pool
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
            .expect("a pool has at least one runtime");
        worker.load.fetch_add(1, Ordering::Relaxed);
        let load = Arc::clone(&worker.load);
        worker.handle.spawn(async move {
            let _done = LoadGuard(load);
            make().await;
        })
    }
}

/// Counts a task out of its runtime's load when it ends (or is dropped).
struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl IngestThreads {
    /// Stops the runtimes and waits for their threads. Tasks still running on them are
    /// dropped: call this once the gateway has let its connections and broadcasts end. Must
    /// not be called from an ingest thread.
    pub fn stop(self) {
        self.stop.cancel();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawns_on_the_least_busy_thread_and_stops() {
        let (runtimes, threads) = IngestRuntimes::start(2).unwrap();
        let threads = threads.unwrap();
        assert_eq!(runtimes.threads(), 2);
        let (tx, rx) = std::sync::mpsc::channel();
        let (release, released) = tokio::sync::watch::channel(false);
        for _ in 0..4 {
            let tx = tx.clone();
            let mut released = released.clone();
            runtimes.spawn(move || async move {
                tx.send(std::thread::current().name().map(str::to_owned))
                    .unwrap();
                let _ = released.wait_for(|r| *r).await;
            });
        }
        let mut names: Vec<_> = (0..4).map(|_| rx.recv().unwrap().unwrap()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "onair-ingest-0",
                "onair-ingest-0",
                "onair-ingest-1",
                "onair-ingest-1"
            ]
        );
        release.send_replace(true);
        threads.stop();
    }

    #[tokio::test]
    async fn shared_spawns_on_the_callers_runtime() {
        let runtimes = IngestRuntimes::shared();
        assert_eq!(runtimes.threads(), 0);
        let ran = runtimes.spawn(|| async {}).await;
        assert!(ran.is_ok());
    }
}
