//! Outcomes go to the control plane in batches, off the request path. The
//! request path only does a non-blocking `try_send`; a bounded queue holds
//! outcomes while the control plane is unreachable, and a counter tracks any
//! dropped above the bound.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use keel::pb;
use tokio::sync::mpsc;

use crate::route::RouteClient;

/// Most outcomes sent in one `Report` call.
const BATCH: usize = 256;

/// How long the first outcome of a batch waits for others to join it. Under
/// load this turns thousands of one-outcome `Report` calls a second into a
/// few hundred full ones (each call costs the control plane an HTTP/2
/// stream); signals and spend learn of a turn at most this much later.
const LINGER: Duration = Duration::from_millis(5);

/// Handle used by the request path.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<pb::Outcome>,
    dropped: Arc<AtomicU64>,
}

impl Reporter {
    /// Queues an outcome without waiting.
    pub fn send(&self, outcome: pb::Outcome) {
        if self.tx.try_send(outcome).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Outcomes dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Creates the reporter and the task that delivers its outcomes; the task
/// ends (after a last delivery attempt) when every [`Reporter`] is dropped.
pub fn reporter(
    client: Arc<RouteClient>,
    capacity: usize,
) -> (Reporter, impl std::future::Future<Output = ()>) {
    let (tx, rx) = mpsc::channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    let task = deliver(client, rx, capacity, Arc::clone(&dropped));
    (Reporter { tx, dropped }, task)
}

/// A reporter whose outcomes a test reads back.
#[cfg(test)]
pub(crate) fn capture(capacity: usize) -> (Reporter, mpsc::Receiver<pb::Outcome>) {
    let (tx, rx) = mpsc::channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    (Reporter { tx, dropped }, rx)
}

async fn deliver(
    client: Arc<RouteClient>,
    mut rx: mpsc::Receiver<pb::Outcome>,
    capacity: usize,
    dropped: Arc<AtomicU64>,
) {
    let mut pending: VecDeque<pb::Outcome> = VecDeque::new();
    let mut backoff = Duration::from_millis(200);
    let mut closed = false;
    loop {
        if pending.is_empty() {
            if closed {
                return;
            }
            match rx.recv().await {
                Some(o) => pending.push_back(o),
                None => return,
            }
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            while pending.len() < BATCH {
                tokio::select! {
                    _ = &mut linger => break,
                    o = rx.recv() => match o {
                        Some(o) => pending.push_back(o),
                        None => { closed = true; break; }
                    }
                }
            }
        }
        // Take whatever else is waiting, up to the queue bound.
        while let Ok(o) = rx.try_recv() {
            if pending.len() >= capacity {
                pending.pop_front();
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            pending.push_back(o);
        }
        let n = pending.len().min(BATCH);
        let batch = pb::ReportBatch {
            outcomes: pending.iter().take(n).cloned().collect(),
        };
        match client.report(batch).await {
            Ok(_) => {
                pending.drain(..n);
                backoff = Duration::from_millis(200);
            }
            Err(status) => {
                tracing::debug!(code = ?status.code(), queued = pending.len(), "report failed, will retry");
                if closed {
                    tracing::warn!(
                        lost = pending.len(),
                        "shutting down with undelivered reports"
                    );
                    return;
                }
                // Wait before retrying, but keep accepting new outcomes.
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        o = rx.recv() => match o {
                            Some(o) => {
                                if pending.len() >= capacity {
                                    pending.pop_front();
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                }
                                pending.push_back(o);
                            }
                            None => { closed = true; break; }
                        }
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
