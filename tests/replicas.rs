//! Two control planes on one Redis (a real `redis-server` on an ephemeral
//! port, installed by scripts/setup-redis.sh) behind one sidecar given both
//! URLs: racing first turns on the two replicas converge on one pin;
//! `kill -9` of a replica under load fails no pinned request and loses no
//! pin; the store down makes `Route` fail fast and the sidecar fail static;
//! the store restarted from its AOF still has every pin.

mod common;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use keel::pb::{self, router_client::RouterClient};
use keel_testkit::{ControlPlane, FakeProvider, RedisServer, Sidecar};

fn replica_config(tmp: &std::path::Path, redis: &RedisServer, fake: &FakeProvider) -> String {
    let catalog = format!(
        "{}{}{}{}[profiles.AGENT]\nsession_lock = true\nquality_floor = 2\n",
        alpha(fake),
        model("strong-a", 3, 3.0, 15.0),
        model("strong-b", 3, 3.0, 15.0),
        model("cheap", 1, 0.1, 0.4)
    );
    config(&tmp.join("unused-sled"), &catalog).replacen(
        "session_idle_ttl = \"1h\"",
        &format!(
            "session_idle_ttl = \"1h\"\nsweep_interval = \"200ms\"\nbackend = \"redis\"\nredis_url = \"{}\"",
            redis.url()
        ),
        1,
    )
}

fn dir(tmp: &std::path::Path, name: &str) -> std::path::PathBuf {
    let d = tmp.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn route_request(conversation: &str) -> pb::RouteRequest {
    pb::RouteRequest {
        conversation_id: conversation.into(),
        session_source: pb::SessionSource::Header as i32,
        profile: "AGENT".into(),
        ..Default::default()
    }
}

/// What the app saw of one turn.
struct Turn {
    status: u16,
    model: String,
    turn: u32,
    degraded: bool,
}

async fn turn(client: &reqwest::Client, sidecar: &str, conversation: &str) -> Turn {
    let r = post_chat(
        client,
        sidecar,
        Some(conversation),
        Some("AGENT"),
        &chat_body("auto", false),
    )
    .await;
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    Turn {
        status: r.status().as_u16(),
        model: h("x-keel-model"),
        turn: h("x-keel-turn").parse().unwrap_or(0),
        degraded: h("x-keel-degraded") == "true",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_share_pins_through_races_kill_9_and_a_store_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(&dir(tmp.path(), "redis"), &[]).unwrap();
    let fake = FakeProvider::start().await.unwrap();
    let cfg = replica_config(tmp.path(), &redis, &fake);
    let mut cp1 = ControlPlane::start(&dir(tmp.path(), "cp1"), &cfg)
        .await
        .unwrap();
    let cp2 = ControlPlane::start(&dir(tmp.path(), "cp2"), &cfg)
        .await
        .unwrap();
    let both = format!("{},{}", cp1.url(), cp2.url());
    let args = ["--route-timeout", "3s", "--default-model", "cheap"];
    let sc = Sidecar::start(&dir(tmp.path(), "sc"), &both, &args, KEYS)
        .await
        .unwrap();
    let client = reqwest::Client::new();

    // Racing first turns, two on each replica, for each of 6 conversations.
    let replicas = [
        RouterClient::connect(cp1.url()).await.unwrap(),
        RouterClient::connect(cp2.url()).await.unwrap(),
    ];
    let mut pins: HashMap<String, String> = HashMap::new();
    for c in 0..6 {
        let id = format!("race-{c}");
        let calls = (0..4).map(|i| {
            let mut router = replicas[i % 2].clone();
            let req = route_request(&id);
            tokio::spawn(async move { router.route(req).await.map(|r| r.into_inner()) })
        });
        let mut decisions = Vec::new();
        for call in calls {
            decisions.push(call.await.unwrap().expect("route answered"));
        }
        let created = decisions
            .iter()
            .filter(|d| d.kind == pb::DecisionKind::Initialize as i32)
            .count();
        assert_eq!(created, 1, "{id}: one pin made across replicas");
        let models: std::collections::HashSet<_> = decisions
            .iter()
            .map(|d| d.target.as_ref().unwrap().model.clone())
            .collect();
        assert_eq!(models.len(), 1, "{id}: one model: {models:?}");
        let mut turns: Vec<u32> = decisions.iter().map(|d| d.turn).collect();
        turns.sort_unstable();
        assert_eq!(turns, [1, 2, 3, 4], "{id}: every turn counted once");
        pins.insert(id, models.into_iter().next().unwrap());
    }

    // Load through the sidecar, then kill -9 one replica in the middle.
    let pins = Arc::new(pins);
    let load = |rounds: u32| {
        let (client, url, pins) = (client.clone(), sc.url(), Arc::clone(&pins));
        tokio::spawn(async move {
            let mut last: HashMap<String, u32> = HashMap::new();
            for _ in 0..rounds {
                for (id, model) in pins.iter() {
                    let t = turn(&client, &url, id).await;
                    assert_eq!(t.status, 200, "{id}");
                    assert!(!t.degraded, "{id}: a replica was there to answer");
                    assert_eq!(&t.model, model, "{id}: the pin holds");
                    let prev = last.insert(id.clone(), t.turn).unwrap_or(4);
                    assert!(t.turn > prev, "{id}: turn {} after {prev}", t.turn);
                }
            }
        })
    };
    let before = load(6);
    let started = Instant::now();
    // Under load: kill once some turns went through.
    while fake.requests().len() < 12 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "load never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cp1.kill9();
    before
        .await
        .expect("no failed or switched turn while a replica died");
    load(2)
        .await
        .expect("the survivor serves every conversation");
    // Any replica answers Admin for any conversation: the survivor shows the
    // turns both served and their spend, and the records of the turns it
    // served with their results (a killed replica's unwritten records are
    // lost, as the README says).
    let deadline = Instant::now() + Duration::from_secs(20);
    let last_two_complete = |c: &pb::Conversation| {
        let done = |t: u32| {
            c.decisions
                .iter()
                .any(|d| d.turn == t && d.result.as_ref().is_some_and(|r| r.success))
        };
        c.turns >= 2 && done(c.turns) && done(c.turns - 1)
    };
    let conv = loop {
        let conv = conversation(&cp2.url(), "race-0").await;
        if last_two_complete(&conv) || Instant::now() > deadline {
            break conv;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(conv.pinned_model, pins["race-0"]);
    assert!(
        conv.turns >= 12,
        "4 raced + 8 via the sidecar: {}",
        conv.turns
    );
    assert!(conv.spend_usd > 0.0, "reports reached the shared session");
    assert!(last_two_complete(&conv), "records with results: {conv:?}");

    // The store down: Route fails fast, the sidecar fails static on the pins.
    redis.kill9();
    let mut router = replicas[1].clone();
    let asked = Instant::now();
    let err = router.route(route_request("race-0")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "failed in {:?}",
        asked.elapsed()
    );
    for (id, model) in pins.iter() {
        let t = turn(&client, &sc.url(), id).await;
        assert_eq!(t.status, 200);
        assert!(t.degraded, "{id}: served without the store");
        assert_eq!(&t.model, model, "{id}: on its cached pin");
    }
    let fresh = turn(&client, &sc.url(), "new-while-down").await;
    assert!(fresh.degraded);
    assert_eq!(
        fresh.model, "cheap",
        "a new conversation gets --default-model"
    );

    // The store back from its AOF: every pin is still there.
    redis.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (id, model) in pins.iter() {
        let t = loop {
            let t = turn(&client, &sc.url(), id).await;
            if !t.degraded || Instant::now() > deadline {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!t.degraded, "{id}: the store answers again");
        assert_eq!(&t.model, model, "{id}: pin kept across the store restart");
    }
    let logs = cp2.logs();
    assert!(!logs.contains("lost data"), "no data lost: {logs}");

    // A store that lost everything (as after a failover to a replica that
    // missed the writes): the replicas say so, and a pin the sidecar knows
    // is taken up again and announced, not silently switched.
    assert!(redis.command("FLUSHALL").unwrap().starts_with("+OK"));
    let r = post_chat(
        &client,
        &sc.url(),
        Some("race-1"),
        Some("AGENT"),
        &chat_body("auto", false),
    )
    .await;
    assert_eq!(header(&r, "x-keel-model"), pins["race-1"]);
    assert_eq!(header(&r, "x-keel-decision-kind"), "initialize");
    assert_eq!(header(&r, "x-keel-turn"), "1", "the session started again");
    assert!(
        header(&r, "x-keel-reason").contains("the pin the caller was last told"),
        "{}",
        header(&r, "x-keel-reason")
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cp2.logs().contains("lost data") {
        assert!(
            Instant::now() < deadline,
            "the epoch change was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_keeps_pins_in_redis_over_tls_with_a_password_from_the_env() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = keel_testkit::Pki::new(tmp.path());
    let (redis, rediss_url) = RedisServer::start_tls(&dir(tmp.path(), "redis"), &pki).unwrap();
    let password = "rediss-test-password";
    let set = redis
        .command(&format!("CONFIG SET requirepass {password}"))
        .unwrap();
    assert!(set.starts_with("+OK"), "{set}");
    let fake = FakeProvider::start().await.unwrap();
    let cfg = replica_config(tmp.path(), &redis, &fake).replacen(
        &format!("redis_url = \"{}\"", redis.url()),
        &format!(
            "redis_url = \"{rediss_url}\"\nredis_ca_file = \"{}\"\nredis_password_env = \"KEEL_REDIS_PASSWORD\"",
            pki.ca.display()
        ),
        1,
    );
    let env = [("KEEL_REDIS_PASSWORD", password)];
    let cp = ControlPlane::start_with_env(&dir(tmp.path(), "cp"), &cfg, &env)
        .await
        .unwrap();
    let mut router = RouterClient::connect(cp.url()).await.unwrap();
    let first = router
        .route(route_request("tls-1"))
        .await
        .unwrap()
        .into_inner();
    let again = router
        .route(route_request("tls-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.kind, pb::DecisionKind::Initialize as i32);
    assert_eq!(again.kind, pb::DecisionKind::Retain as i32);
    assert_eq!(again.turn, 2);
    let pinned = &first.target.as_ref().unwrap().model;
    assert_eq!(conversation(&cp.url(), "tls-1").await.pinned_model, *pinned);
    // The session is in Redis (read over the plain port with the password).
    let keys = redis
        .command(&format!("AUTH {password}\r\nKEYS *tls-1*"))
        .unwrap();
    assert!(keys.contains("tls-1"), "{keys}");
    assert!(!cp.logs().contains(password), "the password never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_resent_to_another_replica_is_counted_once() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir(tmp.path(), "redis"), &[]).unwrap();
    let fake = FakeProvider::start().await.unwrap();
    let cfg = replica_config(tmp.path(), &redis, &fake);
    let cp1 = ControlPlane::start(&dir(tmp.path(), "cp1"), &cfg)
        .await
        .unwrap();
    let cp2 = ControlPlane::start(&dir(tmp.path(), "cp2"), &cfg)
        .await
        .unwrap();
    let mut one = RouterClient::connect(cp1.url()).await.unwrap();
    let mut two = RouterClient::connect(cp2.url()).await.unwrap();
    let decision = one
        .route(route_request("resent"))
        .await
        .unwrap()
        .into_inner();
    // The batch applied by replica 1 whose ack the sidecar never got: it
    // sends the batch again, to replica 2.
    let batch = pb::ReportBatch {
        outcomes: vec![pb::Outcome {
            decision_id: decision.decision_id.clone(),
            conversation_id: "resent".into(),
            profile: "AGENT".into(),
            attempts: vec![pb::Attempt {
                target: decision.target.clone(),
                status: 200,
                ..Default::default()
            }],
            usage: Some(pb::Usage {
                input_tokens: 1_000_000,
                ..Default::default()
            }),
            success: true,
            turn: decision.turn,
            ..Default::default()
        }],
    };
    one.report(batch.clone()).await.unwrap();
    two.report(batch.clone()).await.unwrap();
    one.report(batch).await.unwrap();
    let conv = conversation(&cp2.url(), "resent").await;
    assert_eq!(conv.turns, 1);
    assert!(
        (conv.spend_usd - 3.0).abs() < 1e-9,
        "1M input tokens at $3/M, counted once: {}",
        conv.spend_usd
    );
}
