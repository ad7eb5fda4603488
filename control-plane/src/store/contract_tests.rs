//! One contract for every [`SessionStore`]: each case runs against sled and
//! against a real `redis-server` (scripts/setup-redis.sh installs it).

use std::{sync::Arc, time::Duration};

use keel_testkit::RedisServer;

use super::{
    DecisionEntry, Durability, RedisSettings, RedisStore, SessionKey, SessionStore, SledStore,
    StoreError, TurnResult, now_ms,
};
use crate::budget::{Overrides, TenantDay};

const TTL: Duration = Duration::from_secs(3600);

/// A store under test and what keeps it alive.
struct Subject {
    store: Arc<dyn SessionStore>,
    _dir: tempfile::TempDir,
    _redis: Option<RedisServer>,
}

fn sled() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 * 1024 * 1024, TTL).unwrap();
    Subject {
        store: Arc::new(store),
        _dir: dir,
        _redis: None,
    }
}

pub(super) fn settings(redis: &RedisServer, durability: Durability) -> RedisSettings {
    RedisSettings {
        url: redis.url(),
        password_env: None,
        sentinels: Vec::new(),
        master: None,
        durability,
        timeout: Duration::from_secs(2),
    }
}

fn redis() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), &[]).unwrap();
    let store = RedisStore::open(&settings(&server, Durability::Strict), TTL).unwrap();
    Subject {
        store: Arc::new(store),
        _dir: dir,
        _redis: Some(server),
    }
}

/// `case(store)` against each backend.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn sled() {
                super::$case(&*super::sled().store);
            }
            #[test]
            fn redis() {
                super::$case(&*super::redis().store);
            }
        }
    )*};
}

contract!(
    racing_first_turns_converge_on_one_pin,
    an_update_sees_the_one_before_it,
    an_idle_session_is_gone_after_its_ttl,
    a_timeline_is_in_turn_order_and_results_join_their_record,
    tenant_days_add_up,
    budget_overrides_round_trip,
);

fn entry(id: &str, turn: u32) -> DecisionEntry {
    DecisionEntry {
        decision_id: id.into(),
        turn,
        kind: 1,
        model: "m".into(),
        provider: "p".into(),
        reason: "r".into(),
        at_ms: now_ms(),
        events: Vec::new(),
        result: None,
    }
}

fn pin_turn(store: &dyn SessionStore, key: &SessionKey, now: u64, pin: &str) -> super::Updated {
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

fn racing_first_turns_converge_on_one_pin(store: &dyn SessionStore) {
    let key = SessionKey::new("t", "race");
    let now = now_ms();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let key = &key;
                s.spawn(move || pin_turn(store, key, now, &format!("model-{i}")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|u| u.before.is_none()).count(),
        1,
        "exactly one racer created the session"
    );
    let pins: std::collections::HashSet<_> = results
        .iter()
        .map(|u| u.after.pinned_model.clone())
        .collect();
    assert_eq!(pins.len(), 1, "{pins:?}");
    let stored = store.get(&key, now).unwrap().unwrap();
    assert_eq!(stored.turns, 8, "no turn lost");
    assert_eq!(Some(stored.pinned_model), pins.into_iter().next());
}

fn an_update_sees_the_one_before_it(store: &dyn SessionStore) {
    let key = SessionKey::new("t", "seq");
    let now = now_ms();
    let first = pin_turn(store, &key, now, "a");
    assert!(first.before.is_none());
    let second = pin_turn(store, &key, now + 1, "b");
    assert_eq!(second.before.as_ref().map(|s| s.turns), Some(1));
    assert_eq!(
        second.after.pinned_model.as_deref(),
        Some("a"),
        "a pin stays"
    );
    assert!(
        store
            .get(&SessionKey::new("t", "other"), now)
            .unwrap()
            .is_none()
    );
    futures_flush(store);
}

fn an_idle_session_is_gone_after_its_ttl(store: &dyn SessionStore) {
    let key = SessionKey::new("t", "idle");
    let now = now_ms();
    pin_turn(store, &key, now, "a");
    let ttl = TTL.as_millis() as u64;
    assert!(store.get(&key, now + ttl - 1).unwrap().is_some());
    assert!(
        store.get(&key, now + ttl).unwrap().is_none(),
        "idle past TTL"
    );
    // An expired session is started afresh, not resumed.
    let reborn = pin_turn(store, &key, now + ttl, "b");
    assert!(reborn.before.is_none());
    assert_eq!(reborn.after.pinned_model.as_deref(), Some("b"));
}

fn a_timeline_is_in_turn_order_and_results_join_their_record(store: &dyn SessionStore) {
    let key = SessionKey::new("t", "timeline");
    pin_turn(store, &key, now_ms(), "m");
    store.record_decision(&key, &entry("d2", 2)).unwrap();
    store
        .record_decisions(&[(key.clone(), entry("d1", 1)), (key.clone(), entry("d3", 3))])
        .unwrap();
    let result = TurnResult {
        success: true,
        latency_ms: 42,
        cost_usd: 0.5,
        ..TurnResult::default()
    };
    assert!(store.complete_decision(&key, 2, "d2", &result).unwrap());
    assert!(
        !store.complete_decision(&key, 2, "nope", &result).unwrap(),
        "unknown decision"
    );
    let timeline = store.decisions(&key).unwrap();
    let turns: Vec<u32> = timeline.iter().map(|d| d.turn).collect();
    assert_eq!(turns, [1, 2, 3]);
    assert_eq!(timeline[1].result.as_ref(), Some(&result));
    assert!(timeline[0].result.is_none());
    assert!(
        store
            .decisions(&SessionKey::new("t", "time"))
            .unwrap()
            .is_empty()
    );
}

fn tenant_days_add_up(store: &dyn SessionStore) {
    let today = crate::budget::utc_day(now_ms());
    assert_eq!(store.tenant_day("acme", today).unwrap(), None);
    store.add_tenant_day("acme", today, 1.25, 1).unwrap();
    let total = store.add_tenant_day("acme", today, 0.5, 2).unwrap();
    assert_eq!((total.usd, total.turns), (1.75, 3));
    assert_eq!(store.tenant_day("acme", today).unwrap(), Some(total));
    let yesterday = today - 1;
    assert_eq!(
        store.tenant_day("acme", yesterday).unwrap(),
        None,
        "per day"
    );
    let set = TenantDay {
        day: yesterday,
        usd: 2.0,
        turns: 4,
    };
    store.put_tenant_day("acme", &set).unwrap();
    futures_flush(store);
    assert_eq!(store.tenant_day("acme", yesterday).unwrap(), Some(set));
}

fn budget_overrides_round_trip(store: &dyn SessionStore) {
    assert!(store.budget_overrides().unwrap().is_none());
    let overrides = Overrides::default();
    store.put_budget_overrides(&overrides).unwrap();
    assert_eq!(store.budget_overrides().unwrap(), Some(overrides));
}

fn futures_flush(store: &dyn SessionStore) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.flush()).unwrap();
}

#[test]
fn redis_refuses_a_server_that_may_lose_acknowledged_pins() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), &["--appendfsync", "everysec"]).unwrap();
    let err = RedisStore::open(&settings(&server, Durability::Strict), TTL)
        .err()
        .expect("strict durability refuses appendfsync everysec");
    assert!(matches!(err, StoreError::Durability(_)), "{err}");
    assert!(err.to_string().contains("best-effort"), "{err}");
    let store = RedisStore::open(&settings(&server, Durability::BestEffort), TTL).unwrap();
    assert_eq!(store.guarantee(), super::redis_store::Guarantee::None);
    // min-replicas-to-write is the other promise: pins wait for a replica.
    let replica_dir = dir.path().join("replica");
    let replica_of = format!("127.0.0.1 {}", server.port);
    let replica = RedisServer::start(&replica_dir, &["--replicaof", &replica_of]).unwrap();
    server
        .command("CONFIG SET min-replicas-to-write 1")
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Writable once the replica has acknowledged (its lag is known).
    while !server.command("SET probe 1").unwrap().starts_with("+OK") {
        assert!(
            std::time::Instant::now() < deadline,
            "replica never connected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let store = RedisStore::open(&settings(&server, Durability::Strict), TTL).unwrap();
    assert_eq!(
        store.guarantee(),
        super::redis_store::Guarantee::Replicas(1)
    );
    let key = SessionKey::new("t", "replicated");
    pin_turn(&store, &key, now_ms(), "strong");
    futures_flush(&store);
    // The replica gone, a pin cannot be acknowledged.
    drop(replica);
    let err = (0..200)
        .find_map(|_| {
            let failed = store
                .update(&key, now_ms(), &mut |c| c.cloned().unwrap_or_default())
                .err()
                .or_else(|| futures_flush_err_opt(&store));
            if failed.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            failed
        })
        .expect("writes fail without a replica");
    assert!(
        matches!(err, StoreError::Durability(_)) || err.to_string().contains("NOREPLICAS"),
        "{err}"
    );
}

fn futures_flush_err_opt(store: &dyn SessionStore) -> Option<StoreError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.flush()).err()
}

#[test]
fn redis_keeps_pins_across_a_server_restart_with_aof() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RedisServer::start(dir.path(), &[]).unwrap();
    let store = RedisStore::open(&settings(&server, Durability::Strict), TTL).unwrap();
    let key = SessionKey::new("t", "kept");
    let now = now_ms();
    pin_turn(&store, &key, now, "strong");
    futures_flush(&store);
    server.restart().unwrap();
    // The same store instance reconnects by itself.
    let found = (0..100).find_map(|_| {
        store.get(&key, now).ok().or_else(|| {
            std::thread::sleep(Duration::from_millis(20));
            None
        })
    });
    let session = found.expect("store answers again").expect("pin kept");
    assert_eq!(session.pinned_model.as_deref(), Some("strong"));
}

#[test]
fn redis_fails_fast_while_the_server_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RedisServer::start(dir.path(), &[]).unwrap();
    let mut settings = settings(&server, Durability::Strict);
    settings.timeout = Duration::from_millis(300);
    let store = RedisStore::open(&settings, TTL).unwrap();
    server.kill9();
    let started = std::time::Instant::now();
    assert!(store.get(&SessionKey::new("t", "c"), now_ms()).is_err());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "failed in {:?}",
        started.elapsed()
    );
}

#[test]
fn redis_replicas_share_tenant_totals_parked_keys_and_caps() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), &[]).unwrap();
    let open = || RedisStore::open(&settings(&server, Durability::Strict), TTL).unwrap();
    let (a, b) = (open(), open());
    assert!(a.shared());
    let today = crate::budget::utc_day(now_ms());
    // Budgets hold across replicas: both add to one total.
    std::thread::scope(|s| {
        for store in [&a, &b] {
            s.spawn(move || {
                for _ in 0..50 {
                    store.add_tenant_day("acme", today, 0.25, 1).unwrap();
                }
            });
        }
    });
    let total = b.tenant_day("acme", today).unwrap().unwrap();
    assert_eq!((total.usd, total.turns), (25.0, 100));
    // A key parked on one replica is parked for the other, until it is not.
    let now = now_ms();
    a.park_key("alpha/alpha-main", now + 30_000).unwrap();
    a.park_key("alpha/alpha-backup", now + 10).unwrap();
    assert_eq!(
        b.parked_keys(now + 20).unwrap(),
        [("alpha/alpha-main".to_owned(), now + 30_000)]
    );
    assert!(b.parked_keys(now + 30_000).unwrap().is_empty());
    let overrides = Overrides {
        global: crate::budget::Caps {
            per_conversation_turns: Some(3),
            ..Default::default()
        },
        ..Default::default()
    };
    a.put_budget_overrides(&overrides).unwrap();
    assert_eq!(b.budget_overrides().unwrap(), Some(overrides));
    // sled shares nothing: it has one control plane.
    let sled = sled();
    assert!(!sled.store.shared());
    sled.store
        .park_key("alpha/alpha-main", now + 30_000)
        .unwrap();
    assert!(sled.store.parked_keys(now).unwrap().is_empty());
}

#[test]
fn redis_follows_a_sentinel_failover_and_keeps_acknowledged_pins() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = RedisServer::start(&dir.path().join("primary"), &[]).unwrap();
    let replica_of = format!("127.0.0.1 {}", primary.port);
    let replica =
        RedisServer::start(&dir.path().join("replica"), &["--replicaof", &replica_of]).unwrap();
    primary
        .command("CONFIG SET min-replicas-to-write 1")
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !primary.command("SET probe 1").unwrap().starts_with("+OK") {
        assert!(
            std::time::Instant::now() < deadline,
            "replica never caught up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sentinel =
        RedisServer::start_sentinel(&dir.path().join("sentinel"), "keel", primary.port).unwrap();
    let mut s = settings(&primary, Durability::Strict);
    s.sentinels = vec![format!("127.0.0.1:{}", sentinel.port)];
    s.master = Some("keel".into());
    let store = RedisStore::open(&s, TTL).unwrap();
    assert_eq!(
        store.guarantee(),
        super::redis_store::Guarantee::Replicas(1)
    );
    let key = SessionKey::new("t", "failover");
    let now = now_ms();
    pin_turn(&store, &key, now, "strong");
    futures_flush(&store);

    primary.kill9();
    // Sentinel promotes the replica; the store asks it again after errors.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let session = loop {
        if let Ok(Some(s)) = store.get(&key, now) {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer after the failover; sentinel log:\n{}",
            std::fs::read_to_string(dir.path().join("sentinel/redis.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(session.pinned_model.as_deref(), Some("strong"));
    assert!(replica.command("ROLE").unwrap().contains("master"));
    // And writes go to the new primary.
    let after = pin_turn(&store, &key, now + 1, "other");
    assert_eq!(after.after.pinned_model.as_deref(), Some("strong"));
    assert_eq!(after.after.turns, 2);
}
