//! Stores written before the profile and model indexes (`keel:ap:*`,
//! `keel:am:*`): at open, unless [`DONE_KEY`] says it was done, every live
//! entry of the index across tenants is added to its session's profile and
//! pinned model's sets, a batch at a time, then the mark is set.
//!
//! `ZADD NX`: an entry a replica's compare-and-set wrote meanwhile is newer
//! and stays. A conversation moved to another profile or model between the
//! read and the add leaves an entry in the old set that the list skips (its
//! session no longer matches) until it is trimmed as idle. Replicas opening
//! together each run it; the adds are idempotent.

use std::collections::HashSet;

use redis::AsyncCommands;

use super::{
    keys::{ALL_ACTIVITY_KEY, SESSION_PREFIX, model_activity_key, profile_activity_key},
    link::{Link, within},
};
use crate::store::{StoreError, codec::decode_session};

/// Set once the profile and model indexes hold every live conversation.
pub const DONE_KEY: &str = "keel:ab";

/// Index entries read per round trip.
const BATCH: isize = 256;

/// Fills the profile and model indexes from `keel:a` if not done yet;
/// returns how many conversations it indexed.
pub async fn backfill(link: &Link, now_ms: u64, ttl_ms: u64) -> Result<usize, StoreError> {
    let mut c = link.conn();
    let done: bool = within(link.timeout(), c.exists(DONE_KEY)).await?;
    if done {
        return Ok(0);
    }
    let min = now_ms.saturating_sub(ttl_ms).saturating_add(1);
    let (mut offset, mut n) = (0, 0);
    let mut sets = HashSet::new();
    loop {
        let entries: Vec<(Vec<u8>, u64)> = within(
            link.timeout(),
            c.zrangebyscore_limit_withscores(ALL_ACTIVITY_KEY, min, "+inf", offset, BATCH),
        )
        .await?;
        if entries.is_empty() {
            break;
        }
        offset += entries.len() as isize;
        let mut pipe = redis::pipe();
        for (member, _) in &entries {
            pipe.hget([SESSION_PREFIX, member.as_slice()].concat(), "b");
        }
        let sessions: Vec<Option<Vec<u8>>> =
            within(link.timeout(), pipe.query_async(&mut c)).await?;
        let mut pipe = redis::pipe();
        let mut adds = 0;
        for ((member, at), raw) in entries.iter().zip(sessions) {
            // Gone or unreadable: nothing to list.
            let Some(s) = raw.and_then(|raw| decode_session(&raw).ok()) else {
                continue;
            };
            let mut keys = vec![profile_activity_key(s.profile.as_bytes())];
            keys.extend(s.pinned_model.map(|m| model_activity_key(m.as_bytes())));
            for k in keys {
                pipe.cmd("ZADD")
                    .arg(&k)
                    .arg("NX")
                    .arg(*at)
                    .arg(member)
                    .ignore();
                sets.insert(k);
                adds += 1;
            }
            n += 1;
        }
        if adds > 0 {
            let () = within(link.timeout(), pipe.query_async(&mut c)).await?;
        }
    }
    // Sets the backfill made expire as a write's would; a write's expiry
    // is kept.
    let sets: Vec<Vec<u8>> = sets.into_iter().collect();
    let mut pipe = redis::pipe();
    for k in &sets {
        pipe.pttl(k);
    }
    let ttls: Vec<i64> = if sets.is_empty() {
        Vec::new()
    } else {
        within(link.timeout(), pipe.query_async(&mut c)).await?
    };
    let mut pipe = redis::pipe();
    pipe.set(DONE_KEY, 1).ignore();
    let deadline = now_ms.saturating_add(ttl_ms);
    for (k, _) in sets.iter().zip(ttls).filter(|(_, t)| *t == -1) {
        pipe.cmd("PEXPIREAT").arg(k).arg(deadline).ignore();
    }
    let () = within(link.timeout(), pipe.query_async(&mut c)).await?;
    Ok(n)
}
