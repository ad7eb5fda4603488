//! The stored form of a [`Session`]: a version byte, then fixed-width
//! little-endian fields. Version 2 is version 1 with the session's decision
//! log head (8 bytes, 0 for none) after the version byte, where it is read
//! and replaced without decoding the rest. Version 3 is version 2 with four
//! more hashes and a size per loop-detector step (read as 0 from older ones). Records written as JSON (before
//! this encoding) start with `{` and still load, as do version 1 records;
//! they are rewritten as version 2 on their next update. A record may end
//! with the conversation's own budget caps (a flags byte, then the caps
//! set); readers that predate them stop before, and a record without them
//! has none.

use super::{Session, StoreError};
use crate::budget::Caps;
use crate::divergence::{DetectorState, Seen, Step};

/// First byte of a record in these encodings (never `{`).
const V1: u8 = 1;
const V2: u8 = 2;
const V3: u8 = 3;

/// Where version 2 keeps the decision log head.
const HEAD: std::ops::Range<usize> = 1..9;

/// Encodes `s` (about 120 bytes plus 12 per seen digest and 89 per step).
pub fn encode_session(s: &Session) -> Vec<u8> {
    let d = &s.divergence;
    let mut out = Vec::with_capacity(128 + d.seen.len() * 12 + d.steps.len() * 89);
    out.push(V3);
    out.extend_from_slice(&s.decision_head.unwrap_or(0).to_le_bytes());
    opt_str(&mut out, s.pinned_model.as_deref());
    str(&mut out, &s.profile);
    opt_str(&mut out, s.provider_affinity.as_deref());
    opt_str(&mut out, s.key_affinity.as_deref());
    for v in [s.created_ms, s.last_seen_ms] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&s.turns.to_le_bytes());
    out.extend_from_slice(&s.spend_usd.to_le_bytes());
    for v in [s.input_tokens, s.output_tokens, s.cached_input_tokens] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [d.step_count, d.streak, d.nudges] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    match d.last_nudge_at {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(d.seen.len() as u32).to_le_bytes());
    for seen in &d.seen {
        out.extend_from_slice(&seen.i.to_le_bytes());
        out.extend_from_slice(&seen.d.to_le_bytes());
    }
    out.extend_from_slice(&(d.steps.len() as u32).to_le_bytes());
    for st in &d.steps {
        out.extend_from_slice(&st.turn.to_le_bytes());
        for v in [st.act, st.res, st.ekey, st.text, st.sim, st.reply] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(u8::from(st.err) | (u8::from(st.reply_rep) << 1));
        for v in [st.names, st.asim, st.rsim, st.rshape] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&st.rsize.to_le_bytes());
    }
    write_budget(&mut out, &s.budget);
    out
}

/// The conversation's own caps, when it has any: flags (1: USD, 2: turns),
/// then those set.
fn write_budget(out: &mut Vec<u8>, caps: &Caps) {
    if !caps.limits_conversation() {
        return;
    }
    out.push(
        u8::from(caps.per_conversation_usd.is_some())
            | (u8::from(caps.per_conversation_turns.is_some()) << 1),
    );
    if let Some(usd) = caps.per_conversation_usd {
        out.extend_from_slice(&usd.to_bits().to_le_bytes());
    }
    if let Some(turns) = caps.per_conversation_turns {
        out.extend_from_slice(&turns.to_le_bytes());
    }
}

fn read_budget(r: &mut Reader<'_>) -> Option<Caps> {
    if r.is_empty() {
        return Some(Caps::default());
    }
    let flags = r.u8()?;
    let per_conversation_usd = match flags & 1 {
        0 => None,
        _ => Some(f64::from_bits(r.u64()?)),
    };
    let per_conversation_turns = match flags & 2 {
        0 => None,
        _ => Some(r.u32()?),
    };
    Some(Caps {
        per_conversation_usd,
        per_conversation_turns,
        per_tenant_usd_per_day: None,
    })
}

/// Whether `raw` is in the current encoding.
pub fn is_compact(raw: &[u8]) -> bool {
    matches!(raw.first(), Some(&(V2 | V3))) && raw.len() >= HEAD.end
}

/// Replaces the decision log head of a record in the current encoding.
pub fn set_decision_head(raw: &mut [u8], head: Option<u64>) {
    debug_assert!(is_compact(raw));
    if let Some(field) = raw.get_mut(HEAD) {
        field.copy_from_slice(&head.unwrap_or(0).to_le_bytes());
    }
}

/// The record's fields after the version byte (and head), and its head.
fn body(raw: &[u8]) -> Option<(Reader<'_>, Option<u64>)> {
    match *raw.first()? {
        V1 => Some((Reader(&raw[1..]), None)),
        V2 | V3 => {
            let mut r = Reader(&raw[1..]);
            let head = r.u64()?;
            Some((r, (head != 0).then_some(head)))
        }
        _ => None,
    }
}

/// Decodes a record of any encoding.
pub fn decode_session(raw: &[u8]) -> Result<Session, StoreError> {
    if raw.first() == Some(&b'{') {
        return Ok(serde_json::from_slice(raw)?);
    }
    let (mut r, decision_head) = body(raw).ok_or(StoreError::Truncated)?;
    let s = read_v1(&mut r, raw[0] == V3).ok_or(StoreError::Truncated)?;
    let budget = read_budget(&mut r).ok_or(StoreError::Truncated)?;
    Ok(Session {
        decision_head,
        budget,
        ..s
    })
}

/// The decision log head of a record of any encoding, without decoding the
/// rest (the decision writer reads it for every conversation it appends to).
pub fn decision_head(raw: &[u8]) -> Result<Option<u64>, StoreError> {
    match body(raw) {
        Some((_, head)) => Ok(head),
        None => Ok(decode_session(raw)?.decision_head),
    }
}

/// The `last_seen_ms` of a record of either encoding, without decoding the
/// rest (the sweep reads every session).
pub fn last_seen_ms(raw: &[u8]) -> Result<u64, StoreError> {
    match body(raw) {
        Some((mut r, _)) => (|| {
            for optional in [true, false, true, true] {
                if !optional || r.u8()? != 0 {
                    let n = r.u32()? as usize;
                    r.0 = r.0.get(n..)?;
                }
            }
            let _created_ms = r.u64()?;
            r.u64()
        })()
        .ok_or(StoreError::Truncated),
        None => Ok(decode_session(raw)?.last_seen_ms),
    }
}

/// The fields common to every version; `wide_steps`: steps carry version 3's extras.
fn read_v1(r: &mut Reader<'_>, wide_steps: bool) -> Option<Session> {
    let pinned_model = r.opt_str()?;
    let profile = r.str()?;
    let provider_affinity = r.opt_str()?;
    let key_affinity = r.opt_str()?;
    let created_ms = r.u64()?;
    let last_seen_ms = r.u64()?;
    let turns = r.u32()?;
    let spend_usd = f64::from_bits(r.u64()?);
    let input_tokens = r.u64()?;
    let output_tokens = r.u64()?;
    let cached_input_tokens = r.u64()?;
    let step_count = r.u32()?;
    let streak = r.u32()?;
    let nudges = r.u32()?;
    let last_nudge_at = match r.u8()? {
        0 => None,
        _ => Some(r.u32()?),
    };
    let n = r.u32()? as usize;
    let mut seen = Vec::with_capacity(n.min(r.0.len() / 12));
    for _ in 0..n {
        seen.push(Seen {
            i: r.u32()?,
            d: r.u64()?,
        });
    }
    let n = r.u32()? as usize;
    let mut steps = Vec::with_capacity(n.min(r.0.len() / 53));
    for _ in 0..n {
        let turn = r.u32()?;
        let [act, res, ekey, text, sim, reply] =
            [r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?];
        let flags = r.u8()?;
        let [names, asim, rsim, rshape, rsize] = if wide_steps {
            [r.u64()?, r.u64()?, r.u64()?, r.u64()?, u64::from(r.u32()?)]
        } else {
            [0; 5]
        };
        steps.push(Step {
            turn,
            act,
            res,
            err: flags & 1 != 0,
            ekey,
            text,
            sim,
            reply,
            reply_rep: flags & 2 != 0,
            names,
            asim,
            rsim,
            rshape,
            rsize: rsize as u32,
        });
    }
    Some(Session {
        pinned_model,
        profile,
        provider_affinity,
        key_affinity,
        created_ms,
        last_seen_ms,
        turns,
        spend_usd,
        input_tokens,
        output_tokens,
        cached_input_tokens,
        divergence: DetectorState {
            seen,
            steps,
            step_count,
            last_nudge_at,
            streak,
            nudges,
        },
        decision_head: None,
        budget: Caps::default(),
    })
}

fn str(out: &mut Vec<u8>, s: &str) {
    bytes(out, s.as_bytes());
}

/// `b` with its length before it (u32, little endian).
pub(super) fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            str(out, s);
        }
        None => out.push(0),
    }
}

/// Reads what the writers above wrote, from the front; `None` when the
/// input ends too early.
pub(super) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    /// What [`bytes`] wrote.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        let (b, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(b)
    }

    fn str(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    fn opt_str(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            _ => self.str().map(Some),
        }
    }
}

#[cfg(test)]
#[path = "codec_props.rs"]
mod props;
