//! The sweep's cursor, and stores of earlier versions.

use std::time::Duration;

use super::{DecisionEntry, Session, SessionKey, SessionStore, SledStore, codec};

const MIN: Duration = Duration::from_secs(60);

fn put(store: &SledStore, id: &str, now: u64) {
    store
        .update(&SessionKey::new("t", id), now, &mut |_| Session {
            last_seen_ms: now,
            turns: 1,
            ..Default::default()
        })
        .unwrap();
}

#[test]
fn the_sweep_goes_a_batch_at_a_time_resumes_and_wraps() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with_cache(dir.path(), 8 << 20, MIN, 1 << 20).unwrap();
    for i in 0..10 {
        // k1 and k5 stay live a while longer.
        put(
            &store,
            &format!("k{i}"),
            if i == 1 || i == 5 { 90_000 } else { 1_000 },
        );
    }
    let inner = &store;
    // k0..k3, then k4..k7 (resumed, not from the start), then k8, k9.
    assert_eq!(inner.sweep_batch(100_000, 4).unwrap(), 3);
    assert_eq!(inner.sweep_batch(100_000, 4).unwrap(), 3);
    assert_eq!(inner.sweep_batch(100_000, 4).unwrap(), 2);
    // From the start again: k1 and k5 are live now...
    assert_eq!(inner.sweep_batch(100_000, 4).unwrap(), 0);
    // ...and the pass after the end wraps to them when they are not.
    put(&store, "k0", 200_000);
    assert_eq!(inner.sweep_batch(200_000, 4).unwrap(), 2);
    let left: Vec<_> = store_keys(&store);
    assert_eq!(left, [SessionKey::new("t", "k0").as_bytes().to_vec()]);
}

fn store_keys(store: &SledStore) -> Vec<Vec<u8>> {
    store
        .sessions_tree()
        .iter()
        .keys()
        .map(|k| k.unwrap().to_vec())
        .collect()
}

#[test]
fn a_store_of_an_earlier_version_opens_without_its_index_and_keeps_its_timelines() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let key = SessionKey::new("t", "c");
    let session = Session {
        pinned_model: Some("m".into()),
        last_seen_ms: 1_000,
        turns: 2,
        ..Default::default()
    };
    // Version 1 of the encoding: no decision log head.
    let mut v1 = codec::encode_session(&session);
    v1.drain(1..9);
    v1[0] = 1;
    db.open_tree("sessions")
        .unwrap()
        .insert(key.as_bytes(), v1)
        .unwrap();
    let mut index_key = 61_000u64.to_be_bytes().to_vec();
    index_key.extend_from_slice(key.as_bytes());
    db.open_tree("expiry")
        .unwrap()
        .insert(index_key, &[][..])
        .unwrap();
    // One key per record: session key, 0xFF, turn, decision id.
    let decisions = db.open_tree("decisions").unwrap();
    for (key, turn) in [(&key, 2u32), (&key, 1), (&SessionKey::new("t", "gone"), 1)] {
        let mut k = key.as_bytes().to_vec();
        k.push(0xFF);
        k.extend_from_slice(&turn.to_be_bytes());
        k.extend_from_slice(format!("d{turn}").as_bytes());
        let entry = DecisionEntry {
            decision_id: format!("d{turn}"),
            turn,
            kind: 1,
            model: "m".into(),
            provider: "p".into(),
            reason: "r".into(),
            at_ms: 1_000,
            events: Vec::new(),
            result: None,
        };
        decisions
            .insert(k, serde_json::to_vec(&entry).unwrap())
            .unwrap();
    }
    drop(decisions);
    let store = SledStore::with_db(db, MIN, 1 << 20).unwrap();
    let names = store.sled().tree_names();
    assert!(!names.iter().any(|n| n == b"expiry"), "index dropped");
    assert!(!names.iter().any(|n| n == b"decisions"), "records moved");
    let read = store.get(&key, 1_000).unwrap().unwrap();
    assert_eq!(read.pinned_model.as_deref(), Some("m"));
    let turns = super::tests::turns(&store, &key);
    assert_eq!(turns, [1, 2]);
    assert_eq!(store.sweep(1_000_000).unwrap(), 1, "swept without an index");
    assert!(store.decisions(&key).unwrap().is_empty());
}

#[test]
fn tenant_day_totals_are_kept_a_month_then_dropped() {
    use super::sweep::TENANT_DAYS_KEPT;
    use crate::budget::TenantDay;

    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with_cache(dir.path(), 8 << 20, MIN, 1 << 20).unwrap();
    let today = 20_000;
    let now_ms = today * 24 * 3600 * 1000 + 1_000;
    let days = [
        today - TENANT_DAYS_KEPT - 9,
        today - TENANT_DAYS_KEPT - 1,
        today - TENANT_DAYS_KEPT,
        today - 1,
        today,
    ];
    for tenant in ["a", "b"] {
        for day in days {
            let total = TenantDay {
                day,
                usd: 1.5,
                turns: 3,
            };
            store.put_tenant_day(tenant, &total).unwrap();
        }
    }
    store.write_pending().unwrap();
    store.sweep_batch(now_ms, 4).unwrap();
    for tenant in ["a", "b"] {
        let kept: Vec<u64> = days
            .iter()
            .copied()
            .filter(|&d| store.tenant_day(tenant, d).unwrap().is_some())
            .collect();
        assert_eq!(kept, days[2..], "tenant {tenant}");
        let total = store.tenant_day(tenant, today).unwrap().unwrap();
        assert_eq!((total.usd, total.turns), (1.5, 3));
    }
    // Written again (a store restored from a backup): the same day's later
    // runs leave it, the next day's run drops it.
    let old = TenantDay {
        day: days[0],
        usd: 1.0,
        turns: 1,
    };
    store.put_tenant_day("a", &old).unwrap();
    store.write_pending().unwrap();
    store.sweep_batch(now_ms + 60_000, 4).unwrap();
    assert!(store.tenant_day("a", days[0]).unwrap().is_some());
    store.sweep_batch(now_ms + 24 * 3600 * 1000, 4).unwrap();
    assert!(store.tenant_day("a", days[0]).unwrap().is_none());
}
