//! The session cache and the decision writer's held records: what is
//! served from memory, what reaches sled and when, and the bounds.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{
    DecisionEntry, FlushFuture, Session, SessionKey, SessionStore, SledStore, StoreError,
    TurnResult, Updated, codec,
};
use crate::budget::{Overrides, TenantDay};

const HOUR: Duration = Duration::from_secs(3600);

const MB: usize = 1024 * 1024;

fn open_with(dir: &std::path::Path, cache_bytes: usize) -> SledStore {
    SledStore::open_with_cache(dir, 8 * 1024 * 1024, HOUR, cache_bytes).unwrap()
}

fn flush(store: &dyn SessionStore) {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(store.flush())
        .unwrap();
}

/// A first turn: counts it and pins `pin` unless pinned.
fn turn(store: &SledStore, key: &SessionKey, now: u64, pin: &str) -> Updated {
    store
        .update(key, now, &mut |cur| {
            let mut s = cur.cloned().unwrap_or_default();
            s.turns += 1;
            s.last_seen_ms = now;
            s.pinned_model.get_or_insert_with(|| pin.to_owned());
            s
        })
        .unwrap()
}

fn stored(store: &SledStore, key: &SessionKey) -> Option<Session> {
    store
        .sessions_tree()
        .get(key.as_bytes())
        .unwrap()
        .map(|raw| codec::decode_session(&raw).unwrap())
}

#[test]
fn an_update_is_served_from_the_cache_and_reaches_sled_on_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), MB);
    let key = SessionKey::new("t", "c");
    turn(&store, &key, 1_000, "a");
    let second = store
        .update(&key, 2_000, &mut |cur| {
            let mut s = cur.cloned().unwrap();
            s.spend_usd += 0.5;
            s
        })
        .unwrap();
    assert_eq!(second.before.unwrap().spend_usd, 0.0);
    let got = store.get(&key, 2_000).unwrap().unwrap();
    assert_eq!(got.spend_usd, 0.5);
    assert_eq!(got.pinned_model.as_deref(), Some("a"));
    flush(&store);
    assert_eq!(
        stored(&store, &key),
        Some(got),
        "flush writes what is cached"
    );
    assert_eq!(store.cache().dirty(), 0);
}

#[test]
fn a_dropped_store_writes_what_it_cached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let key = SessionKey::new("t", "c");
    {
        let store = open_with(&path, MB);
        turn(&store, &key, 1_000, "kept");
    }
    let store = super::tests::reopen(&path);
    let s = store.get(&key, 1_000).unwrap().unwrap();
    assert_eq!(s.pinned_model.as_deref(), Some("kept"));
}

#[test]
fn racing_first_turns_of_a_stored_but_uncached_session_converge() {
    // 1 MB: the racers meet in the cache. 1 byte: nothing fits, they write
    // through, under the same lock.
    for budget in [MB, 1] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open_with(dir.path(), budget));
        let key = SessionKey::new("t", "stored");
        // In sled only (as after a restart), not pinned yet.
        let unpinned = Session {
            turns: 1,
            last_seen_ms: 1_000,
            ..Default::default()
        };
        store
            .sessions_tree()
            .insert(key.as_bytes(), codec::encode_session(&unpinned))
            .unwrap();
        turn(&store, &SessionKey::new("t", "other"), 1_000, "x");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (store, key) = (Arc::clone(&store), key.clone());
                std::thread::spawn(move || turn(&store, &key, 2_000, &format!("model-{i}")))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let pinners: Vec<_> = results
            .iter()
            .filter(|u| u.before.as_ref().unwrap().pinned_model.is_none())
            .collect();
        assert_eq!(pinners.len(), 1, "exactly one racer created the pin");
        let pin = pinners[0].after.pinned_model.clone();
        assert!(results.iter().all(|u| u.after.pinned_model == pin));
        flush(&*store);
        let s = stored(&store, &key).unwrap();
        assert_eq!((s.turns, s.pinned_model), (9, pin), "cache of {budget} B");
    }
}

#[test]
fn the_cache_stays_bounded_and_evicted_sessions_load_from_sled() {
    let dir = tempfile::tempdir().unwrap();
    // Room for some 60 of the 1000 sessions.
    let budget = 16 * 1024;
    let store = Arc::new(open_with(dir.path(), budget));
    let keys: Vec<_> = (0..1000)
        .map(|i| SessionKey::new("t", &format!("c{i}")))
        .collect();
    // Four threads, no flush in between: once the cache is full of unwritten
    // sessions, updates write through instead of growing it.
    std::thread::scope(|scope| {
        for part in keys.chunks(250) {
            let store = &store;
            scope.spawn(move || {
                for (i, key) in part.iter().enumerate() {
                    turn(store, key, 1_000, &format!("m{i}"));
                    assert!(store.cache().bytes() <= budget);
                }
            });
        }
    });
    flush(&*store);
    // A second round: most are misses, loaded from sled, evicting clean ones.
    for key in &keys {
        let u = turn(&store, key, 2_000, "other");
        assert_eq!(u.before.map(|s| s.turns), Some(1), "{key:?}");
        assert!(store.cache().bytes() <= budget);
        assert!(store.cache().len() < 100);
    }
    for key in &keys {
        assert_eq!(store.get(key, 2_000).unwrap().unwrap().turns, 2);
    }
    flush(&*store);
    assert!(keys.iter().all(|k| stored(&store, k).unwrap().turns == 2));
}

#[test]
fn the_sweep_drops_expired_sessions_from_the_cache_too() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SledStore::open_with_cache(dir.path(), 8 << 20, Duration::from_secs(60), MB).unwrap();
    let idle = SessionKey::new("t", "idle");
    let busy = SessionKey::new("t", "busy");
    turn(&store, &idle, 1_000, "a");
    for now in [1_000, 50_000, 90_000] {
        turn(&store, &busy, now, "a");
    }
    // Never flushed: the sweep writes the cache back first.
    assert_eq!(store.sweep(149_000).unwrap(), 1);
    assert_eq!(store.cache().len(), 1, "the idle session left the cache");
    assert!(stored(&store, &idle).is_none());
    // It is gone, not resumed from memory, even read at an earlier time.
    assert!(store.get(&idle, 1_000).unwrap().is_none());
    assert_eq!(store.get(&busy, 100_000).unwrap().unwrap().turns, 3);
}

#[test]
fn tenant_days_are_read_back_before_and_after_their_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), MB);
    let day = TenantDay {
        day: 20_000,
        usd: 1.25,
        turns: 3,
    };
    store.put_tenant_day("acme", &day).unwrap();
    assert_eq!(store.tenant_day("acme", 20_000).unwrap(), Some(day));
    flush(&store);
    assert_eq!(store.tenant_day("acme", 20_000).unwrap(), Some(day));
    assert_eq!(store.tenant_day("acme", 20_001).unwrap(), None);
}

/// Counts the decision writes reaching the store.
struct Counting {
    inner: SledStore,
    /// Decision id → times its record was written.
    records: Mutex<HashMap<String, usize>>,
    completes: Mutex<usize>,
}

impl SessionStore for Counting {
    fn get(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Session>, StoreError> {
        self.inner.get(key, now_ms)
    }
    fn update(
        &self,
        key: &SessionKey,
        now_ms: u64,
        f: &mut dyn FnMut(Option<&Session>) -> Session,
    ) -> Result<Updated, StoreError> {
        self.inner.update(key, now_ms, f)
    }
    fn flush(&self) -> FlushFuture<'_> {
        self.inner.flush()
    }
    fn record_decision(&self, key: &SessionKey, entry: &DecisionEntry) -> Result<(), StoreError> {
        self.record_decisions(&[(key.clone(), entry.clone())])
    }
    fn record_decisions(&self, entries: &[(SessionKey, DecisionEntry)]) -> Result<(), StoreError> {
        let mut records = self.records.lock().unwrap();
        for (_, e) in entries {
            *records.entry(e.decision_id.clone()).or_default() += 1;
        }
        self.inner.record_decisions(entries)
    }
    fn decisions(&self, key: &SessionKey) -> Result<Vec<DecisionEntry>, StoreError> {
        self.inner.decisions(key)
    }
    fn complete_decision(
        &self,
        key: &SessionKey,
        turn: u32,
        decision_id: &str,
        result: &TurnResult,
    ) -> Result<bool, StoreError> {
        *self.completes.lock().unwrap() += 1;
        self.inner.complete_decision(key, turn, decision_id, result)
    }
    fn tenant_day(&self, tenant: &str, day: u64) -> Result<Option<TenantDay>, StoreError> {
        self.inner.tenant_day(tenant, day)
    }
    fn put_tenant_day(&self, tenant: &str, day: &TenantDay) -> Result<(), StoreError> {
        self.inner.put_tenant_day(tenant, day)
    }
    fn budget_overrides(&self) -> Result<Option<Overrides>, StoreError> {
        self.inner.budget_overrides()
    }
    fn put_budget_overrides(&self, overrides: &Overrides) -> Result<(), StoreError> {
        self.inner.put_budget_overrides(overrides)
    }
    fn sweep(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.inner.sweep(now_ms)
    }
}

fn entry(id: &str, turn: u32, result: Option<TurnResult>) -> DecisionEntry {
    DecisionEntry {
        decision_id: id.into(),
        turn,
        kind: 2,
        model: "m".into(),
        provider: "p".into(),
        reason: "r".into(),
        at_ms: 1,
        events: Vec::new(),
        result,
    }
}

fn writes(store: &Counting, id: &str) -> usize {
    store.records.lock().unwrap().get(id).copied().unwrap_or(0)
}

/// Polls `cond` for up to 10 s.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

#[tokio::test]
async fn a_held_record_is_written_once_with_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Counting {
        inner: open_with(dir.path(), MB),
        records: Mutex::default(),
        completes: Mutex::default(),
    });
    let (log, writer) =
        crate::decisions::DecisionLog::new(Arc::clone(&store) as Arc<dyn SessionStore>);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(writer.run(async move {
        let _ = stopped.await;
    }));
    let key = SessionKey::new("t", "c");
    turn(&store.inner, &key, 1, "m");
    let result = TurnResult {
        success: true,
        output_tokens: 7,
        attempts: 1,
        ..Default::default()
    };
    log.record(key.clone(), entry("d1", 1, None)).await;
    // A record that has its result is written within `WRITE_EVERY`; once
    // it is, the writer has taken `d1` too, and holds it.
    log.record(key.clone(), entry("", 2, Some(result.clone())))
        .await;
    assert!(eventually(|| writes(&store, "") == 1).await);
    assert_eq!(writes(&store, "d1"), 0, "held for its result");
    log.complete(key.clone(), 1, "d1".into(), result.clone())
        .await;
    log.sync().await;
    let timeline = store.decisions(&key).unwrap();
    assert_eq!(timeline.len(), 2);
    assert_eq!(timeline[0].result.as_ref(), Some(&result));
    assert_eq!(writes(&store, "d1"), 1, "written once, complete");
    assert_eq!(*store.completes.lock().unwrap(), 0, "no read-modify-write");
    // A record whose result never comes is written when its time is up.
    log.record(key.clone(), entry("d3", 3, None)).await;
    assert!(eventually(|| writes(&store, "d3") == 1).await);
    let _ = stop.send(());
    writer.await.unwrap();
    assert!(store.decisions(&key).unwrap()[2].result.is_none());
}

#[tokio::test]
async fn sync_and_shutdown_write_held_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), MB);
    let key = SessionKey::new("t", "c");
    turn(&store, &key, 1, "m");
    let store: Arc<dyn SessionStore> = Arc::new(store);
    let (log, writer) = crate::decisions::DecisionLog::new(Arc::clone(&store));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(writer.run(async move {
        let _ = stopped.await;
    }));
    log.record(key.clone(), entry("d1", 1, None)).await;
    log.sync().await;
    assert_eq!(
        store.decisions(&key).unwrap().len(),
        1,
        "readable after sync"
    );
    // Held when the writer stops: written before it returns.
    log.record(key.clone(), entry("d2", 2, None)).await;
    log.record(key.clone(), entry("", 3, Some(TurnResult::default())))
        .await;
    stop.send(()).unwrap();
    writer.await.unwrap();
    let turns = super::tests::turns(&*store, &key);
    assert_eq!(turns, [1, 2, 3]);
}
