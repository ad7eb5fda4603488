//! Secrets and prompts stay where they belong: traffic of every kind (both
//! APIs, streamed or not, translated, tool calls, a 429 failing over to the
//! next key, refusals, a budget pause) runs with trace logging on both
//! processes, and no provider key, app credential, control-plane token or
//! prompt text appears in any log, metric, error body or admin answer. One
//! provider key comes from the environment, the other from a 0600 keys file.

mod common;

use common::*;
use keel::pb::{
    self, GetBudgetsRequest, GetCatalogRequest, GetConversationRequest, SetBudgetsRequest,
    admin_client::AdminClient,
};
use keel_testkit::{Behavior, ControlPlane, FakeProvider, Sidecar};
use serde_json::{Value, json};
use tonic::{Request, transport::Channel};

const SIDECAR_TOKEN: &str = "kt-sidecar-trace-7f3a9c";
const ADMIN_TOKEN: &str = "kt-admin-trace-51be02";
const APP_KEY: &str = "app-own-credential";
/// Words that occur only in prompts (system, user, tool result, image).
const PROMPT: [&str; 4] = [
    "zanzibarquokka",
    "fennelmarmoset",
    "obsidiantapir",
    "QUJDREVGR0hJSktMTU5PUFFS",
];

fn with_token<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn openai_body(stream: bool, tools: bool) -> Value {
    let mut body = json!({
        "model": "auto",
        "stream": stream,
        "messages": [
            {"role": "system", "content": format!("You guard the {}.", PROMPT[0])},
            {"role": "user", "content": [
                {"type": "text", "text": format!("Where is the {}?", PROMPT[1])},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", PROMPT[3])}}
            ]},
        ]
    });
    if tools {
        body["tools"] = json!([{"type": "function", "function": {"name": "search",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]);
        body["messages"].as_array_mut().unwrap().extend([
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "search", "arguments": "{\"q\":\"x\"}"}}]}),
            json!({"role": "tool", "tool_call_id": "call_1", "content": format!("found {}", PROMPT[2])}),
        ]);
    }
    body
}

fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "auto", "max_tokens": 64, "stream": stream,
        "system": format!("You guard the {}.", PROMPT[0]),
        "messages": [{"role": "user", "content": format!("Where is the {}?", PROMPT[1])}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_prompt_reaches_logs_metrics_errors_or_admin() {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}\n[[credentials]]\nname = \"host\"\nrole = \"sidecar\"\ntenant = \"acme\"\ntoken_sha256 = \"{}\"\n\
         [[credentials]]\nname = \"ops\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n",
        alpha(&fake),
        model("strong", 3, 3.0, 15.0).replace(r#"["tools"]"#, r#"["tools", "vision"]"#),
        sha256_hex(SIDECAR_TOKEN),
        sha256_hex(ADMIN_TOKEN)
    );
    let trace = [("RUST_LOG", "trace")];
    let cp =
        ControlPlane::start_with_env(tmp.path(), &config(&tmp.path().join("data"), &body), &trace)
            .await
            .unwrap();
    // The first key from the environment, the second from a 0600 keys file.
    let keys_file = tmp.path().join("keys.env");
    std::fs::write(&keys_file, format!("{}={}\n", KEYS[1].0, KEYS[1].1)).unwrap();
    std::fs::set_permissions(
        &keys_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let keys_file = keys_file.display().to_string();
    let env = [
        &KEYS[..1],
        &trace,
        &[
            ("KEEL_CONTROL_PLANE_TOKEN", SIDECAR_TOKEN),
            ("KEEL_API_KEY", APP_KEY),
            ("KEEL_KEYS_FILE", &keys_file),
        ],
    ]
    .concat();
    let args = [SIDECAR_ARGS, &["--tenant", "acme"]].concat();
    let sc = Sidecar::start(tmp.path(), &cp.url(), &args, &env)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let mut answers: Vec<String> = Vec::new();

    // Both APIs, streamed and not, with tools; the first key answers 429 so
    // the sidecar moves to the next one.
    fake.set_behavior(Behavior {
        fail_status: Some(429),
        retry_after: Some(1),
        fail_only_key: Some(KEYS[0].1.to_owned()),
        ..Behavior::default()
    });
    for (stream, tools) in [(false, false), (true, false), (false, true), (true, true)] {
        let r = post_chat(
            &client,
            &sc.url(),
            Some("conv-1"),
            Some("AGENT"),
            &openai_body(stream, tools),
        )
        .await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "stream {stream}, tools {tools}: {text}");
    }
    for stream in [false, true] {
        let r = client
            .post(format!("{}/v1/messages", sc.url()))
            .header("x-api-key", APP_KEY)
            .header("x-conversation-id", "conv-2")
            .json(&anthropic_body(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    // The 429s moved every turn to the key from the file.
    let backup = format!("Bearer {}", KEYS[1].1);
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.authorization.as_deref() == Some(backup.as_str()))
    );
    // Refusals: no app key, a broken body, an upstream error relayed.
    let r = client
        .post(format!("{}/v1/chat/completions", sc.url()))
        .json(&openai_body(false, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    answers.push(r.text().await.unwrap());
    let broken = format!(
        "{{\"messages\": [{{\"role\": \"user\", \"content\": \"{}",
        PROMPT[1]
    );
    let r = client
        .post(format!("{}/v1/chat/completions", sc.url()))
        .bearer_auth(APP_KEY)
        .body(broken)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    answers.push(r.text().await.unwrap());
    fake.set_behavior(Behavior {
        fail_status: Some(400),
        ..Behavior::default()
    });
    let r = post_chat(
        &client,
        &sc.url(),
        Some("conv-3"),
        Some("CHAT"),
        &openai_body(false, false),
    )
    .await;
    answers.push(r.text().await.unwrap());
    fake.set_behavior(Behavior::default());

    // A budget pause, set and read by the admin.
    let channel = Channel::from_shared(cp.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = AdminClient::new(channel);
    admin
        .set_budgets(with_token(
            SetBudgetsRequest {
                caps: Some(pb::BudgetCaps {
                    per_conversation_turns: Some(1),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap();
    // With tools, as conv-1's main line has them (a request without would
    // be a side call, which no turn cap pauses).
    let r = post_chat(
        &client,
        &sc.url(),
        Some("conv-1"),
        Some("AGENT"),
        &openai_body(false, true),
    )
    .await;
    assert_eq!(r.status(), 402);
    answers.push(r.text().await.unwrap());

    // Everything an operator can read.
    let conversation = GetConversationRequest {
        tenant: "acme".into(),
        conversation_id: "conv-1".into(),
    };
    let c = admin
        .get_conversation(with_token(conversation, ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert!(c.turns >= 4, "{c:?}");
    answers.push(format!("{c:?}"));
    let budgets = GetBudgetsRequest {
        tenant: "acme".into(),
        ..Default::default()
    };
    let b = admin
        .get_budgets(with_token(budgets, ADMIN_TOKEN))
        .await
        .unwrap();
    answers.push(format!("{:?}", b.into_inner()));
    let catalog = admin
        .get_catalog(with_token(GetCatalogRequest {}, ADMIN_TOKEN))
        .await
        .unwrap();
    answers.push(format!("{:?}", catalog.into_inner()));
    for url in [
        format!("http://{}/metrics", cp.http),
        format!("{}/metrics", sc.url()),
    ] {
        answers.push(
            client
                .get(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }

    let logs = [("control plane log", cp.logs()), ("sidecar log", sc.logs())];
    assert!(logs[1].1.contains("TRACE"), "trace logging is on");
    let secrets = [KEYS[0].1, KEYS[1].1, APP_KEY, SIDECAR_TOKEN, ADMIN_TOKEN];
    for (what, text) in logs
        .iter()
        .map(|(w, t)| (*w, t.as_str()))
        .chain(answers.iter().map(|a| ("answer", a.as_str())))
    {
        for needle in secrets.iter().chain(PROMPT.iter()) {
            if let Some(at) = text.find(needle) {
                let from = text[..at]
                    .char_indices()
                    .rev()
                    .nth(200)
                    .map_or(0, |(i, _)| i);
                panic!(
                    "`{needle}` in the {what}: …{}…",
                    &text[from..(at + 60).min(text.len())]
                );
            }
        }
    }
}
