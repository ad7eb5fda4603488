//! Profiles that differ, driven through the real binaries and fake
//! providers: CHAT follows measured latency, BATCH spreads over keys and is
//! shed first, SAVINGS sizes the model to the task, AGENT never moves.

mod common;

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use common::*;
use keel_testkit::{Behavior, ControlPlane, FakeProvider, Sidecar};
use serde_json::{Value, json};

const THREE_KEYS: &[(&str, &str)] = &[
    ("KEEL_KEY_ALPHA_MAIN", "sk-alpha-main-secret"),
    ("KEEL_KEY_ALPHA_BACKUP", "sk-alpha-backup-secret"),
    ("KEEL_KEY_ALPHA_THIRD", "sk-alpha-third-secret"),
    ("KEEL_KEY_BETA_MAIN", "sk-beta-main-secret"),
];

fn provider(name: &str, fake: &FakeProvider, keys: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\napi = \"openai\"\nbase_url = \"{}\"\nkeys = [{keys}]\n",
        fake.openai_base_url()
    )
}

fn model_on(name: &str, provider: &str, tier: u32, price: f64, latency: &str) -> String {
    format!(
        r#"
[[models]]
name = "{name}"
provider = "{provider}"
upstream_model = "{name}-up"
tier = {tier}
input_usd_per_mtok = {price}
output_usd_per_mtok = {price}
context_tokens = 128000
capabilities = ["tools"]
latency = "{latency}"
"#
    )
}

async fn start(tmp: &tempfile::TempDir, body: &str) -> (ControlPlane, Sidecar) {
    let cfg = config(&tmp.path().join("data"), body);
    let cp = ControlPlane::start(tmp.path(), &cfg).await.unwrap();
    let sc = Sidecar::start(tmp.path(), &cp.url(), SIDECAR_ARGS, THREE_KEYS)
        .await
        .unwrap();
    (cp, sc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_moves_to_the_faster_model_after_the_first_one_slows() {
    let alpha = FakeProvider::start().await.unwrap();
    let beta = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "[routing]\nexplore_rate = 0.0\n{}{}{}{}",
        provider("alpha", &alpha, r#"{ ref = "alpha-main" }"#),
        provider("beta", &beta, r#"{ ref = "beta-main" }"#),
        model_on("quick", "alpha", 2, 1.0, "50ms"),
        model_on("steady", "beta", 2, 1.0, "300ms"),
    );
    let (_cp, sc) = start(&tmp, &body).await;
    let client = reqwest::Client::new();
    let req = chat_body("auto", true);
    let r = post_chat(&client, &sc.url(), None, Some("CHAT"), &req).await;
    assert_eq!(header(&r, "x-keel-model"), "quick");
    assert!(
        header(&r, "x-keel-reason").starts_with("lowest expected ttft"),
        "{}",
        header(&r, "x-keel-reason")
    );
    r.text().await.unwrap();

    // `quick` slows down: its measured time to first token passes steady's.
    alpha.set_behavior(Behavior {
        head_delay_ms: 1200,
        ..Default::default()
    });
    let mut slow_turns = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = post_chat(&client, &sc.url(), None, Some("CHAT"), &req).await;
        assert_eq!(r.status(), 200);
        let model = header(&r, "x-keel-model").to_owned();
        r.text().await.unwrap();
        if model == "steady" {
            break;
        }
        slow_turns += 1;
        assert!(Instant::now() < deadline, "CHAT never left the slow model");
    }
    assert!(slow_turns <= 3, "moved after {slow_turns} slow answers");
    // And stays on the faster one.
    for _ in 0..3 {
        let r = post_chat(&client, &sc.url(), None, Some("CHAT"), &req).await;
        assert_eq!(header(&r, "x-keel-model"), "steady");
        r.text().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_spreads_across_keys_and_avoids_a_rate_limited_key() {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}{}",
        provider(
            "alpha",
            &fake,
            r#"{ ref = "alpha-main" }, { ref = "alpha-backup" }, { ref = "alpha-third" }"#
        ),
        model_on("cheap", "alpha", 1, 0.1, "300ms"),
        model_on("strong", "alpha", 3, 5.0, "300ms"),
    );
    let (cp, sc) = start(&tmp, &body).await;
    let client = reqwest::Client::new();
    let req = chat_body("auto", false);
    let keys_used = |from: usize| -> Vec<String> {
        fake.requests()[from..]
            .iter()
            .map(|r| r.authorization.clone().unwrap_or_default())
            .collect()
    };
    for _ in 0..6 {
        let r = post_chat(&client, &sc.url(), None, Some("BATCH"), &req).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-keel-model"), "cheap", "BATCH is cheapest");
    }
    let used: HashSet<String> = keys_used(0).into_iter().collect();
    assert_eq!(used.len(), 3, "every key used: {used:?}");

    // The third key is exhausted: 429s with Retry-After.
    fake.set_behavior(Behavior {
        fail_status: Some(429),
        retry_after: Some(30),
        fail_only_key: Some("sk-alpha-third-secret".into()),
        ..Default::default()
    });
    // As turns of a conversation, so their reports can be waited for.
    for _ in 0..3 {
        let r = post_chat(&client, &sc.url(), Some("limited"), Some("BATCH"), &req).await;
        assert_eq!(r.status(), 200, "another key serves");
    }
    // Once the 429 is reported, Route leaves the key out.
    reported(&cp.url(), "limited", 3).await;
    let before = fake.requests().len();
    for _ in 0..6 {
        let r = post_chat(&client, &sc.url(), None, Some("BATCH"), &req).await;
        assert_eq!(r.status(), 200);
    }
    let after = keys_used(before);
    assert!(
        !after.iter().any(|k| k.contains("third")),
        "parked key avoided: {after:?}"
    );
    let used: HashSet<&String> = after.iter().collect();
    assert_eq!(used.len(), 2, "still spread over the others: {used:?}");
}

/// A long, tool-using coding task.
fn coding_task() -> Value {
    let tools: Vec<Value> = [
        "read_file",
        "write_file",
        "run_tests",
        "grep",
        "git_diff",
        "shell",
    ]
    .iter()
    .map(|n| {
        json!({"type": "function", "function": {
            "name": n, "description": format!("{n} in the workspace"),
            "parameters": {"type": "object", "properties": {"arg": {"type": "string"}}}
        }})
    })
    .collect();
    let code = "fn parse(input: &str) -> Result<Config, Error> {\n    let mut cfg = Config::default();\n    for line in input.lines() {\n        cfg.apply(line)?;\n    }\n    Ok(cfg)\n}\n"
        .repeat(30);
    json!({
        "model": "auto",
        "tools": tools,
        "messages": [
            {"role": "system", "content": "You are a senior Rust engineer working in a large repository."},
            {"role": "user", "content": format!(
                "Refactor the config parser below, debug the failing test and implement \
                 streaming support. Explain the trade-offs step-by-step.\n```rust\n{code}```\n"
            )}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savings_sizes_the_model_to_the_task() {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}{}{}",
        provider("alpha", &fake, r#"{ ref = "alpha-main" }"#),
        model_on("small", "alpha", 1, 0.1, "300ms"),
        model_on("mid", "alpha", 2, 1.0, "300ms"),
        model_on("strong", "alpha", 3, 5.0, "300ms"),
    );
    let (_cp, sc) = start(&tmp, &body).await;
    let client = reqwest::Client::new();
    let one_liner = json!({"model": "auto", "messages": [
        {"role": "user", "content": "What is the capital of France?"}
    ]});
    let r = post_chat(&client, &sc.url(), None, Some("SAVINGS"), &one_liner).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-keel-model"), "small");
    let reason = header(&r, "x-keel-reason");
    assert!(reason.starts_with("difficulty 1"), "{reason}");

    let r = post_chat(&client, &sc.url(), None, Some("SAVINGS"), &coding_task()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-keel-model"), "strong");
    let reason = header(&r, "x-keel-reason");
    assert!(
        reason.starts_with("difficulty 3")
            && reason.contains("tools +2")
            && reason.contains("code"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_never_moves_while_chat_and_batch_flood_and_batch_is_shed() {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "[routing]\nexplore_rate = 0.0\n[load]\nretry_after = \"3s\"\n\
         [profiles.AGENT]\nquality_floor = 3\n{}{}{}",
        provider(
            "alpha",
            &fake,
            r#"{ ref = "alpha-main", max_in_flight = 10 }, { ref = "alpha-backup", max_in_flight = 10 }"#
        ),
        model_on("cheap", "alpha", 1, 0.1, "100ms"),
        model_on("strong", "alpha", 3, 5.0, "400ms"),
    );
    let (_cp, sc) = start(&tmp, &body).await;
    let client = reqwest::Client::new();
    let url = sc.url();
    let agents = ["agent-a", "agent-b", "agent-c"];
    for id in agents {
        let r = post_chat(
            &client,
            &url,
            Some(id),
            Some("AGENT"),
            &chat_body("auto", false),
        )
        .await;
        assert_eq!(header(&r, "x-keel-model"), "strong");
        assert_eq!(header(&r, "x-keel-decision-kind"), "initialize");
    }

    // Every answer now takes a while, so the flood piles up in flight.
    fake.set_behavior(Behavior {
        head_delay_ms: 2500,
        ..Default::default()
    });
    let flood = |profile: &'static str, n: usize| {
        (0..n)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let r = post_chat(
                        &client,
                        &url,
                        None,
                        Some(profile),
                        &chat_body("auto", false),
                    )
                    .await;
                    let status = r.status().as_u16();
                    let retry_after = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    (status, retry_after, body)
                })
            })
            .collect::<Vec<_>>()
    };
    let batch = flood("BATCH", 30);
    let chat = flood("CHAT", 10);
    // Agent turns during the flood.
    let mut agent_turns = Vec::new();
    for round in 0..2 {
        for id in agents {
            let (client, url) = (client.clone(), url.clone());
            agent_turns.push(tokio::spawn(async move {
                let r = post_chat(
                    &client,
                    &url,
                    Some(id),
                    Some("AGENT"),
                    &chat_body("auto", false),
                )
                .await;
                (
                    id,
                    round,
                    r.status().as_u16(),
                    r.headers()
                        .get("x-keel-model")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    r.headers()
                        .get("x-keel-decision-kind")
                        .map(|v| v.to_str().unwrap().to_owned()),
                )
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in agent_turns {
        let (id, round, status, model, kind) = t.await.unwrap();
        assert_eq!(
            status, 200,
            "{id} round {round}: capacity goes to AGENT first"
        );
        assert_eq!(model.as_deref(), Some("strong"), "{id} round {round}");
        assert_eq!(kind.as_deref(), Some("retain"), "{id} round {round}");
    }
    let mut shed = 0;
    let mut served = 0;
    for t in batch {
        let (status, retry_after, body) = t.await.unwrap();
        match status {
            200 => served += 1,
            429 => {
                shed += 1;
                assert_eq!(retry_after.as_deref(), Some("3"), "{body}");
                assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("shed under load"),
                    "{body}"
                );
            }
            other => panic!("BATCH got {other}: {body}"),
        }
    }
    assert!(shed > 0, "BATCH was shed under pressure");
    assert!(served > 0, "BATCH got its share before the reserve");
    assert!(
        served <= 16,
        "BATCH kept out of the reserve: {served} served"
    );
    for t in chat {
        let (status, _, body) = t.await.unwrap();
        assert!(status == 200 || status == 429, "CHAT got {status}: {body}");
    }
}
