//! Conversations by last activity, newest first, for the console: tree
//! `activity`, keyed by `!last_seen_ms` (big-endian, so newer sorts first)
//! followed by the session key, holding a small summary of the session.
//!
//! Part of the sessions (sessions.rs), kept by every write of their tree
//! (a session written to sled moves its entry: the old one is found from
//! the record it replaces, so there is no reverse map) and by removal. A
//! page reads index entries from a cursor and never a session, so listing
//! costs the page, not the store. A page filtered by tenant, profile or
//! pinned model reads the entries of that value only (activity_by.rs);
//! other filters read at most [`MAX_SCAN`] entries per page and hand back
//! where they stopped. A store from before the index is indexed when
//! opened.

use std::{collections::HashSet, sync::Mutex};

use serde::{Deserialize, Serialize};

use super::{
    Session, StoreError,
    activity_by::{ByField, ListBy, MINUTE_MS, MODEL, PROFILE, TENANT, minute, prefix_len},
    codec,
    sessions::Ttl,
};

/// Most conversations marked degraded while their session waits for its
/// next write; past this, marks are dropped.
const MAX_PENDING_MARKS: usize = 100_000;

/// The index tree and the degraded marks not yet in it.
pub(super) struct Activity {
    tree: sled::Tree,
    /// The sessions' tree: a filtered page finds an entry's exact time in
    /// the session's stored record.
    sessions: sled::Tree,
    /// The same entries by tenant, profile and pinned model.
    by: ByField,
    /// Session keys with a degraded turn whose entry has not been rewritten
    /// since (the mark joins the entry on the session's next write).
    degraded: Mutex<HashSet<Vec<u8>>>,
    ttl: Ttl,
}

impl Activity {
    pub fn open(db: &sled::Db, sessions: sled::Tree, ttl: Ttl) -> Result<Self, StoreError> {
        Ok(Self {
            tree: db.open_tree("activity")?,
            sessions,
            by: ByField::open(db)?,
            degraded: Mutex::default(),
            ttl,
        })
    }

    /// Marks the conversation as served degraded (without the control
    /// plane) at least once.
    pub fn mark_degraded(&self, key: &[u8]) {
        let mut pending = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() < MAX_PENDING_MARKS {
            pending.insert(key.to_vec());
        }
    }

    fn take_mark(&self, key: &[u8]) -> bool {
        self.degraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
    }
}

/// Most index entries one page reads while filtering.
pub const MAX_SCAN: usize = 20_000;

/// What the conversation list shows of a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    #[serde(skip)]
    pub tenant: String,
    #[serde(skip)]
    pub conversation_id: String,
    #[serde(rename = "p")]
    pub profile: String,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub pinned_model: Option<String>,
    #[serde(rename = "t")]
    pub turns: u32,
    #[serde(rename = "s")]
    pub spend_usd: f64,
    #[serde(rename = "n", default)]
    pub nudges: u32,
    #[serde(rename = "c")]
    pub created_ms: u64,
    #[serde(skip)]
    pub last_seen_ms: u64,
    /// The conversation's own run-time caps (USD, turns), if any.
    #[serde(rename = "bu", default, skip_serializing_if = "Option::is_none")]
    pub cap_usd: Option<f64>,
    #[serde(rename = "bt", default, skip_serializing_if = "Option::is_none")]
    pub cap_turns: Option<u32>,
    /// A sidecar served at least one turn without the control plane.
    #[serde(rename = "d", default, skip_serializing_if = "std::ops::Not::not")]
    pub degraded: bool,
}

impl ConversationSummary {
    pub(super) fn of(s: &Session) -> Self {
        Self {
            profile: s.profile.clone(),
            pinned_model: s.pinned_model.clone(),
            turns: s.turns,
            spend_usd: s.spend_usd,
            nudges: s.divergence.nudges,
            created_ms: s.created_ms,
            last_seen_ms: s.last_seen_ms,
            cap_usd: s.budget.per_conversation_usd,
            cap_turns: s.budget.per_conversation_turns,
            ..Self::default()
        }
    }
}

/// One page of the list.
#[derive(Debug, Default)]
pub struct ConversationPage {
    pub items: Vec<ConversationSummary>,
    /// Where the next page starts (opaque); None at the end.
    pub next: Option<Vec<u8>>,
}

/// One index entry read for a page.
struct Entry {
    /// Its position (a cursor).
    k: sled::IVec,
    /// The newest its session's last activity can be (an entry by field
    /// knows the minute only).
    newest: u64,
    session_key: Vec<u8>,
    /// The exact last activity and the summary; None when the session
    /// moved or went since.
    summary: Option<(u64, sled::IVec)>,
}

fn index_key(last_seen_ms: u64, session_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + session_key.len());
    k.extend_from_slice(&(!last_seen_ms).to_be_bytes());
    k.extend_from_slice(session_key);
    k
}

impl Activity {
    /// Moves the session's entry after its record `new` replaced `old`
    /// (rewrites it in place when the time stayed), and its entries by
    /// field, found from the old entry's summary.
    pub fn written(&self, key: &[u8], old: Option<&[u8]>, new: &[u8]) -> Result<(), StoreError> {
        let session = codec::decode_session(new)?;
        let mut summary = ConversationSummary::of(&session);
        let old_at = old.and_then(|raw| codec::last_seen_ms(raw).ok());
        let new_key = index_key(session.last_seen_ms, key);
        let old_entry = match old_at {
            Some(at) if at == session.last_seen_ms => self.tree.get(&new_key)?,
            Some(at) => self.tree.remove(index_key(at, key))?,
            None => None,
        };
        let old_summary =
            match old_entry.and_then(|v| serde_json::from_slice::<ConversationSummary>(&v).ok()) {
                Some(s) => Some(s),
                // No entry to read it from (an index out of step with its
                // sessions): the old record says where its entries are.
                None => old
                    .and_then(|raw| codec::decode_session(raw).ok())
                    .map(|s| ConversationSummary::of(&s)),
            };
        // Marks stay with the conversation as its entry moves.
        summary.degraded = self.take_mark(key) || old_summary.as_ref().is_some_and(|s| s.degraded);
        self.tree.insert(new_key, serde_json::to_vec(&summary)?)?;
        let old = old_at.zip(old_summary.as_ref());
        self.by.moved(key, old, session.last_seen_ms, &summary)
    }

    /// Indexes every session of `sessions` when the index is empty but
    /// sessions are not (a store from before the index), and the index by
    /// field when only it is empty: once, at open.
    pub fn backfill(&self, sessions: &sled::Tree) -> Result<usize, StoreError> {
        if !self.tree.is_empty() {
            return self.by.backfill(&self.tree);
        }
        let mut n = 0;
        for entry in sessions.iter() {
            let (key, raw) = entry?;
            // An unreadable record is left to the sweep.
            if self.written(&key, None, &raw).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Drops the entry of a removed session (`raw`: its last record).
    pub fn removed(&self, key: &[u8], raw: &[u8]) -> Result<(), StoreError> {
        if let Ok(at) = codec::last_seen_ms(raw) {
            self.tree.remove(index_key(at, key))?;
        }
        self.by.removed(key, raw)
    }

    /// Live conversations, most recently active first, that `keep`
    /// accepts: up to `limit` from `cursor` (a page's `next`). With fields
    /// in `by`, from the entries of the most selective one (a cursor
    /// starting with a field tag goes on in that field's entries; one of
    /// `activity` starts with `!last_seen_ms`, 0xff for any real time).
    pub fn list(
        &self,
        by: ListBy<'_>,
        keep: &dyn Fn(&ConversationSummary) -> bool,
        cursor: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<ConversationPage, StoreError> {
        let field = match cursor {
            Some(c) if matches!(c.first(), Some(&(TENANT | PROFILE | MODEL))) => {
                prefix_len(c).map(|n| c[..n].to_vec())
            }
            _ => self.by.pick(by, MAX_SCAN),
        };
        let Some(prefix) = field else {
            let entries = self.all(cursor).map(|e| {
                let (k, v) = e?;
                let (at, session_key) = k.split_first_chunk::<8>().unwrap_or((&[0; 8], &[]));
                let (at, session_key) = (!u64::from_be_bytes(*at), session_key.to_vec());
                Ok(Entry {
                    newest: at,
                    summary: Some((at, v)),
                    k,
                    session_key,
                })
            });
            return self.page(entries, keep, limit, now_ms);
        };
        let entries = self.by.entries(&prefix, cursor).map(|e| {
            let (k, at_minute, session_key) = e?;
            // An entry left at another minute (a write cut short between
            // the session and its entries) is not the session's.
            let summary = self
                .summary_of(&session_key)?
                .filter(|(at, _)| minute(*at) == at_minute);
            Ok(Entry {
                newest: at_minute + (MINUTE_MS - 1),
                summary,
                k,
                session_key,
            })
        });
        self.page(entries, keep, limit, now_ms)
    }

    /// A session's exact last activity (from its stored record) and its
    /// `activity` entry; None when either is gone.
    fn summary_of(&self, session_key: &[u8]) -> Result<Option<(u64, sled::IVec)>, StoreError> {
        let Some(raw) = self.sessions.get(session_key)? else {
            return Ok(None);
        };
        let Ok(at) = codec::last_seen_ms(&raw) else {
            return Ok(None);
        };
        Ok(self.tree.get(index_key(at, session_key))?.map(|v| (at, v)))
    }

    /// Every entry after `cursor`, newest first.
    fn all(&self, cursor: Option<&[u8]>) -> sled::Iter {
        match cursor {
            Some(c) => self
                .tree
                .range::<&[u8], _>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded)),
            None => self.tree.iter(),
        }
    }

    /// A page of what `keep` accepts among `entries`, reading at most
    /// [`MAX_SCAN`]; sorted newest first.
    fn page(
        &self,
        entries: impl Iterator<Item = Result<Entry, StoreError>>,
        keep: &dyn Fn(&ConversationSummary) -> bool,
        limit: usize,
        now_ms: u64,
    ) -> Result<ConversationPage, StoreError> {
        let mut page = ConversationPage::default();
        let mut last: Option<sled::IVec> = None;
        for (scanned, entry) in entries.enumerate() {
            let Entry {
                k,
                newest,
                session_key,
                summary,
            } = entry?;
            if scanned >= MAX_SCAN || page.items.len() >= limit {
                // Goes on after the last entry read.
                page.next = last.map(|k| k.to_vec());
                break;
            }
            last = Some(k);
            // Newest first: past the first idle one, all are idle.
            if !self.ttl.is_live(newest, now_ms) {
                break;
            }
            let Some((last_seen_ms, v)) = summary.filter(|(at, _)| self.ttl.is_live(*at, now_ms))
            else {
                continue;
            };
            let mut summary: ConversationSummary = serde_json::from_slice(&v)?;
            let mut parts = session_key.splitn(2, |b| *b == 0);
            summary.tenant = String::from_utf8_lossy(parts.next().unwrap_or_default()).into();
            summary.conversation_id =
                String::from_utf8_lossy(parts.next().unwrap_or_default()).into();
            summary.last_seen_ms = last_seen_ms;
            if keep(&summary) {
                page.items.push(summary);
            }
        }
        // Entries of one minute of a field come in key order.
        page.items
            .sort_by(|a, b| b.last_seen_ms.cmp(&a.last_seen_ms));
        Ok(page)
    }

    /// The index tree, for tests.
    #[cfg(test)]
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// The index tree by field, for tests.
    #[cfg(test)]
    pub fn by_tree(&self) -> &sled::Tree {
        self.by.tree()
    }
}
