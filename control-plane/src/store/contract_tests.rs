//! One contract for every [`SessionStore`]: each case runs against sled and
//! against a real `redis-server` (scripts/setup-redis.sh installs it).

use std::{sync::Arc, time::Duration};

use keel_testkit::RedisServer;

use super::activity_by::minute;
use super::{
    ConversationSummary, DecisionEntry, Durability, ListBy, ModelDay, RedisSettings, RedisStore,
    SessionKey, SessionStore, SledStore, TurnResult, now_ms,
};
use crate::budget::{Overrides, TenantDay};

pub(super) const TTL: Duration = Duration::from_secs(3600);

/// A store under test and what keeps it alive.
pub(super) struct Subject {
    pub store: Arc<dyn SessionStore>,
    _dir: tempfile::TempDir,
    _redis: Option<RedisServer>,
}

pub(super) fn sled() -> Subject {
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
        ca_file: None,
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
    model_days_add_up_per_model_tenant_and_day,
    budget_overrides_round_trip,
    conversations_list_newest_first_paged_and_filtered,
);

/// Each store with more newer conversations than it reads per filtered page.
mod a_filtered_page_reads_only_its_field {
    #[test]
    fn sled() {
        let newer = crate::store::activity::MAX_SCAN as u64 + 1;
        super::a_filtered_page_reads_only_its_field(&*super::sled().store, newer);
    }
    #[test]
    fn redis() {
        let newer = crate::store::redis_store::MAX_LIST_SCAN as u64 + 1;
        super::a_filtered_page_reads_only_its_field(&*super::redis().store, newer);
    }
}

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

pub(super) fn pin_turn(
    store: &dyn SessionStore,
    key: &SessionKey,
    now: u64,
    pin: &str,
) -> super::Updated {
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

fn model_days_add_up_per_model_tenant_and_day(store: &dyn SessionStore) {
    let today = crate::budget::utc_day(now_ms());
    let served = |day, model: &str, tenant: &str, usd| ModelDay {
        day,
        model: model.into(),
        tenant: tenant.into(),
        usd,
        turns: 1,
        input_tokens: 1000,
        output_tokens: 50,
        cached_input_tokens: 200,
    };
    assert!(store.model_days(today - 1, today).unwrap().is_empty());
    // Two writers at once (replicas on Redis, report tasks on sled).
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..20 {
                    store
                        .add_model_day(&served(today, "small", "acme", 0.25))
                        .unwrap();
                }
            });
        }
    });
    store
        .add_model_day(&served(today, "strong", "acme", 2.0))
        .unwrap();
    store
        .add_model_day(&served(today - 1, "small", "beta", 1.0))
        .unwrap();
    futures_flush(store);
    let found = store.model_days(today - 1, today).unwrap();
    let names: Vec<(u64, &str, &str)> = found
        .iter()
        .map(|d| (d.day, d.model.as_str(), d.tenant.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (today - 1, "small", "beta"),
            (today, "small", "acme"),
            (today, "strong", "acme")
        ]
    );
    let small = &found[1];
    assert_eq!((small.usd, small.turns), (10.0, 40));
    assert_eq!(
        (
            small.input_tokens,
            small.output_tokens,
            small.cached_input_tokens
        ),
        (40_000, 2_000, 8_000)
    );
    assert_eq!(store.model_days(today, today).unwrap().len(), 2, "per day");
}

fn budget_overrides_round_trip(store: &dyn SessionStore) {
    assert!(store.budget_overrides().unwrap().is_none());
    let overrides = Overrides::default();
    store.put_budget_overrides(&overrides).unwrap();
    assert_eq!(store.budget_overrides().unwrap(), Some(overrides));
}

fn touch(store: &dyn SessionStore, tenant: &str, id: &str, at: u64, nudges: u32) {
    store
        .update(&SessionKey::new(tenant, id), at, &mut |cur| {
            let mut s = cur.cloned().unwrap_or_default();
            s.turns += 1;
            s.last_seen_ms = at;
            s.divergence.nudges = nudges;
            s
        })
        .unwrap();
}

/// Every page of the list, `limit` at a time, as (tenant, id).
fn list_all(
    store: &dyn SessionStore,
    keep: &dyn Fn(&ConversationSummary) -> bool,
    limit: usize,
    now: u64,
) -> Vec<ConversationSummary> {
    let (mut all, mut cursor) = (Vec::new(), None::<Vec<u8>>);
    for _ in 0..20 {
        let page = store
            .list_conversations(Default::default(), keep, cursor.as_deref(), limit, now)
            .unwrap();
        assert!(page.items.len() <= limit);
        all.extend(page.items);
        cursor = page.next;
        if cursor.is_none() {
            return all;
        }
    }
    panic!("the list does not end");
}

fn conversations_list_newest_first_paged_and_filtered(store: &dyn SessionStore) {
    let t0 = now_ms();
    let idle = t0 - TTL.as_millis() as u64 - 1;
    touch(store, "a", "idle", idle, 0);
    touch(store, "a", "c1", t0, 0);
    touch(store, "b", "c2", t0 + 1, 2);
    // Two in the same millisecond: each listed once, across pages.
    touch(store, "a", "c3", t0 + 2, 0);
    touch(store, "b", "c4", t0 + 2, 0);
    futures_flush(store);
    let now = t0 + 10;
    let ids = |items: &[ConversationSummary]| -> Vec<String> {
        items.iter().map(|s| s.conversation_id.clone()).collect()
    };
    for limit in [1, 2, 10] {
        let all = list_all(store, &|_| true, limit, now);
        let got = ids(&all);
        assert_eq!(got.len(), 4, "{got:?} (pages of {limit})");
        let mut newest = got[..2].to_vec();
        newest.sort();
        assert_eq!(newest, ["c3", "c4"], "pages of {limit}");
        assert_eq!(got[2..], ["c2", "c1"], "pages of {limit}");
    }
    let c2 = &list_all(store, &|s| s.nudges > 0, 10, now)[..];
    assert_eq!(ids(c2), ["c2"], "filtered by nudges");
    assert_eq!((c2[0].tenant.as_str(), c2[0].turns), ("b", 1));
    assert_eq!(c2[0].last_seen_ms, t0 + 1);
    let a = list_all(store, &|s| s.tenant == "a", 1, now);
    assert_eq!(ids(&a), ["c3", "c1"], "filtered by tenant");

    // Active again (and served degraded once): it moves to the top, once.
    store.mark_degraded(&SessionKey::new("a", "c1"));
    touch(store, "a", "c1", t0 + 3, 0);
    futures_flush(store);
    let all = list_all(store, &|_| true, 3, now);
    assert_eq!(ids(&all[..1]), ["c1"]);
    assert_eq!(all.len(), 4);
    assert_eq!((all[0].turns, all[0].degraded), (2, true));
    assert!(all[1..].iter().all(|s| !s.degraded));
}

/// A turn of `tenant/id` on `profile`, pinned to `model`, at `at`.
fn turn_on(store: &dyn SessionStore, key: (&str, &str), at: u64, profile: &str, model: &str) {
    store
        .update(&SessionKey::new(key.0, key.1), at, &mut |cur| {
            let mut s = cur.cloned().unwrap_or_default();
            s.turns += 1;
            s.last_seen_ms = at;
            s.profile = profile.into();
            s.pinned_model = Some(model.into());
            s
        })
        .unwrap();
}

/// A match older than `newer` others is on the first page filtered by any
/// of its fields, and leaves a field's index when it changes.
fn a_filtered_page_reads_only_its_field(store: &dyn SessionStore, newer: u64) {
    let t0 = now_ms();
    turn_on(store, ("x", "old"), t0, "RARE", "rare-1");
    // From a few threads: Redis's round trips add up.
    std::thread::scope(|scope| {
        for part in 0..4 {
            scope.spawn(move || {
                for i in (part..newer).step_by(4) {
                    let id = format!("n{i}");
                    turn_on(store, ("y", &id), t0 + 1 + i, "AGENT", "common-1");
                }
            });
        }
    });
    futures_flush(store);
    let now = t0 + newer + 10;
    fn keep_for(by: ListBy<'_>) -> impl Fn(&ConversationSummary) -> bool {
        move |s| {
            by.tenant.is_none_or(|t| s.tenant == t)
                && by.profile.is_none_or(|p| s.profile == p)
                && by
                    .model
                    .is_none_or(|m| s.pinned_model.as_deref() == Some(m))
        }
    }
    let page = |by: ListBy<'_>| {
        let p = store
            .list_conversations(by, &keep_for(by), None, 50, now)
            .unwrap();
        let ids: Vec<String> = p.items.iter().map(|s| s.conversation_id.clone()).collect();
        (ids, p.next.is_some())
    };
    let old = (vec!["old".to_owned()], false);
    let by_model = ListBy {
        model: Some("rare-1"),
        ..ListBy::default()
    };
    assert_eq!(page(by_model), old, "by model, on the first page");
    let by_profile = ListBy {
        profile: Some("RARE"),
        ..ListBy::default()
    };
    assert_eq!(page(by_profile), old, "by profile");
    let by_tenant = ListBy {
        tenant: Some("x"),
        ..ListBy::default()
    };
    assert_eq!(page(by_tenant), old, "by tenant");
    // Combined: read from the most selective (the model's one entry).
    let none = ListBy {
        tenant: Some("y"),
        profile: Some("AGENT"),
        model: Some("rare-1"),
    };
    assert_eq!(page(none), (vec![], false), "combined, from the model");
    // Newest first to the minute (sled keeps a field's entries by minute),
    // each page sorted, a page from the cursor of the one before, nothing
    // twice.
    for by in [("y", ""), ("", "AGENT"), ("y", "AGENT")] {
        let by = ListBy {
            tenant: Some(by.0).filter(|t| !t.is_empty()),
            profile: Some(by.1).filter(|p| !p.is_empty()),
            model: None,
        };
        let (mut got, mut cursor) = (Vec::new(), None::<Vec<u8>>);
        let mut oldest_minute = u64::MAX;
        for _ in 0..3 {
            let p = store
                .list_conversations(by, &keep_for(by), cursor.as_deref(), 40, now)
                .unwrap();
            assert_eq!(p.items.len(), 40, "{by:?}");
            let times: Vec<u64> = p.items.iter().map(|s| s.last_seen_ms).collect();
            assert!(times.is_sorted_by(|a, b| a >= b), "{by:?}: {times:?}");
            assert!(minute(times[0]) <= oldest_minute, "{by:?}");
            oldest_minute = minute(times[39]);
            got.extend(p.items.into_iter().map(|s| s.conversation_id));
            cursor = Some(p.next.expect("more"));
        }
        let distinct: std::collections::HashSet<_> = got.iter().collect();
        assert_eq!(distinct.len(), 120, "{by:?}");
        assert!(got.iter().all(|id| id.starts_with('n')), "{by:?}");
    }

    // Pinned elsewhere and moved to another profile: out of the old ones.
    turn_on(store, ("x", "old"), now, "OTHER", "rare-2");
    futures_flush(store);
    assert_eq!(page(by_model), (vec![], false), "left its old model");
    assert_eq!(page(by_profile), (vec![], false), "left its old profile");
    let by_new = ListBy {
        model: Some("rare-2"),
        ..ListBy::default()
    };
    assert_eq!(page(by_new), old, "in its new model");
}

pub(super) fn futures_flush(store: &dyn SessionStore) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.flush()).unwrap();
}
