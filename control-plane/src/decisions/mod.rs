//! The decision writer, a service on the session store. Decision records,
//! written off the `Route` path: `Route` queues the record
//! on a bounded channel and one writer task applies the queue in batches.
//! Reports' results go through the same channel, so a result never overtakes
//! the record it completes. A record is held in memory for a moment
//! (linger.rs) so that its result usually arrives first and the record is
//! written once, complete.

use std::{future::Future, sync::Arc};

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

mod linger;

use crate::store::{DecisionEntry, SessionKey, SessionStore, TurnResult};
use linger::{Completion, Unwritten};

/// Records queued before `Route` waits for the writer.
const QUEUE: usize = 8192;

/// Most records applied in one batch.
const BATCH: usize = 512;

enum Op {
    Record(SessionKey, DecisionEntry),
    Complete(Completion),
    /// Answered once everything queued before it is written.
    Sync(oneshot::Sender<()>),
}

/// The sending side, held by the router.
#[derive(Clone)]
pub struct DecisionLog {
    tx: mpsc::Sender<Op>,
}

/// The writer task's side; run it with [`DecisionWriter::run`].
pub struct DecisionWriter {
    store: Arc<dyn SessionStore>,
    rx: mpsc::Receiver<Op>,
}

impl DecisionLog {
    /// A log writing to `store`; nothing is written until the writer runs.
    pub fn new(store: Arc<dyn SessionStore>) -> (Self, DecisionWriter) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, DecisionWriter { store, rx })
    }

    /// Queues a decision for the conversation's timeline. Waits only when
    /// the writer is a full queue behind.
    pub async fn record(&self, key: SessionKey, entry: DecisionEntry) {
        if self.tx.send(Op::Record(key, entry)).await.is_err() {
            tracing::warn!("cannot record decision: the decision writer has stopped");
        }
    }

    /// Queues the reported result of the decision of `turn` with
    /// `decision_id`; dropped when no such decision is stored.
    pub async fn complete(
        &self,
        key: SessionKey,
        turn: u32,
        decision_id: String,
        result: TurnResult,
    ) {
        let op = Op::Complete(Completion {
            key,
            turn,
            decision_id,
            result,
        });
        if self.tx.send(op).await.is_err() {
            tracing::warn!("cannot complete decision: the decision writer has stopped");
        }
    }

    /// Returns once everything queued so far is in the store (readable, not
    /// necessarily durable).
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Op::Sync(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

impl DecisionWriter {
    /// Writes queued records until `shutdown` resolves, then what is still
    /// queued or held, and returns.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut stopping = false;
        let mut ops = Vec::with_capacity(BATCH);
        let mut unwritten = Unwritten::default();
        loop {
            let wake = unwritten.next_wake();
            // `None`: something held or waiting is due.
            let n = tokio::select! {
                n = self.rx.recv_many(&mut ops, BATCH) => Some(n),
                () = &mut shutdown, if !stopping => {
                    // Refuse new records; drain what is queued.
                    self.rx.close();
                    stopping = true;
                    continue;
                }
                () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => None,
            };
            let now = Instant::now();
            let mut synced = Vec::new();
            for op in ops.drain(..) {
                match op {
                    Op::Record(key, entry) => unwritten.record(key, entry, now),
                    Op::Complete(c) => unwritten.complete(c, now),
                    Op::Sync(tx) => {
                        unwritten.release_all(now);
                        synced.push(tx);
                    }
                }
            }
            // Closed and drained: everything goes now.
            let last = n == Some(0);
            if last {
                unwritten.release_all(now);
            }
            if last || !synced.is_empty() || unwritten.write_due(now, BATCH) {
                // In the order they became ready: the log appends them to
                // segments keyed by number, so no order helps sled here.
                let (records, completions) = unwritten.take();
                let store = Arc::clone(&self.store);
                // sled may touch disk: keep the writes off the runtime's workers.
                if let Err(e) =
                    tokio::task::spawn_blocking(move || write(&*store, &records, &completions))
                        .await
                {
                    tracing::error!(error = %e, "decision writer batch failed");
                }
            }
            for tx in synced {
                let _ = tx.send(());
            }
            if last {
                debug_assert!(unwritten.is_empty());
                return;
            }
        }
    }
}

/// Writes `records`, then completes records written before.
fn write(
    store: &dyn SessionStore,
    records: &[(SessionKey, DecisionEntry)],
    completions: &[Completion],
) {
    if !records.is_empty()
        && let Err(e) = store.record_decisions(records)
    {
        tracing::warn!(error = %e, records = records.len(), "cannot record decisions");
    }
    for c in completions {
        if let Err(e) = store.complete_decision(&c.key, c.turn, &c.decision_id, &c.result) {
            tracing::warn!(error = %e, "cannot complete decision record");
        }
    }
}
