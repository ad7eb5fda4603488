//! Outcomes go to the control plane in batches, off the request path. The
//! request path only does a non-blocking `try_send`; a bounded queue holds
//! outcomes while the control plane is unreachable, and a counter tracks any
//! dropped above the bound.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use keel::pb;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tokio::sync::mpsc;

use crate::{metrics::Metrics, route::RouteClient};

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
    /// Measures each outcome before it is queued; counts drops.
    pub metrics: Arc<Metrics>,
}

impl Reporter {
    /// Queues an outcome without waiting.
    pub fn send(&self, outcome: pb::Outcome) {
        if self.tx.try_send(outcome).is_err() {
            self.metrics.reports_dropped.inc();
        }
    }
}

/// A [`Reporter`] that does not keep the delivery task alive: for the
/// route client, which that task itself holds.
#[derive(Clone)]
pub struct WeakReporter {
    tx: mpsc::WeakSender<pb::Outcome>,
    metrics: Arc<Metrics>,
}

impl Reporter {
    /// A handle that stops delivering once every [`Reporter`] is gone.
    pub fn downgrade(&self) -> WeakReporter {
        WeakReporter {
            tx: self.tx.downgrade(),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

impl WeakReporter {
    /// Queues an outcome without waiting, while the reporter lives.
    pub fn send(&self, outcome: pb::Outcome) {
        if let Some(tx) = self.tx.upgrade()
            && tx.try_send(outcome).is_err()
        {
            self.metrics.reports_dropped.inc();
        }
    }
}

/// Creates the reporter and the task that delivers its outcomes; the task
/// ends (after a last delivery attempt) when every [`Reporter`] is dropped.
pub fn reporter(
    client: Arc<RouteClient>,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> (Reporter, impl std::future::Future<Output = ()>) {
    let (tx, rx) = mpsc::channel(capacity);
    let queue = Queue {
        items: VecDeque::new(),
        capacity,
        dropped: metrics.reports_dropped.clone(),
        depth: metrics.report_queue.clone(),
    };
    let task = deliver(client, rx, queue);
    (Reporter { tx, metrics }, task)
}

/// A reporter whose outcomes a test reads back.
#[cfg(test)]
pub(crate) fn capture(capacity: usize) -> (Reporter, mpsc::Receiver<pb::Outcome>) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        Reporter {
            tx,
            metrics: Default::default(),
        },
        rx,
    )
}

async fn deliver(client: Arc<RouteClient>, mut rx: mpsc::Receiver<pb::Outcome>, mut queue: Queue) {
    let mut backoff = Duration::from_millis(200);
    let mut closed = false;
    loop {
        if queue.items.is_empty() {
            if closed {
                return;
            }
            match rx.recv().await {
                Some(o) => queue.push(o),
                None => return,
            }
            closed = !queue.gather(&mut rx, LINGER, BATCH).await;
        }
        // Take whatever else is waiting, up to the queue bound.
        while let Ok(o) = rx.try_recv() {
            queue.push(o);
        }
        let n = queue.items.len().min(BATCH);
        let batch = pb::ReportBatch {
            outcomes: queue.items.iter().take(n).cloned().collect(),
        };
        match client.report(batch).await {
            Ok(_) => {
                queue.items.drain(..n);
                queue.depth.set(queue.items.len() as i64);
                backoff = Duration::from_millis(200);
            }
            Err(status) => {
                tracing::debug!(code = ?status.code(), queued = queue.items.len(), "report failed, will retry");
                if closed {
                    tracing::warn!(
                        lost = queue.items.len(),
                        "shutting down with undelivered reports"
                    );
                    return;
                }
                // Wait before retrying, but keep accepting new outcomes.
                closed = !queue.gather(&mut rx, backoff, usize::MAX).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Outcomes waiting for delivery, oldest first; above `capacity` the oldest
/// is dropped (and counted).
struct Queue {
    items: VecDeque<pb::Outcome>,
    capacity: usize,
    dropped: Counter,
    /// Outcomes held, for `/metrics`.
    depth: Gauge,
}

impl Queue {
    fn push(&mut self, o: pb::Outcome) {
        if self.items.len() >= self.capacity {
            self.items.pop_front();
            self.dropped.inc();
        }
        self.items.push_back(o);
        self.depth.set(self.items.len() as i64);
    }

    /// Queues what arrives for up to `wait`, or until `enough` are queued.
    /// False once every sender is gone.
    async fn gather(
        &mut self,
        rx: &mut mpsc::Receiver<pb::Outcome>,
        wait: Duration,
        enough: usize,
    ) -> bool {
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        while self.items.len() < enough {
            tokio::select! {
                _ = &mut deadline => break,
                o = rx.recv() => match o {
                    Some(o) => self.push(o),
                    None => return false,
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(id: &str) -> pb::Outcome {
        pb::Outcome {
            decision_id: id.into(),
            ..Default::default()
        }
    }

    fn queue(capacity: usize) -> Queue {
        Queue {
            items: VecDeque::new(),
            capacity,
            dropped: Counter::default(),
            depth: Gauge::default(),
        }
    }

    #[test]
    fn a_full_queue_drops_its_oldest_outcome_and_counts_it() {
        let mut q = queue(2);
        for id in ["a", "b", "c"] {
            q.push(outcome(id));
        }
        let ids: Vec<_> = q.items.iter().map(|o| o.decision_id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(q.dropped.get(), 1);
        assert_eq!(q.depth.get(), 2);
    }

    #[tokio::test]
    async fn gathering_stops_at_enough_and_tells_when_the_senders_are_gone() {
        let (tx, mut rx) = mpsc::channel(8);
        for id in ["a", "b", "c"] {
            tx.send(outcome(id)).await.unwrap();
        }
        let mut q = queue(8);
        // A long wait: returns as soon as two are queued, not after it.
        assert!(q.gather(&mut rx, Duration::from_secs(3600), 2).await);
        assert_eq!(q.items.len(), 2);
        drop(tx);
        assert!(!q.gather(&mut rx, Duration::from_secs(3600), 8).await);
        assert_eq!(q.items.len(), 3, "what was sent before the end is kept");
    }
}
