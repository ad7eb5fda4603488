//! Which fingerprints of a window are new, and the hash folding used for steps.
//!
//! The sidecar sends an overlapping tail window every turn, and agents rewrite their own
//! history (context compaction), so "new" is decided by content, not by index alone.

use super::state::Seen;
use keel::fingerprint::{Role, TurnFp};

/// The suffix of `fps` not observed before.
///
/// * Fast path: the last seen index is in the window with the same content → everything
///   after it is new. A window entirely past it (turns were skipped) is all new.
/// * Otherwise the history was rewritten: align the previous window with this one by the
///   longest run of equal digests ending on the last seen message, and take what follows.
///   With no overlap at all only the trailing step (last assistant turn onwards) is new,
///   since one call brings at most one new step in normal operation.
pub(crate) fn new_turns<'a>(seen: &[Seen], fps: &'a [TurnFp]) -> &'a [TurnFp] {
    let Some(last) = seen.last() else {
        return fps;
    };
    if let Some(p) = fps.iter().position(|f| f.index == last.i) {
        if digest(&fps[p]) == last.d {
            return &fps[p + 1..];
        }
    } else if fps.first().is_some_and(|f| f.index > last.i) {
        return fps;
    }
    let digests: Vec<u64> = fps.iter().map(digest).collect();
    let mut best: Option<(usize, usize)> = None; // (match length, position)
    for p in (0..digests.len()).rev() {
        let len = digests[..=p]
            .iter()
            .rev()
            .zip(seen.iter().rev())
            .take_while(|(a, b)| **a == b.d)
            .count();
        if len > 0 && best.is_none_or(|(l, _)| len > l) {
            best = Some((len, p));
        }
    }
    match best {
        Some((_, p)) => &fps[p + 1..],
        None => {
            let start = fps
                .iter()
                .rposition(|f| f.role == Role::Assistant)
                .unwrap_or(fps.len());
            &fps[start..]
        }
    }
}

/// Content digest of a fingerprint, index excluded (indices shift under compaction).
pub(crate) fn digest(f: &TurnFp) -> u64 {
    let role = match f.role {
        Role::Assistant => 1,
        Role::ToolResult => 2,
        Role::User => 3,
    };
    let mut d = fold(role, f.text_hash);
    for a in &f.action_hashes {
        d = fold(d, *a);
    }
    d = fold(d, f.result_hash);
    d = fold(d, f.error_hash);
    fold(d, u64::from(f.is_error))
}

/// Order-independent key of a turn's actions (parallel calls come in any order); 0 when
/// the turn has none.
pub(crate) fn action_key(actions: &[u64]) -> u64 {
    match actions {
        [] => 0,
        [one] => *one,
        many => {
            let mut v = many.to_vec();
            v.sort_unstable();
            v.into_iter().fold(0x5eed, fold)
        }
    }
}

/// Order-dependent combination of two hashes (splitmix64 finalizer). Written out here,
/// not taken from a hashing crate, because the results are persisted: it must never
/// change between builds. Never returns 0, which means "absent".
pub(crate) fn fold(acc: u64, x: u64) -> u64 {
    let mut z = acc.rotate_left(29) ^ x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    if z == 0 { 1 } else { z }
}
