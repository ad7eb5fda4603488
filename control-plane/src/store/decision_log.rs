//! Decision records, written off the `Route` path: `Route` queues the record
//! on a bounded channel and one writer task applies the queue in batches.
//! Reports' results go through the same channel, so a result never overtakes
//! the record it completes.

use std::{future::Future, sync::Arc};

use tokio::sync::{mpsc, oneshot};

use super::{DecisionEntry, SessionKey, SessionStore, TurnResult};

/// Records queued before `Route` waits for the writer.
const QUEUE: usize = 8192;

/// Most records applied in one batch.
const BATCH: usize = 512;

enum Op {
    Record(SessionKey, DecisionEntry),
    Complete {
        key: SessionKey,
        turn: u32,
        decision_id: String,
        result: TurnResult,
    },
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
        let op = Op::Complete {
            key,
            turn,
            decision_id,
            result,
        };
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
    /// queued, and returns.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut stopping = false;
        let mut ops = Vec::with_capacity(BATCH);
        loop {
            let n = if stopping {
                self.rx.recv_many(&mut ops, BATCH).await
            } else {
                tokio::select! {
                    n = self.rx.recv_many(&mut ops, BATCH) => n,
                    () = &mut shutdown => {
                        // Refuse new records; drain what is queued.
                        self.rx.close();
                        stopping = true;
                        continue;
                    }
                }
            };
            if n == 0 {
                return;
            }
            let store = Arc::clone(&self.store);
            // sled may touch disk: keep the batch off the runtime's workers.
            ops = match tokio::task::spawn_blocking(move || {
                apply(&*store, &mut ops);
                ops
            })
            .await
            {
                Ok(ops) => ops,
                Err(e) => {
                    tracing::error!(error = %e, "decision writer batch failed");
                    Vec::with_capacity(BATCH)
                }
            };
        }
    }
}

/// Applies `ops` in order: records in one store batch, a result to a record
/// of the same batch in memory, each `Sync` after everything before it.
fn apply(store: &dyn SessionStore, ops: &mut Vec<Op>) {
    let mut records: Vec<(SessionKey, DecisionEntry)> = Vec::new();
    let mut synced = Vec::new();
    for op in ops.drain(..) {
        match op {
            Op::Record(key, entry) => records.push((key, entry)),
            Op::Complete {
                key,
                turn,
                decision_id,
                result,
            } => {
                let queued = records
                    .iter_mut()
                    .rev()
                    .find(|(k, e)| *k == key && e.turn == turn && e.decision_id == decision_id);
                match queued {
                    Some((_, entry)) => entry.result = Some(result),
                    None => {
                        if let Err(e) = store.complete_decision(&key, turn, &decision_id, &result) {
                            tracing::warn!(error = %e, "cannot complete decision record");
                        }
                    }
                }
            }
            Op::Sync(tx) => {
                write(store, &mut records);
                synced.push(tx);
            }
        }
    }
    write(store, &mut records);
    for tx in synced {
        let _ = tx.send(());
    }
}

fn write(store: &dyn SessionStore, records: &mut Vec<(SessionKey, DecisionEntry)>) {
    if records.is_empty() {
        return;
    }
    if let Err(e) = store.record_decisions(records) {
        tracing::warn!(error = %e, records = records.len(), "cannot record decisions");
    }
    records.clear();
}
