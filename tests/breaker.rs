//! Circuit breakers from reported outcomes: an erroring deployment is skipped
//! by `Route` once its breaker opens, probed when half-open, and used again
//! when the probe succeeds. A pinned model down everywhere follows the
//! configured policy: `wait` (503 + Retry-After) or `failover` (announced
//! switch), never between a tool call and its result.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keel_testkit::{Behavior, ControlPlane, FakeProvider, Sidecar};
use serde_json::json;

const ALL_KEYS: &[(&str, &str)] = &[
    ("KEEL_KEY_ALPHA_MAIN", "sk-alpha-main-secret"),
    ("KEEL_KEY_BETA_MAIN", "sk-beta-main-secret"),
];

fn provider(name: &str, fake: &FakeProvider) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\napi = \"openai\"\nbase_url = \"{}\"\nkeys = [{{ ref = \"{name}-main\" }}]\n",
        fake.openai_base_url()
    )
}

fn deployment(name: &str, provider: &str, price: f64, latency: &str) -> String {
    format!(
        r#"
[[models]]
name = "{name}"
provider = "{provider}"
upstream_model = "{name}-{provider}"
tier = 3
input_usd_per_mtok = {price}
output_usd_per_mtok = {price}
context_tokens = 128000
capabilities = ["tools"]
latency = "{latency}"
"#
    )
}

async fn start(
    extra: &str,
    models: &str,
) -> (
    FakeProvider,
    FakeProvider,
    tempfile::TempDir,
    ControlPlane,
    Sidecar,
) {
    let alpha = FakeProvider::start().await.unwrap();
    let beta = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let models = models.replace("{alpha}", "alpha").replace("{beta}", "beta");
    let cfg = config(
        &tmp.path().join("data"),
        &format!(
            "{extra}\n{}{}{models}",
            provider("alpha", &alpha),
            provider("beta", &beta)
        ),
    );
    let cp = ControlPlane::start(tmp.path(), &cfg).await.unwrap();
    let sc = Sidecar::start(tmp.path(), &cp.url(), SIDECAR_ARGS, ALL_KEYS)
        .await
        .unwrap();
    (alpha, beta, tmp, cp, sc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erroring_deployment_is_skipped_then_probed_and_used_again() {
    let models =
        deployment("strong", "alpha", 3.0, "100ms") + &deployment("strong", "beta", 3.0, "500ms");
    let health = "[health]\nmin_requests = 3\nerror_rate = 0.5\nopen_for = \"2s\"\n";
    let (alpha, beta, _tmp, _cp, sc) = start(health, &models).await;
    // Beta stays slower than alpha's expected latency, so once alpha is
    // healthy again CHAT prefers it (and sends it the probe).
    beta.set_behavior(Behavior {
        head_delay_ms: 300,
        ..Default::default()
    });
    let client = reqwest::Client::new();
    let body = chat_body("auto", false);
    let url = sc.url();
    let chat = || post_chat(&client, &url, None, Some("CHAT"), &body);

    alpha.set_behavior(Behavior {
        fail_status: Some(503),
        ..Default::default()
    });
    // Until the breaker opens, alpha (the faster) is tried first and each
    // request is rescued by beta.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = alpha.requests().len();
        let r = chat().await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-keel-provider"), "beta");
        if alpha.requests().len() == before {
            break; // Route skipped alpha: its breaker is open.
        }
        assert!(Instant::now() < deadline, "breaker never opened");
    }
    let skipped_at = alpha.requests().len();
    let r = chat().await;
    assert_eq!(header(&r, "x-keel-provider"), "beta");
    assert_eq!(
        alpha.requests().len(),
        skipped_at,
        "open breaker: alpha not tried"
    );

    // Alpha recovers; after the open period one probe goes there, succeeds,
    // and alpha serves again.
    alpha.set_behavior(Behavior::default());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = chat().await;
        assert_eq!(r.status(), 200);
        if header(&r, "x-keel-provider") == "alpha" {
            break;
        }
        assert!(Instant::now() < deadline, "breaker never closed again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = chat().await;
        if header(&r, "x-keel-provider") == "alpha" && alpha.requests().len() > skipped_at + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "alpha not back in rotation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends AGENT turns of `conv` until one is answered without reaching the
/// pinned provider (its breaker opened); returns that response.
async fn until_breaker_opens(
    client: &reqwest::Client,
    sc: &Sidecar,
    alpha: &FakeProvider,
    conv: &str,
) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = alpha.requests().len();
        let r = post_chat(
            client,
            &sc.url(),
            Some(conv),
            Some("AGENT"),
            &chat_body("auto", false),
        )
        .await;
        if alpha.requests().len() == before {
            return r;
        }
        assert_eq!(
            r.status(),
            503,
            "the provider's own 503 while the breaker is closed"
        );
        assert!(Instant::now() < deadline, "breaker never opened");
    }
}

/// Pins `conv` to model x (on alpha), then makes alpha answer 503.
async fn pin_x_then_fail_alpha(
    client: &reqwest::Client,
    sc: &Sidecar,
    alpha: &FakeProvider,
    conv: &str,
) {
    let r = post_chat(
        client,
        &sc.url(),
        Some(conv),
        Some("AGENT"),
        &chat_body("auto", false),
    )
    .await;
    assert_eq!(header(&r, "x-keel-model"), "x");
    alpha.set_behavior(Behavior {
        fail_status: Some(503),
        ..Default::default()
    });
}

fn pinned_models() -> String {
    // x (cheaper, so AGENT pins it) only on alpha; y, same tier, only on beta.
    deployment("x", "alpha", 1.0, "1s") + &deployment("y", "beta", 2.0, "1s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_model_down_everywhere_waits_by_default() {
    let health = "[health]\nmin_requests = 2\nopen_for = \"30s\"\n";
    let (alpha, beta, _tmp, _cp, sc) = start(health, &pinned_models()).await;
    let client = reqwest::Client::new();
    pin_x_then_fail_alpha(&client, &sc, &alpha, "w-1").await;
    let r = until_breaker_opens(&client, &sc, &alpha, "w-1").await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after"), "30");
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pinned model `x`"),
        "{v}"
    );
    assert!(beta.requests().is_empty(), "never silently moved to y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_re_pins_to_the_same_tier_and_announces_it_but_not_mid_tool_call() {
    let extra = "[routing]\npinned_unavailable = \"failover\"\n[health]\nmin_requests = 2\nopen_for = \"30s\"\n";
    let (alpha, beta, _tmp, _cp, sc) = start(extra, &pinned_models()).await;
    let client = reqwest::Client::new();
    pin_x_then_fail_alpha(&client, &sc, &alpha, "f-1").await;
    // The breaker opens on a turn that answers a tool call: no switch there.
    let mut tool_turn = chat_body("auto", false);
    tool_turn["messages"] = json!([
        {"role": "user", "content": "Build it"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "sh", "arguments": "{\"cmd\":\"make\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
    ]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = alpha.requests().len();
        let r = post_chat(&client, &sc.url(), Some("f-1"), Some("AGENT"), &tool_turn).await;
        assert_eq!(r.status(), 503);
        if alpha.requests().len() == before {
            let v: serde_json::Value = r.json().await.unwrap();
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("tool result"),
                "{v}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "breaker never opened");
    }
    assert!(beta.requests().is_empty());
    // The next turn may switch: announced, recorded, and then retained.
    let r = post_chat(
        &client,
        &sc.url(),
        Some("f-1"),
        Some("AGENT"),
        &chat_body("auto", false),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-keel-model"), "y");
    assert_eq!(header(&r, "x-keel-decision-kind"), "switch");
    assert!(header(&r, "x-keel-reason").contains("failover"));
    let r = post_chat(
        &client,
        &sc.url(),
        Some("f-1"),
        Some("AGENT"),
        &chat_body("auto", false),
    )
    .await;
    assert_eq!(header(&r, "x-keel-model"), "y");
    assert_eq!(header(&r, "x-keel-decision-kind"), "retain");
}
