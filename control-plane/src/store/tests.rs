use std::{sync::Arc, time::Duration};

use super::{DecisionEntry, Session, SessionKey, SessionStore, SledStore};

fn open(dir: &std::path::Path, ttl: Duration) -> SledStore {
    SledStore::open(dir, 8 * 1024 * 1024, ttl).unwrap()
}

/// Opens the store at `path` again (TTL one hour). sled may hold its file
/// lock briefly after the last handle is dropped: polls for up to a second.
pub(super) fn reopen(path: &std::path::Path) -> SledStore {
    (0..50)
        .find_map(|_| {
            SledStore::open(path, 8 * 1024 * 1024, Duration::from_secs(3600))
                .ok()
                .or_else(|| {
                    std::thread::sleep(Duration::from_millis(20));
                    None
                })
        })
        .expect("reopen")
}

/// The turns of the conversation's timeline, oldest first.
pub(super) fn turns(store: &dyn SessionStore, key: &SessionKey) -> Vec<u32> {
    store
        .decisions(key)
        .unwrap()
        .iter()
        .map(|d| d.turn)
        .collect()
}

fn touch(store: &SledStore, key: &SessionKey, now: u64, pin: &str) -> super::Updated {
    store
        .update(key, now, &mut |cur| {
            let mut s = cur.cloned().unwrap_or_default();
            s.turns += 1;
            s.last_seen_ms = now;
            if s.pinned_model.is_none() {
                s.pinned_model = Some(pin.to_owned());
            }
            s
        })
        .unwrap()
}

#[test]
fn racing_updates_converge_on_the_first_pin() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path(), Duration::from_secs(3600)));
    let key = SessionKey::new("t", "c");
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            let key = key.clone();
            std::thread::spawn(move || touch(&store, &key, 1_000, &format!("model-{i}")))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let creators = results.iter().filter(|u| u.before.is_none()).count();
    assert_eq!(creators, 1, "exactly one racer saw no session");
    let pins: std::collections::HashSet<_> = results
        .iter()
        .map(|u| u.after.pinned_model.clone().unwrap())
        .collect();
    assert_eq!(pins.len(), 1, "{pins:?}");
    assert_eq!(store.get(&key, 1_000).unwrap().unwrap().turns, 8);
}

#[test]
fn idle_sessions_expire_on_read_and_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Duration::from_secs(60));
    let old = SessionKey::new("t", "old");
    let fresh = SessionKey::new("t", "fresh");
    touch(&store, &old, 1_000, "a");
    store
        .record_decision(
            &old,
            &DecisionEntry {
                decision_id: "d1".into(),
                turn: 1,
                kind: 1,
                model: "a".into(),
                provider: "p".into(),
                reason: "r".into(),
                at_ms: 1_000,
                events: Vec::new(),
                result: None,
            },
        )
        .unwrap();
    touch(&store, &fresh, 1_000, "a");
    touch(&store, &fresh, 100_000, "a");
    let later = 1_000 + 60_000 + 1;
    assert!(
        store.get(&old, later).unwrap().is_none(),
        "lazy expiry on read"
    );
    assert!(store.get(&fresh, later).unwrap().is_some());
    // An expired session is replaced, not resumed.
    let reborn = touch(&store, &SessionKey::new("t", "old"), later, "b");
    assert!(reborn.before.is_none());
    assert_eq!(
        reborn.after.pinned_model.as_deref(),
        Some("b"),
        "closure started from None"
    );
    // The sweeper removes what stayed idle, and its decisions.
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = open(dir2.path(), Duration::from_secs(60));
    touch(&store2, &old, 1_000, "a");
    touch(&store2, &fresh, 1_000, "a");
    touch(&store2, &fresh, 100_000, "a");
    assert_eq!(store2.sweep(150_000).unwrap(), 1);
    assert!(
        store2.get(&fresh, 100_001).unwrap().is_some(),
        "refreshed session kept"
    );
    assert!(store2.decisions(&old).unwrap().is_empty());
    assert_eq!(
        store2.sweep(10_000_000).unwrap(),
        1,
        "the other goes once idle"
    );
}

#[test]
fn decisions_are_kept_per_conversation_in_turn_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Duration::from_secs(3600));
    let a = SessionKey::new("t", "a");
    let ab = SessionKey::new("t", "ab");
    // Records are kept for conversations that have a session.
    touch(&store, &a, 0, "m");
    touch(&store, &ab, 0, "m");
    for (key, turn) in [(&a, 2), (&ab, 1), (&a, 1), (&a, 10)] {
        store
            .record_decision(
                key,
                &DecisionEntry {
                    decision_id: format!("d{turn}"),
                    turn,
                    kind: 2,
                    model: "m".into(),
                    provider: "p".into(),
                    reason: String::new(),
                    at_ms: 0,
                    events: Vec::new(),
                    result: None,
                },
            )
            .unwrap();
    }
    let turns = turns(&store, &a);
    assert_eq!(turns, [1, 2, 10], "prefix of `a` does not match `ab`");
}

#[test]
fn sessions_survive_reopen_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = open(&path, Duration::from_secs(3600));
        touch(&store, &SessionKey::new("t", "c"), 1_000, "pinned");
        futures_flush(&store);
    }
    // A fresh handle on the same path is what a restart does.
    let store = reopen(&path);
    let s: Session = store
        .get(&SessionKey::new("t", "c"), 1_000)
        .unwrap()
        .unwrap();
    assert_eq!(s.pinned_model.as_deref(), Some("pinned"));
}

fn futures_flush(store: &SledStore) {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(store.flush())
        .unwrap();
}

#[tokio::test]
async fn the_decision_log_writes_in_order_and_completes_queued_records() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn SessionStore> = Arc::new(open(dir.path(), Duration::from_secs(3600)));
    let (log, writer) = crate::decisions::DecisionLog::new(Arc::clone(&store));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(writer.run(async move {
        let _ = stopped.await;
    }));
    let key = SessionKey::new("t", "c");
    store
        .update(&key, 1, &mut |_| Session {
            last_seen_ms: 1,
            ..Default::default()
        })
        .unwrap();
    let entry = |turn: u32| DecisionEntry {
        decision_id: format!("d{turn}"),
        turn,
        kind: 1,
        model: "m".into(),
        provider: "p".into(),
        reason: "r".into(),
        at_ms: 1,
        events: Vec::new(),
        result: None,
    };
    let result = super::TurnResult {
        success: true,
        attempts: 1,
        ..Default::default()
    };
    // The result may arrive before the writer has run: it follows its record.
    log.record(key.clone(), entry(1)).await;
    log.complete(key.clone(), 1, "d1".into(), result.clone())
        .await;
    log.sync().await;
    let timeline = store.decisions(&key).unwrap();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0].result.as_ref(), Some(&result));
    // Already written: completed in the store.
    log.record(key.clone(), entry(2)).await;
    log.sync().await;
    log.complete(key.clone(), 2, "d2".into(), result.clone())
        .await;
    // Queued at shutdown: still written.
    log.record(key.clone(), entry(3)).await;
    stop.send(()).unwrap();
    writer.await.unwrap();
    let timeline = store.decisions(&key).unwrap();
    assert_eq!(timeline.len(), 3);
    assert!(timeline[1].result.is_some());
    assert!(timeline[2].result.is_none());
}

#[test]
fn sessions_round_trip_through_the_compact_encoding_and_json_still_loads() {
    use crate::divergence::{Seen, Step};
    let mut s = Session {
        pinned_model: Some("strong-1".into()),
        profile: "AGENT".into(),
        provider_affinity: Some("alpha".into()),
        key_affinity: None,
        created_ms: 1_700_000_000_000,
        last_seen_ms: 1_700_000_100_000,
        turns: 42,
        spend_usd: 0.125,
        input_tokens: 1 << 40,
        output_tokens: 7,
        cached_input_tokens: 3,
        ..Default::default()
    };
    s.divergence.seen = (0..64)
        .map(|i| Seen {
            i,
            d: u64::from(i) * 0x9E37_79B9,
        })
        .collect();
    s.divergence.steps = (0..32)
        .map(|i| Step {
            turn: i,
            act: u64::from(i) + 1,
            res: 2,
            err: i % 2 == 0,
            ekey: 3,
            text: 4,
            sim: u64::MAX,
            reply: 6,
            reply_rep: i % 3 == 0,
            names: u64::MAX - 7,
            asim: u64::MAX - 8,
            rsim: u64::MAX - 9,
            rshape: u64::MAX - 10,
            rsize: i * 100,
        })
        .collect();
    s.divergence.step_count = 90;
    s.divergence.last_nudge_at = Some(80);
    s.divergence.streak = 2;
    s.divergence.nudges = 5;
    let compact = super::codec::encode_session(&s);
    assert!(compact.len() < serde_json::to_vec(&s).unwrap().len() / 2);
    assert_eq!(super::codec::decode_session(&compact).unwrap(), s);
    for cut in [1, 10, compact.len() - 1] {
        assert!(super::codec::decode_session(&compact[..cut]).is_err());
    }
    let empty = Session::default();
    let compact = super::codec::encode_session(&empty);
    assert_eq!(super::codec::decode_session(&compact).unwrap(), empty);
    // Records written as JSON before the compact encoding.
    let json = serde_json::to_vec(&s).unwrap();
    assert_eq!(super::codec::decode_session(&json).unwrap(), s);
}

#[test]
fn version_2_records_load_with_the_newer_step_fields_absent() {
    use crate::divergence::Step;
    let mut s = Session {
        profile: "AGENT".into(),
        ..Default::default()
    };
    let step = Step {
        turn: 3,
        act: 1,
        res: 2,
        names: 7,
        asim: 8,
        rsim: 9,
        rshape: 10,
        rsize: 11,
        ..Default::default()
    };
    s.divergence.steps = vec![step];
    let v3 = super::codec::encode_session(&s);
    // Version 2 is the same record without a step's last four hashes and size.
    let mut v2 = v3[..v3.len() - 36].to_vec();
    v2[0] = 2;
    let old = super::codec::decode_session(&v2).unwrap();
    let expected = Step {
        names: 0,
        asim: 0,
        rsim: 0,
        rshape: 0,
        rsize: 0,
        ..step
    };
    assert_eq!(old.divergence.steps, vec![expected]);
    assert!(super::codec::is_compact(&v2) && super::codec::is_compact(&v3));
}

#[test]
fn a_conversations_own_caps_ride_at_the_end_of_its_record() {
    let mut s = Session {
        profile: "AGENT".into(),
        last_seen_ms: 1_700_000_100_000,
        turns: 3,
        ..Default::default()
    };
    let without = super::codec::encode_session(&s);
    for caps in [(Some(2.5), Some(40)), (Some(0.0), None), (None, Some(7))] {
        s.budget = crate::budget::Caps {
            per_conversation_usd: caps.0,
            per_conversation_turns: caps.1,
            per_tenant_usd_per_day: None,
        };
        let with = super::codec::encode_session(&s);
        assert_eq!(super::codec::decode_session(&with).unwrap(), s);
        assert_eq!(
            super::codec::last_seen_ms(&with).unwrap(),
            1_700_000_100_000
        );
        // The record of a session without caps is the record before them.
        assert!(with.starts_with(&without) && with.len() > without.len());
        assert!(super::codec::decode_session(&with[..with.len() - 1]).is_err());
    }
    let plain = super::codec::decode_session(&without).unwrap();
    assert!(plain.budget.is_empty());
}

#[test]
fn a_json_session_is_read_and_rewritten_compact() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Duration::from_secs(3600));
    let key = SessionKey::new("t", "old");
    let old = Session {
        pinned_model: Some("m".into()),
        turns: 1,
        last_seen_ms: 1_000,
        ..Default::default()
    };
    store
        .sessions_tree()
        .insert(key.as_bytes(), serde_json::to_vec(&old).unwrap())
        .unwrap();
    assert_eq!(store.get(&key, 2_000).unwrap(), Some(old.clone()));
    let updated = touch(&store, &key, 3_000, "other");
    assert_eq!(updated.before, Some(old));
    assert_eq!(updated.after.pinned_model.as_deref(), Some("m"));
    futures_flush(&store);
    let raw = store.sessions_tree().get(key.as_bytes()).unwrap().unwrap();
    assert!(
        super::codec::is_compact(&raw),
        "rewritten in the compact encoding"
    );
}
