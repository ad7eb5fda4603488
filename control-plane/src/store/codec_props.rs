//! Property tests of the session codec: every session round-trips, and no
//! byte string (garbage, a truncated record, a flipped byte) panics the
//! decoder or makes it allocate beyond its input. Cases: `PROPTEST_CASES`
//! (default 256).

use proptest::prelude::*;

use super::{decode_session, encode_session};
use crate::{budget::Caps, divergence::Seen, store::Session};

fn cases() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._:/ -]{0,40}"
}

fn session() -> impl Strategy<Value = Session> {
    (
        (
            proptest::option::of(name()),
            name(),
            proptest::option::of(name()),
            proptest::option::of(name()),
        ),
        (any::<u64>(), any::<u64>(), any::<u32>(), 0.0f64..1e9),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(1u64..u64::MAX),
        ),
        (
            proptest::option::of(0.0f64..1e6),
            proptest::option::of(any::<u32>()),
        ),
        proptest::collection::vec((any::<u32>(), any::<u64>()), 0..20),
    )
        .prop_map(|(names, times, tokens, caps, seen)| {
            let mut s = Session {
                pinned_model: names.0,
                profile: names.1,
                provider_affinity: names.2,
                key_affinity: names.3,
                created_ms: times.0,
                last_seen_ms: times.1,
                turns: times.2,
                spend_usd: times.3,
                input_tokens: tokens.0,
                output_tokens: tokens.1,
                cached_input_tokens: tokens.2,
                decision_head: tokens.3,
                budget: Caps {
                    per_conversation_usd: caps.0,
                    per_conversation_turns: caps.1,
                    per_tenant_usd_per_day: None,
                },
                ..Session::default()
            };
            s.divergence.seen = seen.into_iter().map(|(i, d)| Seen { i, d }).collect();
            s
        })
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn every_session_round_trips(s in session()) {
        let raw = encode_session(&s);
        prop_assert_eq!(decode_session(&raw).unwrap(), s);
    }

    #[test]
    fn garbage_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(s) = decode_session(&raw) {
            // Whatever decodes is bounded by what was read.
            let names = s.profile.len() + s.pinned_model.map_or(0, |m| m.len());
            prop_assert!(names <= raw.len());
            prop_assert!(s.divergence.seen.len() <= raw.len());
        }
    }

    #[test]
    fn damaged_records_never_panic(s in session(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let raw = encode_session(&s);
        let _ = decode_session(&raw[..cut.index(raw.len() + 1).min(raw.len())]);
        let mut flipped = raw.clone();
        let at = flip.0.index(flipped.len());
        flipped[at] ^= flip.1 | 1;
        let _ = decode_session(&flipped);
    }
}
