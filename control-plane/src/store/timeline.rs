//! Decision records in a log of segments, so that sled holds few keys for
//! them (its memory grows with its number of keys, not with their size).
//! Records are appended in arrival order to the open segment; a segment
//! holds up to [`SEGMENT_RECORDS`] and is one key of the `decision_log`
//! tree (its number, big endian). A full segment is written at once; the
//! open one with the sessions' write pass, before them.
//!
//! A conversation's records are chained: its session holds the segment of
//! its latest record (the *head*), each record the segment of the record
//! before it, so a timeline is read by walking back from the head. A new
//! head reaches the session only once its segment is written (until then
//! it waits in `Log::heads`), so sled never holds a head without its
//! segment.
//!
//! Retention: the sweep drops a segment once its newest record is older
//! than the session TTL, so a timeline holds the decisions of the last TTL
//! (the newest [`TIMELINE_MAX`] of them are returned); removing a session
//! removes its records from the segments still held.
//!
//! Locks: `append` (one append or log write at a time, so the heads read
//! are the heads replaced), then a session's shard lock, then `open` or
//! `heads`; neither of these two is held while taking a shard lock, since
//! the sweep removes a session's records under its shard lock.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

use super::{
    DecisionEntry, SessionKey, StoreError, TurnResult,
    segment::{Record, Segment, decode, encode, newest_ms, seq_of},
    sessions::{Sessions, Ttl},
};

/// Records per segment (about 1 KB). sled keeps a leaf's values together
/// and rewrites the whole leaf (up to 17 keys), so the memory its writes
/// hold grows with the segment: with one conversation taking ~15k turns a
/// second the control plane peaked at ~170 MB with 64 records, ~80 MB with
/// 16, ~53 MB with 8 and ~38 MB with 4 (10k sessions stored; with 1M, 96 ->
/// 66 MB from 16 to 4), for ~10% more control-plane CPU per decision than
/// with 16.
pub(super) const SEGMENT_RECORDS: usize = 4;

/// Most records a timeline returns (the newest).
pub const TIMELINE_MAX: usize = 256;

/// Segments searched back from the head for a record to complete (with
/// many turns of one conversation in flight, its newest ~128 records).
const COMPLETE_HOPS: usize = 32;

struct Open {
    seq: u64,
    segment: Segment,
    /// Changed since last written.
    dirty: bool,
}

/// The `decision_log` tree and its open segment. The heads it reads and
/// leaves are the sessions' (`Sessions::decision_head`).
pub(super) struct Log {
    tree: sled::Tree,
    open: Mutex<Open>,
    append: Mutex<()>,
    /// Heads of records not yet written, by session key.
    heads: Mutex<HashMap<Vec<u8>, u64>>,
    ttl: Ttl,
}

impl Log {
    pub fn open(db: &sled::Db, ttl: Ttl) -> Result<Self, StoreError> {
        let tree = db.open_tree("decision_log")?;
        // Segment numbers start at 1 (0 is "none") and are never reused.
        let seq = match tree.last()? {
            Some((k, _)) => seq_of(&k)? + 1,
            None => 1,
        };
        Ok(Self {
            tree,
            open: Mutex::new(Open {
                seq,
                segment: Segment::default(),
                dirty: false,
            }),
            append: Mutex::new(()),
            heads: Mutex::new(HashMap::new()),
            ttl,
        })
    }

    fn heads(&self) -> MutexGuard<'_, HashMap<Vec<u8>, u64>> {
        self.heads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append_lock(&self) -> MutexGuard<'_, ()> {
        self.append.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the open segment if it changed.
    fn write_open(&self) -> Result<bool, StoreError> {
        let mut open = self.lock();
        if !open.dirty {
            return Ok(false);
        }
        self.tree
            .insert(open.seq.to_be_bytes(), encode(&open.segment))?;
        open.dirty = false;
        Ok(true)
    }

    /// Changes the conversation's records in segment `seq` with `f` (which
    /// says whether it changed any); returns the segment to walk to next
    /// (0: the chain ends there, or the segment was dropped).
    fn visit(
        &self,
        key: &[u8],
        seq: u64,
        f: &mut dyn FnMut(&mut Vec<Record>) -> bool,
    ) -> Result<u64, StoreError> {
        let mut open = self.lock();
        if seq == open.seq {
            let next = before(&open.segment, key, seq);
            if f(&mut open.segment.records) {
                open.dirty = true;
            }
            return Ok(next);
        }
        let Some(raw) = self.tree.get(seq.to_be_bytes())? else {
            return Ok(0);
        };
        let mut segment = decode(&raw)?;
        let next = before(&segment, key, seq);
        if f(&mut segment.records) {
            if segment.records.is_empty() {
                self.tree.remove(seq.to_be_bytes())?;
            } else {
                self.tree.insert(seq.to_be_bytes(), encode(&segment))?;
            }
        }
        Ok(next)
    }
}

/// Adds `result` to the conversation's record of `turn` with
/// `decision_id` among `records`; whether there was one.
fn complete_in(
    records: &mut [Record],
    key: &[u8],
    turn: u32,
    decision_id: &str,
    result: &TurnResult,
) -> Result<bool, StoreError> {
    for r in records.iter_mut().filter(|r| r.key == key) {
        let mut entry: DecisionEntry = serde_json::from_slice(&r.entry)?;
        if entry.turn == turn && entry.decision_id == decision_id {
            entry.result = Some(result.clone());
            r.entry = serde_json::to_vec(&entry)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Where the conversation's chain goes after segment `seq`: the newest
/// earlier segment its records there point at.
fn before(segment: &Segment, key: &[u8], seq: u64) -> u64 {
    segment
        .records
        .iter()
        .filter(|r| r.key == key && r.prev < seq)
        .map(|r| r.prev)
        .max()
        .unwrap_or(0)
}

impl Log {
    /// The conversation's head: None when it has no session, 0 when it has
    /// no record.
    fn head(&self, key: &[u8], sessions: &Sessions) -> Result<Option<u64>, StoreError> {
        if let Some(&head) = self.heads().get(key) {
            return Ok(Some(head));
        }
        Ok(sessions.decision_head(key)?.map(|h| h.unwrap_or(0)))
    }

    /// Writes the open segment, then hands the heads of what is written to
    /// the sessions (the write pass that follows writes them); whether
    /// anything was written.
    pub fn write(&self, sessions: &Sessions) -> Result<bool, StoreError> {
        let _append = self.append_lock();
        let written = self.write_open()?;
        let heads = std::mem::take(&mut *self.heads());
        for (key, head) in heads {
            sessions.set_decision_head(&key, head)?;
        }
        Ok(written)
    }

    /// Appends records; those of conversations without a session are
    /// dropped.
    pub fn append(
        &self,
        entries: &[(SessionKey, DecisionEntry)],
        sessions: &Sessions,
    ) -> Result<(), StoreError> {
        let _append = self.append_lock();
        // Read before taking `open`: see the lock order above.
        let mut heads: HashMap<&[u8], Option<u64>> = HashMap::new();
        for (key, _) in entries {
            let key = key.as_bytes();
            if !heads.contains_key(key) {
                heads.insert(key, self.head(key, sessions)?);
            }
        }
        {
            let mut open = self.lock();
            for (key, entry) in entries {
                let Some(Some(head)) = heads.get_mut(key.as_bytes()) else {
                    tracing::debug!("decision record for a conversation without a session dropped");
                    continue;
                };
                if open.segment.records.len() >= SEGMENT_RECORDS {
                    let full = std::mem::take(&mut open.segment);
                    self.tree.insert(open.seq.to_be_bytes(), encode(&full))?;
                    open.seq += 1;
                    open.dirty = false;
                }
                open.segment.newest_ms = open.segment.newest_ms.max(entry.at_ms);
                open.segment.records.push(Record {
                    key: key.as_bytes().to_vec(),
                    prev: *head,
                    entry: serde_json::to_vec(entry)?,
                });
                open.dirty = true;
                *head = open.seq;
            }
        }
        let mut pending = self.heads();
        for (key, head) in heads {
            if let Some(head) = head.filter(|&h| h != 0) {
                pending.insert(key.to_vec(), head);
            }
        }
        Ok(())
    }

    /// The conversation's newest [`TIMELINE_MAX`] records, oldest first
    /// (by turn, then decision id).
    pub fn timeline(
        &self,
        key: &[u8],
        sessions: &Sessions,
    ) -> Result<Vec<DecisionEntry>, StoreError> {
        let mut seq = self.head(key, sessions)?.unwrap_or(0);
        let mut raw = Vec::new();
        while seq != 0 && raw.len() < TIMELINE_MAX {
            seq = self.visit(key, seq, &mut |records| {
                // Newest first, reversed at the end.
                raw.extend(
                    records
                        .iter()
                        .rev()
                        .filter(|r| r.key == key)
                        .map(|r| r.entry.clone()),
                );
                false
            })?;
        }
        raw.truncate(TIMELINE_MAX);
        let mut out = raw
            .iter()
            .rev()
            .map(|e| serde_json::from_slice(e))
            .collect::<Result<Vec<DecisionEntry>, _>>()?;
        out.sort_by(|a, b| (a.turn, &a.decision_id).cmp(&(b.turn, &b.decision_id)));
        Ok(out)
    }

    /// Adds `result` to the conversation's record of `turn` with
    /// `decision_id`, searched among its newest segments.
    pub fn complete(
        &self,
        key: &[u8],
        turn: u32,
        decision_id: &str,
        result: &TurnResult,
        sessions: &Sessions,
    ) -> Result<bool, StoreError> {
        let mut seq = self.head(key, sessions)?.unwrap_or(0);
        let mut done = Ok(false);
        for _ in 0..COMPLETE_HOPS {
            if seq == 0 || !matches!(done, Ok(false)) {
                break;
            }
            seq = self.visit(key, seq, &mut |records| {
                done = complete_in(records, key, turn, decision_id, result);
                matches!(done, Ok(true))
            })?;
        }
        done
    }

    /// Removes the conversation's records (its session is being removed,
    /// and `stored` is the head its last record names), walking back from
    /// its head.
    pub fn remove(&self, key: &[u8], stored: Option<u64>) -> Result<(), StoreError> {
        let pending = self.heads().remove(key);
        let mut seq = pending.or(stored).unwrap_or(0);
        while seq != 0 {
            seq = self.visit(key, seq, &mut |records| {
                let n = records.len();
                records.retain(|r| r.key != key);
                records.len() != n
            })?;
        }
        Ok(())
    }

    /// Drops the closed segments whose newest record is older than the
    /// TTL, oldest first; at most `most`. Returns how many.
    pub fn age_out(&self, now_ms: u64, most: usize) -> Result<usize, StoreError> {
        let open = self.lock();
        let mut dropped = 0;
        for entry in self.tree.iter().take(most) {
            let (k, raw) = entry?;
            // An unreadable segment goes too: nothing can read it.
            let newest = newest_ms(&raw).unwrap_or(0);
            if seq_of(&k)? >= open.seq || self.ttl.is_live(newest, now_ms) {
                break;
            }
            self.tree.remove(k)?;
            dropped += 1;
        }
        Ok(dropped)
    }

    /// Segments stored, for tests.
    #[cfg(test)]
    pub fn segments(&self) -> usize {
        self.tree.len()
    }

    /// Records held, stored and open, for tests of removal.
    #[cfg(test)]
    pub fn records_held(&self) -> usize {
        let open = self.lock();
        let stored: usize = self
            .tree
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| seq_of(k).is_ok_and(|s| s != open.seq))
            .map(|(_, v)| decode(&v).map_or(0, |s| s.records.len()))
            .sum();
        stored + open.segment.records.len()
    }
}

#[cfg(test)]
pub(super) fn segments(store: &super::SledStore) -> usize {
    store.log().segments()
}

/// Records held, stored and open, for tests of removal.
#[cfg(test)]
pub(super) fn records_held(store: &super::SledStore) -> usize {
    store.log().records_held()
}
