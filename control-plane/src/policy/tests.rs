use std::{
    collections::HashSet,
    sync::atomic::{AtomicU64, AtomicUsize},
    time::Instant,
};

use keel::pb::RequestFeatures;

use super::*;
use crate::{
    config::{Config, parse},
    signals::AttemptKind,
};

const BASE: &str = r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[[providers]]
name = "alpha"
api = "openai"
base_url = "http://127.0.0.1:9/v1"
keys = [{ ref = "a1", max_in_flight = 5 }, { ref = "a2", max_in_flight = 5 }]

[[models]]
name = "small"
provider = "alpha"
upstream_model = "small-up"
tier = 1
input_usd_per_mtok = 0.1
output_usd_per_mtok = 0.4
context_tokens = 128000
capabilities = ["tools"]
latency = "300ms"

[[models]]
name = "mid"
provider = "alpha"
upstream_model = "mid-up"
tier = 2
input_usd_per_mtok = 1.0
output_usd_per_mtok = 4.0
context_tokens = 128000
capabilities = ["tools"]
latency = "200ms"

[[models]]
name = "strong"
provider = "alpha"
upstream_model = "strong-up"
tier = 3
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0
context_tokens = 128000
capabilities = ["tools"]
latency = "100ms"
"#;

struct World {
    config: Config,
    signals: Signals,
    capacity: Capacity,
    spread: AtomicUsize,
    explore: AtomicU64,
}

impl World {
    fn new(extra: &str) -> Self {
        let config = parse(&format!("{BASE}{extra}")).unwrap();
        Self {
            signals: Signals::new(&config.catalog, config.health),
            capacity: Capacity::new(&config.catalog, config.load.clone()),
            spread: AtomicUsize::new(0),
            explore: AtomicU64::new(0),
            config,
        }
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            catalog: &self.config.catalog,
            signals: &self.signals,
            default_latency_ms: 1000.0,
            spread: &self.spread,
            capacity: &self.capacity,
            explore: &self.explore,
            explore_every: self.config.routing.explore_every,
        }
    }

    fn profile(&self, name: &str) -> &Profile {
        &self.config.profiles[name]
    }

    fn name(&self, c: &Choice) -> &str {
        &self.config.catalog.deployments()[c.slot.deployment].name
    }

    fn fill(&self, key: usize, n: usize) {
        for _ in 0..n {
            self.capacity.started(0, key, Instant::now());
        }
    }
}

fn easy() -> RequestFeatures {
    RequestFeatures {
        estimated_prompt_tokens: 10,
        ..Default::default()
    }
}

#[test]
fn batch_spreads_over_keys_and_avoids_parked_ones() {
    let w = World::new("");
    let p = w.policy();
    let keys: HashSet<usize> = (0..4)
        .map(|_| {
            p.choose(w.profile("BATCH"), None, &easy())
                .unwrap()
                .slot
                .key
        })
        .collect();
    assert_eq!(keys.len(), 2, "both keys used");
    w.capacity.park(0, 0, Some(60), std::time::Instant::now());
    for _ in 0..4 {
        let c = p.choose(w.profile("BATCH"), None, &easy()).unwrap();
        assert_eq!((w.name(&c), c.slot.key), ("small", 1), "parked key avoided");
    }
}

#[test]
fn batch_is_shed_first_and_agent_never() {
    let w = World::new("");
    let p = w.policy();
    // 4 of 5 in flight on both keys: busy.
    w.fill(0, 4);
    w.fill(1, 4);
    match p.choose(w.profile("BATCH"), None, &easy()) {
        Err(PolicyError::Shed {
            retry_after_secs, ..
        }) => assert_eq!(retry_after_secs, 2),
        other => panic!("BATCH not shed: {other:?}"),
    }
    // CHAT still has room (busy is not full).
    assert!(p.choose(w.profile("CHAT"), None, &easy()).is_ok());
    w.fill(0, 1);
    w.fill(1, 1);
    assert!(matches!(
        p.choose(w.profile("CHAT"), None, &easy()),
        Err(PolicyError::Shed { .. })
    ));
    // AGENT: capacity goes here first.
    let c = p.choose(w.profile("AGENT"), None, &easy()).unwrap();
    assert_eq!(w.name(&c), "strong");
    assert!(matches!(
        p.place(w.profile("AGENT"), "mid", Affinity::default()),
        Placement::Healthy(..)
    ));
}

#[test]
fn chat_takes_the_lowest_ttft_and_explores_rarely_but_never_when_pinned() {
    // 1 in 20 decisions explores.
    let w = World::new("[routing]\nexplore_rate = 0.05\n");
    let p = w.policy();
    let mut explored = 0;
    for i in 1..=40 {
        let c = p.choose(w.profile("CHAT"), None, &easy()).unwrap();
        if i % 20 == 0 {
            assert_ne!(w.name(&c), "strong", "decision {i} explores");
            assert!(c.reason.starts_with("exploring"), "{}", c.reason);
            explored += 1;
        } else {
            assert_eq!(w.name(&c), "strong", "decision {i}: lowest expected ttft");
        }
    }
    assert_eq!(explored, 2);
    let mut locked = w.profile("CHAT").clone();
    locked.session_lock = true;
    for _ in 0..40 {
        let c = p.choose(&locked, None, &easy()).unwrap();
        assert_eq!(w.name(&c), "strong", "a locked profile never explores");
    }
}

#[test]
fn chat_probes_a_model_nobody_measured_once_and_settles_on_it_when_fast() {
    let w = World::new(
        r#"
[[models]]
name = "fresh"
provider = "alpha"
upstream_model = "fresh-up"
tier = 2
input_usd_per_mtok = 1.0
output_usd_per_mtok = 1.0
context_tokens = 128000
capabilities = ["tools"]
"#,
    );
    let p = w.policy();
    let fresh = w.config.catalog.deployments_of("fresh")[0];
    let c = p.choose(w.profile("CHAT"), None, &easy()).unwrap();
    assert_eq!(w.name(&c), "fresh", "never measured: probed first");
    assert!(c.reason.starts_with("probing"), "{}", c.reason);
    let c = p.choose(w.profile("CHAT"), None, &easy()).unwrap();
    assert_eq!(w.name(&c), "strong", "one probe at a time");
    w.signals.record(fresh, AttemptKind::Success, 5, 5);
    for _ in 0..5 {
        let c = p.choose(w.profile("CHAT"), None, &easy()).unwrap();
        assert_eq!(w.name(&c), "fresh", "measured fastest: {}", c.reason);
    }
    let mut locked = w.profile("CHAT").clone();
    locked.session_lock = true;
    let w2 = World::new(
        r#"
[[models]]
name = "fresh"
provider = "alpha"
upstream_model = "fresh-up"
tier = 2
input_usd_per_mtok = 1.0
output_usd_per_mtok = 1.0
context_tokens = 128000
"#,
    );
    let c = w2.policy().choose(&locked, None, &easy()).unwrap();
    assert_eq!(
        w2.name(&c),
        "strong",
        "a pinning profile is never probed with"
    );
}

#[test]
fn chat_moves_off_a_full_model_to_the_next_fastest() {
    let w = World::new(
        r#"
[[providers]]
name = "beta"
api = "openai"
base_url = "http://127.0.0.1:9/v1"
keys = [{ ref = "b1", max_in_flight = 2 }]

[[models]]
name = "fast"
provider = "beta"
upstream_model = "fast-up"
tier = 2
input_usd_per_mtok = 1.0
output_usd_per_mtok = 1.0
context_tokens = 128000
capabilities = ["tools"]
latency = "10ms"
"#,
    );
    let p = w.policy();
    let c = p.choose(w.profile("CHAT"), None, &easy()).unwrap();
    assert_eq!(w.name(&c), "fast");
    w.capacity.started(1, 0, Instant::now());
    w.capacity.started(1, 0, Instant::now());
    let c = p.choose(w.profile("CHAT"), None, &easy()).unwrap();
    assert_eq!(w.name(&c), "strong");
    assert!(c.reason.contains("skipped under load"), "{}", c.reason);
}

#[test]
fn savings_sends_easy_requests_cheap_and_hard_ones_strong() {
    let w = World::new("");
    let p = w.policy();
    let c = p.choose(w.profile("SAVINGS"), None, &easy()).unwrap();
    assert_eq!(w.name(&c), "small");
    assert!(c.reason.starts_with("difficulty 1"), "{}", c.reason);
    let hard = RequestFeatures {
        estimated_prompt_tokens: 5_000,
        uses_tools: true,
        tool_count: 6,
        code_cues: 10,
        reasoning_cues: 3,
        ..easy()
    };
    let c = p.choose(w.profile("SAVINGS"), None, &hard).unwrap();
    assert_eq!(w.name(&c), "strong");
    assert!(
        c.reason.starts_with("difficulty 3") && c.reason.contains("cheapest meeting tier 3"),
        "{}",
        c.reason
    );
    let moderate = RequestFeatures {
        code_cues: 2,
        reasoning_cues: 1,
        ..easy()
    };
    let c = p.choose(w.profile("SAVINGS"), None, &moderate).unwrap();
    assert_eq!(w.name(&c), "mid");
}

#[test]
fn key_affinity_holds_while_the_key_is_usable() {
    let w = World::new("");
    let p = w.policy();
    let aff = Affinity {
        provider: Some("alpha"),
        key: Some("a2"),
    };
    assert_eq!(
        p.place(w.profile("AGENT"), "strong", aff),
        Placement::Healthy(Slot {
            deployment: 2,
            key: 1
        })
    );
    w.fill(1, 5);
    assert_eq!(
        p.place(w.profile("AGENT"), "strong", aff),
        Placement::Healthy(Slot {
            deployment: 2,
            key: 0
        }),
        "a full key loses the affinity"
    );
}
