//! Bad input gets a clear error in the caller's API shape with the right
//! status, and nothing panics: the sidecar keeps serving.

mod common;

use common::*;
use serde_json::{Value, json};

async fn setup() -> Gateway {
    Gateway::start(
        &model("strong-a", 3, 3.0, 15.0),
        &["--max-body-bytes", "4096"],
    )
    .await
}

async fn openai_error(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["type"].is_string(), "OpenAI error shape: {v}");
    v["error"]["message"].as_str().expect("message").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_input_gets_its_status_in_the_openai_shape() {
    let env = setup().await;
    let url = format!("{}/v1/chat/completions", env.sc.url());
    let raw = |body: &'static str| {
        env.client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
    };

    let msg = openai_error(
        raw("{\"model\": \"auto\", \"messages\": [")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(msg.contains("JSON"), "{msg}");
    let msg = openai_error(raw("{\"model\": \"auto\"}").send().await.unwrap(), 400).await;
    assert!(msg.contains("messages"), "{msg}");
    let msg = openai_error(raw("[1, 2]").send().await.unwrap(), 400).await;
    assert!(msg.contains("JSON object"), "{msg}");
    let msg = openai_error(
        raw("{\"messages\": [{\"content\": \"hi\"}]}")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(msg.contains("messages[0].role"), "{msg}");

    let body = chat_body("auto", false);
    let r = post_chat(&env.client, &env.sc.url(), None, Some("TURBO"), &body).await;
    let msg = openai_error(r, 400).await;
    assert!(
        msg.contains("unknown profile") && msg.contains("TURBO"),
        "{msg}"
    );

    let long_id = "c".repeat(257);
    let r = post_chat(
        &env.client,
        &env.sc.url(),
        Some(&long_id),
        Some("AGENT"),
        &body,
    )
    .await;
    let msg = openai_error(r, 400).await;
    assert!(msg.contains("X-Conversation-ID"), "{msg}");

    let big = json!({"model": "auto", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let r = post_chat(&env.client, &env.sc.url(), None, None, &big).await;
    let msg = openai_error(r, 413).await;
    assert!(msg.contains("4096"), "{msg}");

    let r = post_chat(
        &env.client,
        &env.sc.url(),
        None,
        None,
        &chat_body("gpt-9-ultra", false),
    )
    .await;
    let msg = openai_error(r, 404).await;
    assert!(msg.contains("gpt-9-ultra"), "{msg}");

    let r = env
        .client
        .get(format!("{}/v2/nothing", env.sc.url()))
        .send()
        .await
        .unwrap();
    openai_error(r, 404).await;

    // Still serving, and a good request still works.
    let r = post_chat(
        &env.client,
        &env.sc.url(),
        Some("ok-1"),
        Some("AGENT"),
        &body,
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_callers_get_errors_in_the_anthropic_shape() {
    let env = setup().await;
    let url = format!("{}/v1/messages", env.sc.url());
    let r = env
        .client
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let body = json!({"model": "claude-nope", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
    let r = env.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");

    let no_max = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    let r = env.client.post(&url).json(&no_max).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_credentials_never_reach_the_provider() {
    let env = setup().await;
    let r = post_chat(
        &env.client,
        &env.sc.url(),
        None,
        None,
        &chat_body("auto", false),
    )
    .await;
    assert_eq!(r.status(), 200);
    let seen = env.fake.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Bearer sk-alpha-main-secret")
    );
    assert!(!format!("{seen:?}").contains("app-own-credential"));
}
