//! Stores of earlier versions, brought up to date on open: the `expiry`
//! index (the sweep no longer needs it) is dropped, and the `decisions`
//! tree (one key per record) is moved into the decision log, in key order,
//! so each conversation's records keep their order.
//!
//! Both trees are emptied a batch at a time before they are dropped:
//! sled's `drop_tree` reads every page of a tree under one epoch guard, so
//! nothing it reads is freed before it returns (+300 MB measured for 1M
//! keys). A crash part way appends the batch being moved again on the
//! next open: records are written before they are removed.

use sled::IVec;

use super::{SessionKey, StoreError, sessions::Sessions, timeline::Log};

const OLD_EXPIRY_TREE: &[u8] = b"expiry";
const OLD_DECISIONS_TREE: &[u8] = b"decisions";

/// Entries handled (and removed) at a time.
const BATCH: usize = 512;

/// Brings the store in `db` up to date; records of the old `decisions`
/// tree go to `log`, chained through `sessions`.
pub(super) fn upgrade(db: &sled::Db, log: &Log, sessions: &Sessions) -> Result<(), StoreError> {
    let dropped = drain(db, OLD_EXPIRY_TREE, |_| Ok(()))?;
    if dropped > 0 {
        tracing::info!(
            entries = dropped,
            "dropped the expiry index of an earlier version"
        );
    }
    let dropped = drain(db, super::activity_by::OLD_TREE, |_| Ok(()))?;
    if dropped > 0 {
        tracing::info!(
            entries = dropped,
            "dropped the index by field of an earlier version (now by minute)"
        );
    }
    let moved = drain(db, OLD_DECISIONS_TREE, |batch| {
        let records: Vec<_> = batch.iter().filter_map(|(k, v)| old_record(k, v)).collect();
        log.append(&records, sessions)
    })?;
    if moved > 0 {
        tracing::info!(
            records = moved,
            "moved decision records into the decision log"
        );
    }
    Ok(())
}

/// A record of the `decisions` tree: key = session key, `0xFF`, turn,
/// decision id (`0xFF` never occurs in UTF-8); value = JSON.
fn old_record(k: &[u8], v: &[u8]) -> Option<(SessionKey, super::DecisionEntry)> {
    let end = k.iter().position(|&b| b == 0xFF)?;
    match serde_json::from_slice(v) {
        Ok(entry) => Some((SessionKey(k[..end].to_vec()), entry)),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable decision record left behind");
            None
        }
    }
}

/// Empties tree `name`, if there is one, a batch at a time (each handed to
/// `f` before it is removed), then drops it; returns how many entries it
/// held.
fn drain(
    db: &sled::Db,
    name: &[u8],
    mut f: impl FnMut(&[(IVec, IVec)]) -> Result<(), StoreError>,
) -> Result<usize, StoreError> {
    if !db.tree_names().iter().any(|n| n == name) {
        return Ok(0);
    }
    let tree = db.open_tree(name)?;
    let mut n = 0;
    loop {
        let batch = tree.iter().take(BATCH).collect::<Result<Vec<_>, _>>()?;
        if batch.is_empty() {
            break;
        }
        f(&batch)?;
        for (k, _) in &batch {
            tree.remove(k)?;
        }
        n += batch.len();
    }
    drop(tree);
    db.drop_tree(name)?;
    Ok(n)
}
