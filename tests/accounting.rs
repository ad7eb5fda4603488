//! Every request accounted for: an app that hangs up is reported cancelled
//! and frees its key at once; a stream the app cuts short still counts
//! against budgets; a key the provider rejects is parked and the next tried;
//! an answer names the model that served it; CHAT finds a fast model it has
//! not measured.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keel_testkit::{Behavior, ControlPlane, FakeProvider, Sidecar};
use serde_json::{Value, json};

const TWO_PROVIDERS: &[(&str, &str)] = &[
    ("KEEL_KEY_ALPHA_MAIN", "sk-alpha-main-secret"),
    ("KEEL_KEY_ALPHA_BACKUP", "sk-alpha-backup-secret"),
    ("KEEL_KEY_BETA_MAIN", "sk-beta-main-secret"),
];

fn provider(name: &str, fake: &FakeProvider, keys: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\napi = \"openai\"\nbase_url = \"{}\"\nkeys = [{keys}]\n",
        fake.openai_base_url()
    )
}

/// A model on `provider`, priced $3/M in, $15/M out, no latency hint.
fn model_on(name: &str, provider: &str) -> String {
    format!(
        r#"
[[models]]
name = "{name}"
provider = "{provider}"
upstream_model = "{name}-up"
tier = 2
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0
context_tokens = 128000
capabilities = ["tools"]
"#
    )
}

async fn start(tmp: &tempfile::TempDir, body: &str) -> (ControlPlane, Sidecar) {
    let cfg = config(&tmp.path().join("data"), body);
    let cp = ControlPlane::start(tmp.path(), &cfg).await.unwrap();
    let sc = Sidecar::start(tmp.path(), &cp.url(), SIDECAR_ARGS, TWO_PROVIDERS)
        .await
        .unwrap();
    (cp, sc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_hangs_up_is_reported_cancelled_and_frees_its_key_at_once() {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // One key that takes one request at a time: while it is counted in
    // flight, BATCH (shed first) is refused with 429.
    let body = format!(
        "{}{}",
        provider(
            "alpha",
            &fake,
            r#"{ ref = "alpha-main", max_in_flight = 1 }"#
        ),
        model_on("m", "alpha"),
    );
    let (cp, sc) = start(&tmp, &body).await;
    fake.set_behavior(Behavior {
        head_delay_ms: 5_000,
        ..Default::default()
    });
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let hung_up = post_chat_result(&impatient, &sc.url(), "hang-up", &chat_body("m", false)).await;
    assert!(
        hung_up.is_err(),
        "the app hung up while the provider was slow"
    );
    fake.set_behavior(Behavior::default());

    // Reported cancelled, long before `in_flight_timeout` (10 min).
    let conv = reported(&cp.url(), "hang-up", 1).await;
    let result = conv.decisions[0].result.as_ref().unwrap();
    assert!(result.cancelled && !result.success, "{result:?}");
    // And the key is free again for a shed-first profile.
    let client = reqwest::Client::new();
    let r = post_chat(
        &client,
        &sc.url(),
        None,
        Some("BATCH"),
        &chat_body("m", false),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn post_chat_result(
    client: &reqwest::Client,
    sidecar: &str,
    conversation: &str,
    body: &Value,
) -> reqwest::Result<String> {
    client
        .post(format!("{sidecar}/v1/chat/completions"))
        .header("x-conversation-id", conversation)
        .header("x-router-profile", "BATCH")
        .json(body)
        .send()
        .await?
        .text()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_short_at_finish_reason_counts_against_the_budget() {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "[budgets]\nper_conversation_usd = 0.0002\n{}{}",
        provider("alpha", &fake, r#"{ ref = "alpha-main" }"#),
        model_on("m", "alpha"),
    );
    let (cp, sc) = start(&tmp, &body).await;
    // The provider holds the usage chunk (frame 16 of the recording) back:
    // the app has its whole answer and hangs up before usage arrives.
    fake.set_behavior(Behavior {
        hold_after_frames: Some(16),
        ..Default::default()
    });
    let client = reqwest::Client::new();
    let mut turns = 0;
    let refused = loop {
        let mut r = post_chat(
            &client,
            &sc.url(),
            Some("early"),
            None,
            &chat_body("m", true),
        )
        .await;
        if r.status() == 402 {
            break r.json::<Value>().await.unwrap();
        }
        assert_eq!(r.status(), 200);
        let mut seen = String::new();
        while let Some(chunk) = r.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("\"finish_reason\":\"stop\"") {
                break;
            }
        }
        assert!(seen.contains("finish_reason"), "{seen}");
        drop(r);
        turns += 1;
        assert!(turns <= 3, "cut-short turns went through the cap for free");
        reported(&cp.url(), "early", turns).await;
    };
    assert_eq!(refused["error"]["type"], "budget_exceeded", "{refused}");
    let conv = conversation(&cp.url(), "early").await;
    assert!(conv.spend_usd >= 0.0002, "spend {}", conv.spend_usd);
    let result = conv.decisions[0].result.as_ref().unwrap();
    let usage = result.usage.unwrap();
    assert!(result.cancelled && usage.estimated, "{result:?}");
    assert!(
        usage.input_tokens > 0 && usage.output_tokens > 0,
        "{usage:?}"
    );
    fake.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_provider_rejects_is_parked_and_the_next_key_serves() {
    let gw = Gateway::start(&model("m", 2, 1.0, 1.0), &[]).await;
    gw.fake.set_behavior(Behavior {
        fail_status: Some(401),
        fail_only_key: Some("sk-alpha-main-secret".into()),
        ..Default::default()
    });
    for i in 0..4 {
        let r = gw.chat(None, None, &chat_body("m", false)).await;
        assert_eq!(r.status(), 200, "turn {i}: {}", r.text().await.unwrap());
    }
    let main_tries = gw
        .fake
        .requests()
        .iter()
        .filter(|r| r.authorization.as_deref() == Some("Bearer sk-alpha-main-secret"))
        .count();
    assert_eq!(main_tries, 1, "the rejected key is parked after its 401");

    // Every key rejected: the gateway's keys are at fault, not the app's
    // credential: 502 in the caller's shape, never 401.
    gw.fake.set_behavior(Behavior {
        fail_status: Some(403),
        ..Default::default()
    });
    let r = gw.chat(None, None, &chat_body("m", false)).await;
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().is_some(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_fallback_body_headers_and_reason_name_the_model_that_served() {
    let alpha = FakeProvider::start().await.unwrap();
    let beta = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}{}{}",
        provider("alpha", &alpha, r#"{ ref = "alpha-main" }"#),
        provider("beta", &beta, r#"{ ref = "beta-main" }"#),
        model_on("small-1", "alpha"),
        model_on("big", "beta"),
    );
    let (_cp, sc) = start(&tmp, &body).await;
    alpha.set_behavior(Behavior {
        fail_status: Some(503),
        ..Default::default()
    });
    // An Anthropic app, an OpenAI provider: the answer is translated.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/messages", sc.url()))
        .json(&json!({
            "model": "small-1",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Why does cargo build fail?"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-keel-model"), "big");
    let reason = header(&r, "x-keel-reason").to_owned();
    assert!(reason.contains("fallback big"), "{reason}");
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["model"], "big", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_finds_a_fast_model_it_has_not_measured_within_a_few_requests() {
    let slow = FakeProvider::start().await.unwrap();
    let fast = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}{}{}{}",
        provider("alpha", &slow, r#"{ ref = "alpha-main" }"#),
        provider("beta", &fast, r#"{ ref = "beta-main" }"#),
        model_on("slow-a", "alpha"),
        model_on("slow-b", "alpha"),
        model_on("quick", "beta"),
    );
    let (_cp, sc) = start(&tmp, &body).await;
    slow.set_behavior(Behavior {
        head_delay_ms: 400,
        ..Default::default()
    });
    let client = reqwest::Client::new();
    let mut chosen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while chosen.len() < 8 {
        let r = post_chat(
            &client,
            &sc.url(),
            None,
            Some("CHAT"),
            &chat_body("auto", false),
        )
        .await;
        assert_eq!(r.status(), 200);
        chosen.push(header(&r, "x-keel-model").to_owned());
        r.text().await.unwrap();
        assert!(Instant::now() < deadline);
    }
    let first_quick = chosen.iter().position(|m| m == "quick");
    assert!(
        first_quick.is_some_and(|i| i <= 3),
        "the unmeasured fast model is tried promptly: {chosen:?}"
    );
    assert!(
        chosen[5..].iter().all(|m| m == "quick"),
        "CHAT settles on the fastest: {chosen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_cut_part_way_are_failures_that_open_the_breaker() {
    let alpha = FakeProvider::start().await.unwrap();
    let beta = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Alpha is expected faster, so CHAT goes there while it is healthy.
    let strong = |provider: &str, latency: &str| {
        model_on("strong", provider).replace(
            "capabilities",
            &format!("latency = \"{latency}\"\ncapabilities"),
        )
    };
    let body = format!(
        "[health]\nmin_requests = 3\nerror_rate = 0.5\nopen_for = \"60s\"\n{}{}{}{}",
        provider("alpha", &alpha, r#"{ ref = "alpha-main" }"#),
        provider("beta", &beta, r#"{ ref = "beta-main" }"#),
        strong("alpha", "100ms"),
        strong("beta", "500ms"),
    );
    let (_cp, sc) = start(&tmp, &body).await;
    // Paced, so the head and the first frames reach the sidecar before the
    // cut (no fallback once an answer has begun).
    alpha.set_behavior(Behavior {
        cut_after_frames: Some(3),
        frame_delay_ms: 20,
        ..Default::default()
    });
    let client = reqwest::Client::new();
    let mut broken = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = post_chat(
            &client,
            &sc.url(),
            None,
            Some("CHAT"),
            &chat_body("auto", true),
        )
        .await;
        assert_eq!(r.status(), 200);
        let served_by = header(&r, "x-keel-provider").to_owned();
        let text = r.text().await.unwrap();
        if served_by == "beta" {
            assert!(text.contains("[DONE]"), "{text}");
            break;
        }
        assert!(text.contains("\"error\""), "the app is told: {text}");
        broken += 1;
        assert!(
            Instant::now() < deadline,
            "{broken} broken streams never opened alpha's breaker"
        );
        // Reports are asynchronous: give the last one a moment.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(broken >= 3, "opened after {broken} broken streams");
}
