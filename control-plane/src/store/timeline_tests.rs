//! The decision log: order, bounds, completion, removal and retention.

use std::time::Duration;

use super::tests::turns;

use super::{
    DecisionEntry, Session, SessionKey, SessionStore, SledStore, TurnResult,
    timeline::{SEGMENT_RECORDS, TIMELINE_MAX, records_held, segments},
};

const MIN: Duration = Duration::from_secs(60);

fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open_with_cache(dir, 8 << 20, MIN, 1 << 20).unwrap()
}

fn session(store: &SledStore, id: &str, now: u64) -> SessionKey {
    let key = SessionKey::new("t", id);
    store
        .update(&key, now, &mut |cur| Session {
            last_seen_ms: now,
            ..cur.cloned().unwrap_or_default()
        })
        .unwrap();
    key
}

fn entry(turn: u32, at_ms: u64) -> DecisionEntry {
    DecisionEntry {
        decision_id: format!("d{turn}"),
        turn,
        kind: 2,
        model: "m".into(),
        provider: "p".into(),
        reason: "r".into(),
        at_ms,
        events: Vec::new(),
        result: None,
    }
}

/// Records turns `from..=to` of `a` and `b` interleaved, in batches of 50.
fn interleaved(store: &SledStore, a: &SessionKey, b: &SessionKey, from: u32, to: u32) {
    let all: Vec<_> = (from..=to)
        .flat_map(|t| [(a.clone(), entry(t, 50_000)), (b.clone(), entry(t, 50_000))])
        .collect();
    for batch in all.chunks(50) {
        store.record_decisions(batch).unwrap();
    }
}

#[test]
fn a_timeline_spans_segments_in_order_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = session(&store, "a", 1_000);
    let b = session(&store, "ab", 1_000);
    interleaved(&store, &a, &b, 1, 150);
    // The full segments are written; the open one waits for a write pass.
    assert!(
        segments(&store) >= 300 / SEGMENT_RECORDS - 1,
        "in several segments"
    );
    assert_eq!(turns(&store, &a), (1..=150).collect::<Vec<_>>());
    assert_eq!(turns(&store, &b), (1..=150).collect::<Vec<_>>());
    // Bounded: the newest are returned.
    interleaved(&store, &a, &b, 151, 300);
    let newest = turns(&store, &a);
    assert_eq!(newest.len(), TIMELINE_MAX);
    assert_eq!(newest[0], 300 - TIMELINE_MAX as u32 + 1);
    assert_eq!(newest.last(), Some(&300));
}

#[test]
fn records_are_completed_in_closed_and_open_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = session(&store, "a", 1_000);
    let b = session(&store, "b", 1_000);
    store.record_decision(&a, &entry(1, 1_000)).unwrap();
    // Turn 1 of `a` ends up in a closed segment, turn 2 in the open one.
    let others: Vec<_> = (2..=100).map(|t| (b.clone(), entry(t, 1_000))).collect();
    store.record_decisions(&others).unwrap();
    store.record_decision(&a, &entry(2, 1_000)).unwrap();
    let result = TurnResult {
        success: true,
        attempts: 1,
        ..Default::default()
    };
    assert!(store.complete_decision(&a, 1, "d1", &result).unwrap());
    assert!(store.complete_decision(&a, 2, "d2", &result).unwrap());
    assert!(!store.complete_decision(&a, 3, "d3", &result).unwrap());
    assert!(!store.complete_decision(&a, 2, "d1", &result).unwrap());
    let timeline = store.decisions(&a).unwrap();
    assert!(timeline.iter().all(|d| d.result.as_ref() == Some(&result)));
    assert!(
        store
            .decisions(&b)
            .unwrap()
            .iter()
            .all(|d| d.result.is_none())
    );
}

#[test]
fn removing_a_session_removes_its_records_from_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let idle = session(&store, "idle", 1_000);
    let busy = session(&store, "busy", 1_000);
    interleaved(&store, &idle, &busy, 1, 100);
    session(&store, "busy", 50_000);
    assert_eq!(records_held(&store), 200);
    assert_eq!(store.sweep(70_000).unwrap(), 1);
    assert_eq!(records_held(&store), 100, "only the idle one's went");
    assert!(store.decisions(&idle).unwrap().is_empty());
    assert_eq!(turns(&store, &busy), (1..=100).collect::<Vec<_>>());
}

#[test]
fn segments_older_than_the_ttl_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = session(&store, "a", 100_000);
    let old: Vec<_> = (1..=SEGMENT_RECORDS as u32)
        .map(|t| (a.clone(), entry(t, 1_000)))
        .collect();
    store.record_decisions(&old).unwrap();
    let new: Vec<_> = (65..=67).map(|t| (a.clone(), entry(t, 100_000))).collect();
    store.record_decisions(&new).unwrap();
    assert_eq!(turns(&store, &a).len(), SEGMENT_RECORDS + 3);
    // `a` is live; its decisions older than the TTL are not kept.
    assert_eq!(store.sweep(120_000).unwrap(), 0);
    assert_eq!(turns(&store, &a), [65, 66, 67]);
    // The open segment is kept whatever its age.
    session(&store, "a", 1_000_000);
    store.sweep(1_000_000).unwrap();
    assert_eq!(records_held(&store), 3);
}

#[test]
fn the_open_segment_and_then_the_heads_are_written_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let nobody = SessionKey::new("t", "nobody");
    store.record_decision(&nobody, &entry(1, 1_000)).unwrap();
    assert_eq!(records_held(&store), 0);
    let a = session(&store, "a", 1_000);
    let head = |store: &SledStore| store.get(&a, 1_000).unwrap().unwrap().decision_head;
    store.record_decision(&a, &entry(1, 1_000)).unwrap();
    // Written by the next pass (at most 250 ms later): the session's head
    // only once its segment is.
    assert!(segments(&store) == 1 || head(&store).is_none());
    assert_eq!(turns(&store, &a), [1], "readable meanwhile");
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(store.flush())
        .unwrap();
    assert_eq!(segments(&store), 1);
    assert!(head(&store).is_some());
    let stored = store.sessions_tree().get(a.as_bytes()).unwrap().unwrap();
    let stored = super::codec::decode_session(&stored).unwrap();
    assert_eq!(
        stored.decision_head,
        head(&store),
        "written with the session"
    );
    assert_eq!(turns(&store, &a), [1]);
}
