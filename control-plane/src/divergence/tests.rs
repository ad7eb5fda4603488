use super::*;
use keel::fingerprint::{Role, TurnFp};

/// A tiny history builder working on fingerprints directly.
#[derive(Default)]
struct H(Vec<TurnFp>);

impl H {
    fn push(&mut self, role: Role, f: impl FnOnce(&mut TurnFp)) -> &mut Self {
        let mut fp = TurnFp {
            index: self.0.len() as u32,
            role,
            text_hash: 0,
            action_hashes: vec![],
            action_name_hashes: vec![],
            is_error: false,
            result_hash: 0,
            error_hash: 0,
            text_simhash: 0,
            result_simhash: 0,
            result_size: 0,
            action_simhash: 0,
            result_shape_hash: 0,
        };
        f(&mut fp);
        self.0.push(fp);
        self
    }
    /// Action `a` answered by a substantial output `r` (a file view, a test report).
    fn act(&mut self, a: u64, r: u64) -> &mut Self {
        self.act_sized(a, r, 500)
    }
    /// Action `a` answered by output `r` of `size` bytes.
    fn act_sized(&mut self, a: u64, r: u64, size: u32) -> &mut Self {
        self.push(Role::Assistant, |f| {
            f.action_hashes = vec![a];
            f.action_name_hashes = vec![a];
            f.action_simhash = spread(a);
        })
        .push(Role::ToolResult, |f| {
            f.result_hash = r;
            f.result_shape_hash = r;
            f.result_simhash = spread(r);
            f.result_size = size;
        })
    }
    /// Action `a` failing with error signature `e` (a short error message).
    fn fail(&mut self, a: u64, e: u64) -> &mut Self {
        self.push(Role::Assistant, |f| {
            f.action_hashes = vec![a];
            f.action_name_hashes = vec![a];
            f.action_simhash = spread(a);
        })
        .push(Role::ToolResult, |f| {
            f.result_hash = 1000 + a;
            f.result_shape_hash = 1000 + a;
            f.result_simhash = spread(1000 + a);
            f.result_size = 60;
            f.is_error = true;
            f.error_hash = e;
        })
    }
    /// A variant of tool call `tool` (re-guessed argument `v`) failing with `e`: the
    /// arguments stay near-identical (simhash a bit apart).
    fn fail_variant(&mut self, tool: u64, v: u64, e: u64) -> &mut Self {
        self.push(Role::Assistant, |f| {
            f.action_hashes = vec![tool * 1000 + v];
            f.action_name_hashes = vec![tool];
            f.action_simhash = spread(tool) ^ (1 << (v % 64));
        })
        .push(Role::ToolResult, |f| {
            f.result_hash = 2000 + v;
            f.result_shape_hash = 2000 + v;
            f.result_simhash = spread(2000 + v);
            f.result_size = 80;
            f.is_error = true;
            f.error_hash = e;
        })
    }
    fn say(&mut self, text: u64, sim: u64) -> &mut Self {
        self.push(Role::Assistant, |f| {
            f.text_hash = text;
            f.text_simhash = sim;
        })
    }
    fn user(&mut self, text: u64) -> &mut Self {
        self.push(Role::User, |f| {
            f.text_hash = text;
            f.text_simhash = text;
        })
    }
    /// Observes the tail window, as the gateway does once per routed turn.
    fn observe(&self, s: &mut DetectorState, cfg: &DivergenceConfig) -> Option<Nudge> {
        let start = self.0.len().saturating_sub(40);
        s.observe(&self.0[start..], cfg)
    }
}

/// A well-mixed nonzero 64-bit value: distinct inputs are ~32 bits apart.
fn spread(x: u64) -> u64 {
    super::ingest::fold(0x5eed, x)
}

fn cfg() -> DivergenceConfig {
    DivergenceConfig::default()
}

#[test]
fn repeated_action_fires_on_the_fourth_not_the_third() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    h.user(1);
    for _ in 0..3 {
        h.act(7, 70);
        assert!(h.observe(&mut s, &c).is_none());
    }
    h.act(7, 70);
    let n = h.observe(&mut s, &c).expect("nudge");
    assert_eq!(n.pattern, Pattern::RepeatedAction);
    assert_eq!(n.turns, [1, 3, 5, 7]);
    assert_eq!(n.escalate, Escalation::Off);
    assert!(
        n.message
            .starts_with("Your last 4 actions ran the same command")
            && n.message.contains("(messages 1, 3, 5 and 7)"),
        "{}",
        n.message
    );
}

#[test]
fn user_messages_and_chat_between_repeats_do_not_reset() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    let mut hit = None;
    for k in 0..4 {
        h.act(7, 70).say(500 + k, 0).user(900 + k);
        hit = hit.or(h.observe(&mut s, &c));
    }
    assert_eq!(hit.map(|n| n.pattern), Some(Pattern::RepeatedAction));
}

#[test]
fn changing_results_are_progress() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    for k in 0..12 {
        // A wait (short, always the same output), then a status that moves.
        h.act_sized(1, 10, 20).act(2, 100 + k);
        assert!(
            h.observe(&mut s, &c).is_none(),
            "polling with a moving status at {k}"
        );
    }
}

#[test]
fn same_error_with_varied_arguments() {
    // Re-guessed arguments of one call, the same failure: three repeats' worth at 3/4
    // each, so the fifth attempt's result fires.
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    let mut got = vec![];
    for v in 1..=5 {
        h.fail_variant(9, v, 55);
        got.push(h.observe(&mut s, &c).map(|n| n.pattern));
    }
    assert_eq!(got, [None, None, None, None, Some(Pattern::RepeatedError)]);
    // Unrelated commands that happen to fail alike weigh less: a handful is exploring.
    let (mut h, mut s) = (H::default(), DetectorState::default());
    for a in 1..=6 {
        h.fail(a, 55);
        assert!(h.observe(&mut s, &c).is_none(), "unrelated failure {a}");
    }
}

#[test]
fn the_same_failure_with_another_number_is_the_same_failure() {
    // `paid 957` then `paid 1047`: the sidecar folds digits in the error signature, so
    // the detector sees one signature; the exact results differ.
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    let mut got = None;
    for v in [957u64, 1047, 957, 972, 1002] {
        h.fail_variant(4, v, 77);
        got = got.or(h.observe(&mut s, &c));
    }
    assert_eq!(got.map(|n| n.pattern), Some(Pattern::RepeatedError));
}

#[test]
fn a_sweep_that_prints_the_same_report_is_work() {
    // Edge cases of one command, each printing the same substantial report.
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    for v in 1..=8 {
        h.push(Role::Assistant, |f| {
            f.action_hashes = vec![100 + v];
            f.action_name_hashes = vec![100];
            f.action_simhash = spread(100) ^ (1 << v);
        })
        .push(Role::ToolResult, |f| {
            f.result_hash = 5;
            f.result_shape_hash = 5;
            f.result_simhash = spread(5);
            f.result_size = 700;
            f.is_error = true;
            f.error_hash = 6;
        });
        assert!(h.observe(&mut s, &c).is_none(), "sweep step {v}");
    }
}

#[test]
fn same_failure_fires_on_the_third() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    h.fail(3, 9).fail(3, 9);
    assert!(h.observe(&mut s, &c).is_none());
    h.fail(3, 9);
    assert_eq!(
        h.observe(&mut s, &c).map(|n| n.pattern),
        Some(Pattern::RepeatedFailure)
    );
}

#[test]
fn one_retry_after_an_error_is_fine() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    h.fail(3, 9).act(3, 30).act(4, 40);
    assert!(h.observe(&mut s, &c).is_none());
}

#[test]
fn ab_cycle_fires_when_both_come_back_unchanged() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    let mut first = None;
    for k in 0..4 {
        h.act(1, 10);
        first = first.or(h.observe(&mut s, &c).map(|n| (k, 'a', n.pattern)));
        h.act(2, 20);
        first = first.or(h.observe(&mut s, &c).map(|n| (k, 'b', n.pattern)));
    }
    assert_eq!(first, Some((1, 'b', Pattern::Cycle)));
    // Polling: a wait and a short status that does not move yet, a few rounds.
    let (mut h, mut s) = (H::default(), DetectorState::default());
    for k in 0..3 {
        h.act_sized(1, 10, 16).act_sized(2, 20, 80);
        assert!(h.observe(&mut s, &c).is_none(), "poll round {k}");
    }
}

#[test]
fn re_asking_fires_but_similar_questions_about_new_records_do_not() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    let mut got = None;
    for k in 0..3 {
        h.say(100 + k, 0xFFFF_0000 ^ k).user(200 + k);
        got = got.or(h.observe(&mut s, &c));
    }
    assert_eq!(got.map(|n| n.pattern), Some(Pattern::RepeatedText));

    let (mut h, mut s) = (H::default(), DetectorState::default());
    for k in 0..6 {
        h.say(100 + k, 0xFFFF_0000 ^ k).user(1).act(40 + k, 400 + k);
        assert!(h.observe(&mut s, &c).is_none());
    }
}

#[test]
fn no_progress_over_shuffled_old_actions() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    for a in 1..=4 {
        h.act(a, a * 10);
    }
    let mut got = None;
    for (k, a) in [2u64, 4, 1, 1, 3, 2, 4, 3, 1, 2].iter().enumerate() {
        h.act(*a, a * 10);
        if let Some(n) = h.observe(&mut s, &c) {
            got.get_or_insert((k, n.pattern));
        }
    }
    assert!(got.is_some_and(|(k, _)| k <= 4), "{got:?}");
}

#[test]
fn overlapping_windows_are_not_counted_twice() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    h.act(7, 70).act(7, 70).act(7, 70);
    for _ in 0..5 {
        assert!(
            h.observe(&mut s, &c).is_none(),
            "same window again adds nothing"
        );
    }
    assert_eq!(s.steps_observed(), 3);
}

#[test]
fn compaction_keeps_counters_without_recounting() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    h.user(1);
    for a in 10..20 {
        h.act(a, a);
        h.observe(&mut s, &c);
    }
    h.act(7, 70).act(7, 70);
    assert!(h.observe(&mut s, &c).is_none());
    let before = s.steps_observed();
    // The agent compacts: a summary replaces everything but the last two steps.
    let mut compacted = H::default();
    compacted.user(12345);
    compacted.act(7, 70).act(7, 70);
    assert!(compacted.observe(&mut s, &c).is_none());
    assert_eq!(
        s.steps_observed(),
        before,
        "kept turns are recognised by content"
    );
    compacted.act(7, 70);
    assert!(compacted.observe(&mut s, &c).is_none());
    compacted.act(7, 70);
    let n = compacted
        .observe(&mut s, &c)
        .expect("count survived compaction");
    assert_eq!(n.pattern, Pattern::RepeatedAction);
}

#[test]
fn backoff_then_escalation() {
    let mut c = cfg();
    c.escalation = Escalation::StrongerModel;
    let (mut h, mut s) = (H::default(), DetectorState::default());
    let mut nudges = vec![];
    for k in 0..12 {
        h.act(7, 70);
        if let Some(n) = h.observe(&mut s, &c) {
            nudges.push((k, n.escalate));
        }
    }
    assert_eq!(
        nudges,
        [
            (3, Escalation::Off),
            (7, Escalation::StrongerModel),
            (11, Escalation::StrongerModel)
        ]
    );
    assert_eq!(s.nudges(), 3);
}

#[test]
fn disabled_does_nothing() {
    let c = DivergenceConfig {
        enabled: false,
        ..cfg()
    };
    let (mut h, mut s) = (H::default(), DetectorState::default());
    for _ in 0..8 {
        h.act(7, 70);
        assert!(h.observe(&mut s, &c).is_none());
    }
    assert_eq!(s, DetectorState::default());
}

#[test]
fn state_is_bounded_and_round_trips() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    for a in 0..600u64 {
        h.act(a % 97, a).say(a, a.rotate_left(7)).user(a);
        h.observe(&mut s, &c);
    }
    let json = serde_json::to_string(&s).unwrap_or_default();
    assert!(json.len() < 12_000, "state is {} bytes", json.len());
    let back: DetectorState = serde_json::from_str(&json).unwrap_or_default();
    assert_eq!(back, s);
}

#[test]
fn weird_fingerprints_do_not_panic() {
    let (mut s, c) = (DetectorState::default(), cfg());
    let mut h = H::default();
    h.push(Role::ToolResult, |f| f.result_hash = 1)
        .push(Role::User, |_| {});
    assert!(h.observe(&mut s, &c).is_none());
    let mut rev = h.0.clone();
    rev.reverse();
    let _ = s.observe(&rev, &c);
    let _ = s.observe(&[], &c);
    let mut big = H::default();
    big.act(1, 1);
    big.0[0].index = u32::MAX;
    let _ = s.observe(&big.0, &c);
}

#[test]
fn config_rejects_unknown_keys_and_bad_ranges() {
    let ok: DivergenceConfig =
        serde_json::from_str(r#"{"thresholds": {"repeated_action": 5}}"#).unwrap_or_default();
    assert_eq!(ok.thresholds.repeated_action, 5);
    assert_eq!(ok.escalation, Escalation::Off);
    assert!(serde_json::from_str::<DivergenceConfig>(r#"{"tresholds": {}}"#).is_err());
    assert!(serde_json::from_str::<DivergenceConfig>(r#"{"escalation": "stop"}"#).is_ok());
    let bad = DivergenceConfig {
        thresholds: Thresholds {
            repeated_action: 1,
            ..Thresholds::default()
        },
        ..cfg()
    };
    assert_eq!(
        bad.validate().map_err(|e| e.key),
        Err("thresholds.repeated_action")
    );
    assert!(cfg().validate().is_ok());
}

#[test]
fn pattern_names() {
    let names: Vec<&str> = Pattern::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "repeated_failure",
            "repeated_action",
            "repeated_error",
            "cycle",
            "repeated_text",
            "no_progress"
        ]
    );
}

#[test]
fn sessions_stored_before_divergence_detection_still_load() {
    let old = r#"{"pinned_model":"m","profile":"AGENT","provider_affinity":null,"created_ms":1,
        "last_seen_ms":2,"turns":3,"spend_usd":0.0,"input_tokens":0,"output_tokens":0,
        "cached_input_tokens":0}"#;
    let s: crate::store::Session = serde_json::from_str(old).unwrap();
    assert_eq!(s.turns, 3);
    assert_eq!(s.divergence, DetectorState::default());
    let entry = r#"{"decision_id":"d","turn":1,"kind":1,"model":"m","provider":"p","reason":"r","at_ms":0}"#;
    let e: crate::store::DecisionEntry = serde_json::from_str(entry).unwrap();
    assert!(e.events.is_empty());
}

#[test]
fn fingerprints_round_trip_through_the_proto() {
    let (mut h, c) = (H::default(), cfg());
    for _ in 0..4 {
        h.act(7, 70).user(5);
    }
    let back = keel::fingerprint::from_proto(&keel::fingerprint::to_proto(&h.0));
    assert_eq!(back, h.0);
    let (mut a, mut b) = (DetectorState::default(), DetectorState::default());
    assert_eq!(a.observe(&h.0, &c), b.observe(&back, &c));
    // Unknown roles are dropped rather than guessed.
    let mut bad = keel::fingerprint::to_proto(&h.0);
    bad[0].role = 99;
    assert_eq!(keel::fingerprint::from_proto(&bad).len(), h.0.len() - 1);
}

#[test]
fn think_steps_between_failures_neither_reset_nor_pad() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    let mut got = vec![];
    for k in 0..3 {
        h.fail(3, 9);
        got.push(h.observe(&mut s, &c).map(|n| n.pattern));
        // A `think` tool: a new, empty result each time.
        h.act_sized(100 + k, 200 + k, 0);
        assert!(h.observe(&mut s, &c).is_none());
    }
    assert_eq!(got, [None, None, Some(Pattern::RepeatedFailure)]);
}

#[test]
fn edits_that_change_nothing_the_test_sees_are_no_progress() {
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    let mut got = vec![];
    for k in 0..4 {
        // A different silent edit each time, then the same test run, the same report.
        h.act_sized(10 + k, 1, 40).act(5, 50);
        got.push(h.observe(&mut s, &c).map(|n| n.pattern));
    }
    assert_eq!(got, [None, None, Some(Pattern::NoProgress), None]);
}

#[test]
fn going_back_to_a_guess_that_already_failed_fires_on_the_third_attempt() {
    // tau-bench t46: `book_reservation` pays 957, then 1047, then 957 again, each failing
    // with "total price is 1002, but paid N"; `think`, a chat turn and the customer's
    // "yes, go ahead" come between the attempts.
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    let mut got = vec![];
    for (k, v) in [957u64, 1047, 957].into_iter().enumerate() {
        h.fail_variant(4, v, 77);
        got.push(h.observe(&mut s, &c).map(|n| (n.pattern, n.turns)));
        h.act_sized(300 + k as u64, 400 + k as u64, 0);
        assert!(h.observe(&mut s, &c).is_none());
        h.say(500 + k as u64, 0).user(600 + k as u64);
    }
    assert_eq!(got[..2], [None, None]);
    assert_eq!(got[2], Some((Pattern::RepeatedError, vec![0, 6, 12])));
}

#[test]
fn a_new_payment_method_after_each_failure_is_not_a_loop() {
    // tau-bench t3 (healthy): three failures with one signature, each with another
    // payment method the customer names; none goes back to a call that already failed.
    let (mut h, mut s, c) = (H::default(), DetectorState::default(), cfg());
    for v in 1..=3u64 {
        h.fail_variant(5, v, 88);
        assert!(h.observe(&mut s, &c).is_none(), "attempt {v}");
        h.say(700 + v, 0).user(800 + v);
    }
}
