//! The console's conversation list on Redis: the index across tenants
//! (`keel:a`, kept by the session write's compare-and-set script) read
//! newest first, a batch at a time, each batch's sessions fetched in one
//! pipeline and summarised as sled summarises them.
//!
//! With a tenant, profile or model to filter by, a page reads that field's
//! index instead (the tenant's `keel:a:{tenant}`, `keel:ap:{profile}`,
//! `keel:am:{model}`, kept by the same script), the one with the fewest
//! live entries when several are given.
//!
//! A cursor is the index read (tag, value) and the last entry read: its
//! activity (8 bytes, big-endian) then its member. A page reads entries at
//! or below that activity and skips those of the same millisecond it already
//! passed (Redis orders ties by member, descending when read in reverse).

use std::sync::Arc;

use redis::AsyncCommands;

use super::{
    RedisStore, Shared,
    keys::{
        ALL_ACTIVITY_KEY, SESSION_PREFIX, activity_key_of, model_activity_key, profile_activity_key,
    },
    link::within,
};
use crate::store::{
    ConversationPage, ConversationSummary, ListBy, StoreError,
    activity_by::{MODEL, PROFILE, TENANT, field_prefix, prefix_len},
    codec::decode_session,
};

/// Most index entries one page reads while filtering (each costs a session
/// read, so fewer than sled's summaries-only scan).
pub const MAX_SCAN: usize = 5_000;
/// Index entries (and sessions) read per round trip.
const BATCH: usize = 256;
/// The tag of the index across tenants in a cursor.
const ALL: u8 = b'a';

/// The sorted set a page reads: across tenants, or one tenant's, profile's
/// or pinned model's.
#[derive(Clone)]
struct Index {
    tag: u8,
    value: Vec<u8>,
}

impl Index {
    fn key(&self) -> Vec<u8> {
        match self.tag {
            TENANT => activity_key_of(&self.value),
            PROFILE => profile_activity_key(&self.value),
            MODEL => model_activity_key(&self.value),
            _ => ALL_ACTIVITY_KEY.as_bytes().to_vec(),
        }
    }

    /// The session key (`tenant\0id`) of a member (a tenant's index holds
    /// conversation ids).
    fn session_key(&self, member: &[u8]) -> Vec<u8> {
        match self.tag {
            TENANT => [self.value.as_slice(), &[0], member].concat(),
            _ => member.to_vec(),
        }
    }
}

/// Where a page starts: entries of `index` active at or before `at_ms`,
/// skipping those of `at_ms` whose member is not below `member`.
struct Cursor {
    index: Index,
    at_ms: u64,
    member: Vec<u8>,
}

impl Cursor {
    /// Tag, value (length first), activity (8 bytes, big-endian), member.
    fn decode(raw: &[u8]) -> Option<Self> {
        let n = prefix_len(raw)?;
        let (at, member) = raw[n..].split_first_chunk::<8>()?;
        Some(Self {
            index: Index {
                tag: raw[0],
                value: raw[3..n].to_vec(),
            },
            at_ms: u64::from_be_bytes(*at),
            member: member.to_vec(),
        })
    }

    fn encode(index: &Index, at_ms: u64, member: &[u8]) -> Option<Vec<u8>> {
        let prefix = field_prefix(index.tag, &index.value)?;
        Some([prefix.as_slice(), &at_ms.to_be_bytes(), member].concat())
    }

    /// Whether the entry was on an earlier page.
    fn passed(&self, at_ms: u64, member: &[u8]) -> bool {
        at_ms == self.at_ms && member >= self.member.as_slice()
    }
}

/// An index entry with its session.
struct Entry {
    member: Vec<u8>,
    session_key: Vec<u8>,
    at_ms: u64,
    /// None: gone since indexed.
    raw: Option<Vec<u8>>,
    degraded: bool,
}

impl RedisStore {
    pub(super) fn list_page(
        &self,
        by: ListBy<'_>,
        keep: &dyn Fn(&ConversationSummary) -> bool,
        cursor: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<ConversationPage, StoreError> {
        let mut page = ConversationPage::default();
        let min = now_ms.saturating_sub(self.shared.ttl_ms).saturating_add(1);
        let cursor = cursor.and_then(Cursor::decode);
        let index = match &cursor {
            Some(c) => c.index.clone(),
            None => self.pick(by, min)?,
        };
        let max = cursor.as_ref().map_or(u64::MAX, |c| c.at_ms);
        let mut last: Option<(u64, Vec<u8>)> = None;
        let mut scanned = 0;
        // Within a page, batches go on by offset (a page is not a snapshot:
        // a conversation active meanwhile may show twice or move past it).
        while scanned < MAX_SCAN {
            let n = BATCH.min(MAX_SCAN - scanned);
            let mut batch = self.index_batch(&index, max, min, scanned, n)?.into_iter();
            let full = batch.len() == n;
            while page.items.len() < limit {
                let Some(e) = batch.next() else {
                    break;
                };
                scanned += 1;
                last = Some((e.at_ms, e.member.clone()));
                if cursor
                    .as_ref()
                    .is_some_and(|c| c.passed(e.at_ms, &e.member))
                {
                    continue;
                }
                // Gone since indexed (expired or removed): nothing to show.
                let Some(raw) = e.raw else { continue };
                let mut summary = ConversationSummary::of(&decode_session(&raw)?);
                let mut parts = e.session_key.splitn(2, |b| *b == 0);
                summary.tenant = String::from_utf8_lossy(parts.next().unwrap_or_default()).into();
                summary.conversation_id =
                    String::from_utf8_lossy(parts.next().unwrap_or_default()).into();
                summary.degraded = e.degraded;
                if keep(&summary) {
                    page.items.push(summary);
                }
            }
            if batch.len() == 0 && !full {
                // Read to the end of the index.
                return Ok(page);
            }
            if page.items.len() >= limit {
                break;
            }
        }
        page.next = last.and_then(|(at, member)| Cursor::encode(&index, at, &member));
        Ok(page)
    }

    /// The index of the field of `by` with the fewest live entries (one
    /// round trip), or the index across tenants when `by` names none.
    fn pick(&self, by: ListBy<'_>, min: u64) -> Result<Index, StoreError> {
        let mut fields: Vec<Index> = by
            .fields()
            .map(|(tag, value)| Index {
                tag,
                value: value.as_bytes().to_vec(),
            })
            .collect();
        if fields.len() <= 1 {
            return Ok(fields.pop().unwrap_or(Index {
                tag: ALL,
                value: Vec::new(),
            }));
        }
        let keys: Vec<Vec<u8>> = fields.iter().map(Index::key).collect();
        let counts: Vec<u64> = self.call(move |s: Arc<Shared>| async move {
            let mut c = s.link.conn();
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.zcount(k, min, "+inf");
            }
            within(s.link.timeout(), pipe.query_async(&mut c)).await
        })?;
        let best = (0..fields.len()).min_by_key(|&i| counts.get(i).copied().unwrap_or(u64::MAX));
        Ok(fields.swap_remove(best.unwrap_or(0)))
    }

    /// Up to `n` entries of `index` active in `[min, max]`, newest first,
    /// from `offset`, each with its session and degraded mark.
    fn index_batch(
        &self,
        index: &Index,
        max: u64,
        min: u64,
        offset: usize,
        n: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let index = index.clone();
        self.call(move |s: Arc<Shared>| async move {
            let mut c = s.link.conn();
            let entries: Vec<(Vec<u8>, u64)> = within(
                s.link.timeout(),
                c.zrevrangebyscore_limit_withscores(
                    index.key(),
                    max,
                    min,
                    offset as isize,
                    n as isize,
                ),
            )
            .await?;
            if entries.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            let keys: Vec<Vec<u8>> = entries
                .iter()
                .map(|(member, _)| index.session_key(member))
                .collect();
            for k in &keys {
                pipe.hmget([SESSION_PREFIX, k.as_slice()].concat(), &["b", "dg"]);
            }
            let sessions: Vec<(Option<Vec<u8>>, Option<String>)> =
                within(s.link.timeout(), pipe.query_async(&mut c)).await?;
            Ok(entries
                .into_iter()
                .zip(keys)
                .zip(sessions)
                .map(|(((member, at_ms), session_key), (raw, dg))| Entry {
                    member,
                    session_key,
                    at_ms,
                    raw,
                    degraded: dg.is_some(),
                })
                .collect())
        })
    }
}
