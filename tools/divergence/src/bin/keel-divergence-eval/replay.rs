//! Replays a conversation as the gateway sees it: at every request point the sidecar
//! fingerprints `messages[:t]` (through its shared [`FingerprintCache`], sent as protobuf),
//! the control plane decodes the session record with the real store codec, observes, and
//! encodes it back.

use keel::fingerprint::{self, FingerprintCache, Format};
use keel_control_plane::divergence::{DivergenceConfig, Nudge};
use keel_control_plane::store::{Session, decode_session, encode_session};
use serde_json::Value;

/// What the detector did over one conversation.
pub struct Replay {
    /// The first nudge: request index `t` (history `messages[:t]`) and the nudge.
    pub first: Option<(usize, Nudge)>,
    /// Nudges over the conversation.
    pub nudges: usize,
    /// Largest stored session record seen, in bytes.
    pub max_record: usize,
    /// Request points replayed.
    pub requests: usize,
}

/// Request points: every assistant message (the request that produced it). With
/// `trailing`, one more after the last message (the generated corpus ends on the
/// evidence).
pub fn request_points(msgs: &[Value], trailing: bool) -> Vec<usize> {
    let mut v: Vec<usize> = (0..msgs.len())
        .filter(|&i| msgs[i].get("role").and_then(Value::as_str) == Some("assistant"))
        .collect();
    if trailing {
        v.push(msgs.len());
    }
    v
}

pub fn replay(
    cache: &FingerprintCache,
    wire: Format,
    msgs: &[Value],
    points: &[usize],
    window: usize,
    cfg: &DivergenceConfig,
    trace: bool,
) -> Replay {
    let mut record = encode_session(&Session::default());
    let mut out = Replay {
        first: None,
        nudges: 0,
        max_record: record.len(),
        requests: 0,
    };
    for &t in points {
        let sent = cache.fingerprint_proto(wire, &msgs[..t], window);
        let fps = fingerprint::from_proto(&sent);
        let mut session = decode_session(&record).expect("the codec reads what it wrote");
        let nudge = if fps.is_empty() {
            None
        } else {
            session.divergence.observe(&fps, cfg)
        };
        if trace {
            let steps = session.divergence.trace(cfg);
            let tail = &steps[steps.len().saturating_sub(8)..];
            let fired = nudge.as_ref().map_or("", |n| n.pattern.as_str());
            println!("  t={t:<4} {} {fired}", tail.join(" "));
        }
        if let Some(n) = nudge {
            out.nudges += 1;
            out.first.get_or_insert((t, n));
        }
        record = encode_session(&session);
        out.max_record = out.max_record.max(record.len());
        out.requests += 1;
    }
    out
}
