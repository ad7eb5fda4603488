//! The console's conversation list on Redis: the index across tenants
//! (`keel:a`, kept by the session write's compare-and-set script) read
//! newest first, a batch at a time, each batch's sessions fetched in one
//! pipeline and summarised as sled summarises them.
//!
//! A cursor is the last entry read: its activity (8 bytes, big-endian)
//! then its member (the session key). A page reads entries at or below
//! that activity and skips those of the same millisecond it already
//! passed (Redis orders ties by member, descending when read in reverse).

use std::sync::Arc;

use redis::AsyncCommands;

use super::{
    RedisStore, Shared,
    keys::{ALL_ACTIVITY_KEY, SESSION_PREFIX},
    link::within,
};
use crate::store::{ConversationPage, ConversationSummary, StoreError, codec::decode_session};

/// Most index entries one page reads while filtering (each costs a session
/// read, so fewer than sled's summaries-only scan).
pub const MAX_SCAN: usize = 5_000;
/// Index entries (and sessions) read per round trip.
const BATCH: usize = 256;

/// Where a page starts: entries active at or before `at_ms`, skipping those
/// of `at_ms` whose member is not below `member`.
struct Cursor {
    at_ms: u64,
    member: Vec<u8>,
}

impl Cursor {
    fn decode(raw: &[u8]) -> Option<Self> {
        let (at, member) = raw.split_first_chunk::<8>()?;
        Some(Self {
            at_ms: u64::from_be_bytes(*at),
            member: member.to_vec(),
        })
    }

    fn encode(at_ms: u64, member: &[u8]) -> Vec<u8> {
        [at_ms.to_be_bytes().as_slice(), member].concat()
    }

    /// Whether the entry was on an earlier page.
    fn passed(&self, at_ms: u64, member: &[u8]) -> bool {
        at_ms == self.at_ms && member >= self.member.as_slice()
    }
}

impl RedisStore {
    pub(super) fn list_page(
        &self,
        keep: &dyn Fn(&ConversationSummary) -> bool,
        cursor: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<ConversationPage, StoreError> {
        let mut page = ConversationPage::default();
        let cursor = cursor.and_then(Cursor::decode);
        let max = cursor.as_ref().map_or(u64::MAX, |c| c.at_ms);
        let min = now_ms.saturating_sub(self.shared.ttl_ms).saturating_add(1);
        let mut last: Option<(u64, Vec<u8>)> = None;
        let mut scanned = 0;
        // Within a page, batches go on by offset (a page is not a snapshot:
        // a conversation active meanwhile may show twice or move past it).
        while scanned < MAX_SCAN {
            let n = BATCH.min(MAX_SCAN - scanned);
            let mut batch = self.index_batch(max, min, scanned, n)?.into_iter();
            let full = batch.len() == n;
            while page.items.len() < limit {
                let Some((member, at_ms, raw, degraded)) = batch.next() else {
                    break;
                };
                scanned += 1;
                last = Some((at_ms, member.clone()));
                if cursor.as_ref().is_some_and(|c| c.passed(at_ms, &member)) {
                    continue;
                }
                // Gone since indexed (expired or removed): nothing to show.
                let Some(raw) = raw else { continue };
                let mut summary = ConversationSummary::of(&decode_session(&raw)?);
                let mut parts = member.splitn(2, |b| *b == 0);
                summary.tenant = String::from_utf8_lossy(parts.next().unwrap_or_default()).into();
                summary.conversation_id =
                    String::from_utf8_lossy(parts.next().unwrap_or_default()).into();
                summary.degraded = degraded;
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
        page.next = last.map(|(at, member)| Cursor::encode(at, &member));
        Ok(page)
    }

    /// Up to `n` index entries active in `[min, max]`, newest first, from
    /// `offset`, each with its session (None: gone) and degraded mark.
    #[allow(clippy::type_complexity)]
    fn index_batch(
        &self,
        max: u64,
        min: u64,
        offset: usize,
        n: usize,
    ) -> Result<Vec<(Vec<u8>, u64, Option<Vec<u8>>, bool)>, StoreError> {
        self.call(move |s: Arc<Shared>| async move {
            let mut c = s.link.conn();
            let entries: Vec<(Vec<u8>, u64)> = within(
                s.link.timeout(),
                c.zrevrangebyscore_limit_withscores(
                    ALL_ACTIVITY_KEY,
                    max,
                    min,
                    offset as isize,
                    n as isize,
                ),
            )
            .await?;
            let mut pipe = redis::pipe();
            for (member, _) in &entries {
                pipe.hmget([SESSION_PREFIX, member.as_slice()].concat(), &["b", "dg"]);
            }
            let sessions: Vec<(Option<Vec<u8>>, Option<String>)> =
                within(s.link.timeout(), pipe.query_async(&mut c)).await?;
            Ok(entries
                .into_iter()
                .zip(sessions)
                .map(|((member, at), (raw, dg))| (member, at, raw, dg.is_some()))
                .collect())
        })
    }
}
