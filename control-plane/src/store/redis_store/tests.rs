//! The Redis store beyond the shared contract (contract_tests.rs): the
//! durability check, a server restart, a server down, replicas sharing
//! totals, parked keys and caps, a Sentinel failover. Each starts real
//! `redis-server`s (scripts/setup-redis.sh installs them).

use std::time::Duration;

use keel_testkit::RedisServer;

use super::super::contract_tests::{TTL, futures_flush, pin_turn, settings, sled};
use super::{Guarantee, RedisSettings, RedisStore};
use crate::{
    budget::Overrides,
    store::{Durability, SessionKey, SessionStore, StoreError, now_ms},
};

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
    assert_eq!(store.guarantee(), Guarantee::None);
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
    assert_eq!(store.guarantee(), Guarantee::Replicas(1));
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
    assert_eq!(store.guarantee(), Guarantee::Replicas(1));
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

#[test]
fn redis_lists_a_tenants_conversations_newest_activity_first_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), &[]).unwrap();
    let store = RedisStore::open(&settings(&server, Durability::Strict), TTL).unwrap();
    let now = now_ms();
    for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
        pin_turn(&store, &SessionKey::new("acme", id), now + i as u64, "m");
    }
    pin_turn(&store, &SessionKey::new("other", "x"), now + 10, "m");
    // `a` comes back: newest again.
    pin_turn(&store, &SessionKey::new("acme", "a"), now + 20, "m");
    let ids = |page: &[(String, u64)]| page.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    let first = store
        .conversations_by_activity("acme", None, 2, now + 20)
        .unwrap();
    assert_eq!(ids(&first), ["a", "d"]);
    assert_eq!(first[0].1, now + 20);
    let next = store
        .conversations_by_activity("acme", Some(first[1].1), 2, now + 20)
        .unwrap();
    assert_eq!(ids(&next), ["c", "b"], "the page after, no repeats");
    // Idle past the TTL: gone from the listing.
    let later = now + 2 + TTL.as_millis() as u64;
    let live = store
        .conversations_by_activity("acme", None, 10, later)
        .unwrap();
    assert_eq!(ids(&live), ["a", "d"]);
}

#[test]
fn redis_over_tls_trusts_the_configured_ca_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (server, tls) = tls_server(dir.path());
    let store = RedisStore::open(&tls, TTL).unwrap();
    let conversation = SessionKey::new("t", "over-tls");
    pin_turn(&store, &conversation, now_ms(), "strong");
    futures_flush(&store);
    let stored = store.get(&conversation, now_ms()).unwrap().unwrap();
    assert_eq!(stored.pinned_model.as_deref(), Some("strong"));
    let on_server = server.command("KEYS *").unwrap();
    assert!(on_server.contains("over-tls"), "{on_server}");

    // A certificate another CA signed is refused within the timeout.
    let other = tempfile::tempdir().unwrap();
    let mut wrong = tls.clone();
    wrong.ca_file = Some(keel_testkit::Pki::new(other.path()).ca);
    let started = std::time::Instant::now();
    assert!(RedisStore::open(&wrong, TTL).is_err(), "untrusted server");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Plain text to the TLS port is no connection either.
    let mut plain = tls.clone();
    plain.url = plain.url.replace("rediss://", "redis://");
    plain.ca_file = None;
    assert!(RedisStore::open(&plain, TTL).is_err());
}

/// A server that also listens with TLS (its certificate signed by a test
/// CA, written in `dir`), and settings that reach it over `rediss://`.
fn tls_server(dir: &std::path::Path) -> (RedisServer, RedisSettings) {
    let pki = keel_testkit::Pki::new(dir);
    let (server, url) = RedisServer::start_tls(dir, &pki).unwrap();
    let mut tls = settings(&server, Durability::Strict);
    tls.url = url;
    tls.ca_file = Some(pki.ca.clone());
    tls.validate().unwrap();
    (server, tls)
}

#[test]
fn redis_indexes_a_store_from_before_the_profile_and_model_indexes_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), &[]).unwrap();
    let now = now_ms();
    {
        let store = RedisStore::open(&settings(&server, Durability::Strict), TTL).unwrap();
        pin_turn(&store, &SessionKey::new("acme", "a"), now, "rare");
        pin_turn(&store, &SessionKey::new("acme", "b"), now + 1, "common");
    }
    // What an earlier version left: no profile or model sets, no mark.
    let mut c = redis::Client::open(server.url().as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let deleted: u32 = redis::cmd("DEL")
        .arg("keel:ap:")
        .arg("keel:am:rare")
        .arg("keel:am:common")
        .arg(super::backfill::DONE_KEY)
        .query(&mut c)
        .unwrap();
    assert_eq!(deleted, 4, "the sets and the mark were there");
    let store = RedisStore::open(&settings(&server, Durability::Strict), TTL).unwrap();
    let by = crate::store::ListBy {
        model: Some("rare"),
        ..Default::default()
    };
    let keep = |s: &crate::store::ConversationSummary| s.pinned_model.as_deref() == Some("rare");
    let page = store
        .list_conversations(by, &keep, None, 10, now + 2)
        .unwrap();
    let ids: Vec<_> = page.items.iter().map(|s| &s.conversation_id).collect();
    assert_eq!(ids, ["a"]);
    // Expiring like a set a write made.
    let ttl: i64 = redis::cmd("PTTL")
        .arg("keel:am:rare")
        .query(&mut c)
        .unwrap();
    assert!(ttl > 0 && ttl <= TTL.as_millis() as i64, "{ttl}");
    let done: bool = redis::cmd("EXISTS")
        .arg(super::backfill::DONE_KEY)
        .query(&mut c)
        .unwrap();
    assert!(done);
}
