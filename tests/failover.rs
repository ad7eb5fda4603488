//! Riding through provider failures before the first byte: a 429 moves to the
//! next key, a 5xx or refused connection to the next provider of the same
//! model, and when every key is rate limited the app gets a prompt 429 with
//! `Retry-After`. Stalled streams end with an error event; SIGTERM lets open
//! streams finish.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use keel_testkit::{Behavior, ControlPlane, FakeProvider, Sidecar};
use serde_json::Value;

const ALL_KEYS: &[(&str, &str)] = &[
    ("KEEL_KEY_ALPHA_MAIN", "sk-alpha-main-secret"),
    ("KEEL_KEY_ALPHA_BACKUP", "sk-alpha-backup-secret"),
    ("KEEL_KEY_BETA_MAIN", "sk-beta-main-secret"),
];

/// One model, `strong`, through provider alpha (two keys) and beta (one key).
fn two_providers(data: &std::path::Path, alpha_url: &str, beta_url: &str, extra: &str) -> String {
    config(
        data,
        &format!(
            r#"
[routing]
max_attempts = 4
{extra}

[[providers]]
name = "alpha"
api = "openai"
base_url = "{alpha_url}"
keys = [{{ ref = "alpha-main" }}, {{ ref = "alpha-backup" }}]

[[providers]]
name = "beta"
api = "openai"
base_url = "{beta_url}"
keys = [{{ ref = "beta-main" }}]

[[models]]
name = "strong"
provider = "alpha"
upstream_model = "strong-alpha"
tier = 3
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0
context_tokens = 128000
capabilities = ["tools"]

[[models]]
name = "strong"
provider = "beta"
upstream_model = "strong-beta"
tier = 3
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0
context_tokens = 128000
capabilities = ["tools"]
"#
        ),
    )
}

struct Env {
    alpha: FakeProvider,
    beta: FakeProvider,
    _tmp: tempfile::TempDir,
    cp: ControlPlane,
    sc: Sidecar,
    client: reqwest::Client,
}

impl Env {
    /// An OpenAI chat request with Keel's headers and the test's small body.
    async fn chat(
        &self,
        conversation: Option<&str>,
        profile: &str,
        stream: bool,
    ) -> reqwest::Response {
        post_chat(
            &self.client,
            &self.sc.url(),
            conversation,
            Some(profile),
            &chat_body("auto", stream),
        )
        .await
    }
}

async fn setup(extra: &str) -> Env {
    let alpha = FakeProvider::start().await.unwrap();
    let beta = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = two_providers(
        &tmp.path().join("data"),
        &alpha.openai_base_url(),
        &beta.openai_base_url(),
        extra,
    );
    let cp = ControlPlane::start(tmp.path(), &cfg).await.unwrap();
    let sc = Sidecar::start(tmp.path(), &cp.url(), SIDECAR_ARGS, ALL_KEYS)
        .await
        .unwrap();
    Env {
        alpha,
        beta,
        _tmp: tmp,
        cp,
        sc,
        client: reqwest::Client::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_moves_a_pinned_conversation_to_another_provider_of_its_model() {
    let env = setup("").await;
    env.alpha.set_behavior(Behavior {
        fail_status: Some(503),
        ..Default::default()
    });
    let r = env.chat(Some("f-1"), "AGENT", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-keel-model"),
        "strong",
        "the pinned model never changes"
    );
    assert_eq!(
        header(&r, "x-keel-provider"),
        "beta",
        "names the provider that served"
    );
    // A 5xx is about the provider: alpha's second key was not tried.
    assert_eq!(env.alpha.requests().len(), 1);
    assert_eq!(env.beta.requests()[0].body["model"], "strong-beta");
    let metrics = env
        .client
        .get(format!("{}/metrics", env.sc.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keel_sidecar_fallbacks_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keel_sidecar_requests_total{api=\"openai\",status=\"2xx\"} 1"),
        "{metrics}"
    );
    // What was reported: the turn's record says beta served it on attempt 2.
    let mut admin = keel::pb::admin_client::AdminClient::connect(env.cp.url())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let conv = admin
            .get_conversation(keel::pb::GetConversationRequest {
                tenant: String::new(),
                conversation_id: "f-1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if let Some(result) = conv.decisions.first().and_then(|d| d.result.as_ref()) {
            assert!(result.success);
            assert_eq!(result.attempts, 2);
            assert_eq!(result.provider, "beta");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the report never completed the decision record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_falls_back_to_the_next_provider() {
    let beta = FakeProvider::start().await.unwrap();
    // A port nothing listens on: bind, read the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = two_providers(
        &tmp.path().join("data"),
        &format!("http://{closed}/v1"),
        &beta.openai_base_url(),
        "",
    );
    let cp = ControlPlane::start(tmp.path(), &cfg).await.unwrap();
    let sc = Sidecar::start(tmp.path(), &cp.url(), SIDECAR_ARGS, ALL_KEYS)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let r = post_chat(
        &client,
        &sc.url(),
        Some("f-2"),
        Some("AGENT"),
        &chat_body("auto", true),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-keel-provider"), "beta");
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_moves_to_the_next_key_and_parks_the_limited_one() {
    let env = setup("").await;
    env.alpha.set_behavior(Behavior {
        fail_status: Some(429),
        retry_after: Some(30),
        fail_only_key: Some("sk-alpha-main-secret".into()),
        ..Default::default()
    });
    let r = env.chat(None, "CHAT", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-keel-provider"),
        "alpha",
        "same provider, other key"
    );
    let keys: Vec<_> = env
        .alpha
        .requests()
        .iter()
        .map(|r| r.authorization.clone().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "Bearer sk-alpha-main-secret",
            "Bearer sk-alpha-backup-secret"
        ]
    );
    // The next request does not hit the parked key again.
    let r = env.chat(None, "CHAT", false).await;
    assert_eq!(r.status(), 200);
    let keys: Vec<_> = env
        .alpha
        .requests()
        .iter()
        .map(|r| r.authorization.clone().unwrap())
        .collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[2], "Bearer sk-alpha-backup-secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_rate_limited_gives_a_prompt_429_with_retry_after() {
    let env = setup("").await;
    let limited = Behavior {
        fail_status: Some(429),
        retry_after: Some(7),
        ..Default::default()
    };
    env.alpha.set_behavior(limited.clone());
    env.beta.set_behavior(limited);
    let started = Instant::now();
    let r = env.chat(Some("f-3"), "AGENT", false).await;
    assert_eq!(r.status(), 429);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "prompt, not after long retries"
    );
    assert_eq!(header(&r, "retry-after"), "7");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    // Every key was tried once.
    assert_eq!(env.alpha.requests().len() + env.beta.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_4xx_is_relayed_without_trying_other_targets() {
    let env = setup("").await;
    env.alpha.set_behavior(Behavior {
        fail_status: Some(400),
        ..Default::default()
    });
    let r = env.chat(None, "AGENT", false).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
    assert!(
        env.beta.requests().is_empty(),
        "the request's own fault: no fallback"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_ends_with_an_error_event_after_the_idle_timeout() {
    let env = setup("idle_timeout = \"400ms\"").await;
    env.alpha.set_behavior(Behavior {
        frame_delay_ms: 5_000,
        ..Default::default()
    });
    let started = Instant::now();
    let r = env.chat(None, "AGENT", true).await;
    assert_eq!(r.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(10), r.text())
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "ended by the idle timeout, not the provider"
    );
    let last = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap();
    let v: Value = serde_json::from_str(last).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("400 ms"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_twenty_open_streams_finish() {
    let mut env = setup("").await;
    env.alpha.set_behavior(Behavior {
        hold_after_frames: Some(2),
        ..Default::default()
    });
    let mut bodies = Vec::new();
    for i in 0..20 {
        let conversation = format!("t-{i}");
        let r = post_chat(
            &env.client,
            &env.sc.url(),
            Some(&conversation),
            Some("AGENT"),
            &chat_body("auto", true),
        )
        .await;
        assert_eq!(r.status(), 200);
        let mut stream = r.bytes_stream();
        // Each stream is open and has started.
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(!first.is_empty());
        bodies.push(stream);
    }
    env.sc.signal("TERM").unwrap();
    // Once the sidecar has stopped accepting, new connections are refused
    // while the 20 streams stay open.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(env.sc.addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.alpha.release();
    for mut body in bodies {
        let mut text = String::new();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .unwrap()
        {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        assert!(
            text.ends_with("data: [DONE]\n\n"),
            "stream completed: {text}"
        );
    }
    let status = env.sc.wait(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "clean exit: {}", env.sc.logs());
}
