//! Conversations by tenant, profile and pinned model, newest first to the
//! minute: tree `activity_by_minute`, keyed by a field's tag, its value
//! (length first), then `!minute` (the minute of the last activity, in ms,
//! big-endian) and the session key; entries hold nothing (a row's summary
//! is the session's `activity` entry, found from its stored record).
//!
//! Part of the activity index (activity.rs). An entry moves only when its
//! minute or field values change, not on every write of its session: an
//! agent taking a turn every few seconds costs sled a write to `sessions`
//! and to `activity` per write pass, not six more here (measured: pinned
//! traffic 3.2k -> 7.4k requests/s with the entries moved on every write
//! vs not at all, 10k sessions). It goes with the session, and a store
//! from before this tree is indexed when opened (the older `activity_by`,
//! keyed by the exact millisecond, is dropped). A page filtered by one of
//! these fields reads only the entries of its value, so a match older than
//! any number of other conversations is on the first page; within a
//! minute, entries are in key order (each page is sorted by the exact
//! time).

use super::{StoreError, activity::ConversationSummary, codec};

pub const TENANT: u8 = b't';
pub const PROFILE: u8 = b'p';
pub const MODEL: u8 = b'm';

/// The equality filters of a listing that an index answers (the rest of a
/// filter is the caller's `keep`). A store lists by the most selective one
/// and checks the others with `keep`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListBy<'a> {
    pub tenant: Option<&'a str>,
    pub profile: Option<&'a str>,
    pub model: Option<&'a str>,
}

impl<'a> ListBy<'a> {
    /// The fields asked for, as (tag, value).
    pub fn fields(&self) -> impl Iterator<Item = (u8, &'a str)> + use<'a> {
        [
            (TENANT, self.tenant),
            (PROFILE, self.profile),
            (MODEL, self.model),
        ]
        .into_iter()
        .filter_map(|(tag, v)| Some((tag, v?)))
    }
}

/// Where a field value's entries start: tag, value length (u16, BE), value.
/// None for a value too long to index.
pub fn field_prefix(tag: u8, value: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(value.len()).ok()?;
    Some([&[tag][..], &len.to_be_bytes(), value].concat())
}

/// The length of the field prefix `key` starts with.
pub fn prefix_len(key: &[u8]) -> Option<usize> {
    let [_, a, b, ..] = *key else { return None };
    let n = 3 + usize::from(u16::from_be_bytes([a, b]));
    (key.len() >= n).then_some(n)
}

/// The tenant of a session key (`tenant\0id`).
pub fn tenant_of(session_key: &[u8]) -> &[u8] {
    session_key.split(|&b| b == 0).next().unwrap_or_default()
}

/// The granularity of the entries' time, in ms.
pub const MINUTE_MS: u64 = 60_000;

/// The tree's name; `OLD_TREE` is the one before it.
const TREE: &[u8] = b"activity_by_minute";
pub const OLD_TREE: &[u8] = b"activity_by";

/// The start of the minute of `at` (ms).
pub fn minute(at: u64) -> u64 {
    at - at % MINUTE_MS
}

/// The tree.
pub(super) struct ByField {
    tree: sled::Tree,
}

/// The index keys of a session with `summary`, active at `at` (in
/// `at`'s minute).
fn keys(session_key: &[u8], at: u64, s: &ConversationSummary) -> Vec<Vec<u8>> {
    let fields = [
        (TENANT, Some(tenant_of(session_key))),
        (PROFILE, Some(s.profile.as_bytes())),
        (MODEL, s.pinned_model.as_deref().map(str::as_bytes)),
    ];
    fields
        .into_iter()
        .filter_map(|(tag, v)| field_prefix(tag, v?))
        .map(|mut k| {
            k.extend_from_slice(&(!minute(at)).to_be_bytes());
            k.extend_from_slice(session_key);
            k
        })
        .collect()
}

impl ByField {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            tree: db.open_tree(TREE)?,
        })
    }

    /// Moves a session's entries from where its old summary (`old`:
    /// active at, summary) put them to `new` (active at `at`); nothing is
    /// written when they stay (same minute, same fields), which is most
    /// writes.
    pub fn moved(
        &self,
        session_key: &[u8],
        old: Option<(u64, &ConversationSummary)>,
        at: u64,
        new: &ConversationSummary,
    ) -> Result<(), StoreError> {
        let old = old.map_or_else(Vec::new, |(old_at, s)| keys(session_key, old_at, s));
        let new = keys(session_key, at, new);
        if old == new {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for k in old.iter().filter(|k| !new.contains(k)) {
            batch.remove(k.as_slice());
        }
        for k in new.iter().filter(|k| !old.contains(k)) {
            batch.insert(k.as_slice(), &[]);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Drops the entries of a removed session (`raw`: its last record).
    pub fn removed(&self, session_key: &[u8], raw: &[u8]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for k in old_keys(session_key, raw) {
            batch.remove(k);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Indexes every entry of `activity` when this tree is empty but it is
    /// not (a store from before this tree): once, at open.
    pub fn backfill(&self, activity: &sled::Tree) -> Result<usize, StoreError> {
        if !self.tree.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        let mut batch = sled::Batch::default();
        for entry in activity.iter() {
            let (k, v) = entry?;
            let Some((at, session_key)) = k.split_first_chunk::<8>() else {
                continue;
            };
            let Ok(summary) = serde_json::from_slice::<ConversationSummary>(&v) else {
                continue;
            };
            for k in keys(session_key, !u64::from_be_bytes(*at), &summary) {
                batch.insert(k, &[]);
            }
            n += 1;
            if n % 10_000 == 0 {
                self.tree.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(n)
    }

    /// The prefix of the most selective field of `by` (fewest entries,
    /// counted up to `most`); None when `by` names none.
    pub fn pick(&self, by: ListBy<'_>, most: usize) -> Option<Vec<u8>> {
        let mut prefixes: Vec<Vec<u8>> = by
            .fields()
            .filter_map(|(tag, value)| field_prefix(tag, value.as_bytes()))
            .collect();
        if prefixes.len() <= 1 {
            return prefixes.pop();
        }
        let mut best: Option<(usize, Vec<u8>)> = None;
        for prefix in prefixes {
            let cap = best.as_ref().map_or(most, |(n, _)| *n);
            let n = self.tree.scan_prefix(&prefix).keys().take(cap).count();
            if best.as_ref().is_none_or(|(m, _)| n < *m) {
                best = Some((n, prefix));
            }
        }
        best.map(|(_, p)| p)
    }

    /// Entries of one field value (`prefix`), newest minute first, after
    /// `cursor` (an entry key of the same value) when given: (entry key,
    /// minute of the last activity, session key).
    pub fn entries(
        &self,
        prefix: &[u8],
        cursor: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<(sled::IVec, u64, Vec<u8>), StoreError>> + use<> {
        let n = prefix.len();
        let range = match cursor.filter(|c| c.starts_with(prefix)) {
            Some(c) => self
                .tree
                .range::<&[u8], _>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded)),
            None => self.tree.range::<&[u8], _>(prefix..),
        };
        let prefix = prefix.to_vec();
        range
            .keys()
            .take_while(move |k| k.as_ref().map_or(true, |k| k.starts_with(&prefix)))
            .filter_map(move |k| {
                let k = match k {
                    Ok(k) => k,
                    Err(e) => return Some(Err(e.into())),
                };
                let (at, session_key) = k.get(n..)?.split_first_chunk::<8>()?;
                let (at, session_key) = (!u64::from_be_bytes(*at), session_key.to_vec());
                Some(Ok((k, at, session_key)))
            })
    }

    /// The tree, for tests.
    #[cfg(test)]
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }
}

/// The index keys of a session's stored record (none if unreadable).
fn old_keys(session_key: &[u8], raw: &[u8]) -> Vec<Vec<u8>> {
    match codec::decode_session(raw) {
        Ok(s) => keys(session_key, s.last_seen_ms, &ConversationSummary::of(&s)),
        Err(_) => Vec::new(),
    }
}
