//! What agent harnesses send, end to end through the real binaries: Claude
//! Code's request shape (mid-conversation `system` messages, `anthropic-beta`,
//! `?beta=true`, its default model names, token counts, `HEAD /`) to an
//! Anthropic provider and, translated, to an OpenAI one; side calls that
//! never take the pin and are not turns.

mod common;

use common::{SIDECAR_ARGS, config, conversation, header};
use keel::pb::DecisionKind;
use keel_testkit::{ControlPlane, FakeProvider, Sidecar, fake_provider::FAKE_TOKEN_COUNT};
use serde_json::{Value, json};

const KEYS: &[(&str, &str)] = &[
    ("KEEL_KEY_ANT_MAIN", "sk-ant-secret"),
    ("KEEL_KEY_OAI_MAIN", "sk-oai-secret"),
];

struct Setup {
    fake: FakeProvider,
    cp: ControlPlane,
    sc: Sidecar,
    client: reqwest::Client,
    _tmp: tempfile::TempDir,
}

fn model(name: &str, provider: &str, tier: u32) -> String {
    format!(
        r#"
[[models]]
name = "{name}"
provider = "{provider}"
upstream_model = "{name}-up"
tier = {tier}
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_tokens = 200000
capabilities = ["tools"]
"#
    )
}

/// Strong and small models on an Anthropic provider (`ant-*`) and an OpenAI
/// one (`oai-*`); profile ANT allows only the Anthropic ones, OAI only the
/// OpenAI ones, both locked with floor 3. Claude Code's names resolve by
/// wildcard aliases.
async fn setup() -> Setup {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        r#"
[[providers]]
name = "ant"
api = "anthropic"
base_url = "{}"
keys = [{{ ref = "ant-main" }}]

[[providers]]
name = "oai"
api = "openai"
base_url = "{}"
keys = [{{ ref = "oai-main" }}]
{}{}{}{}
[aliases]
"claude-*" = "auto"
"claude-haiku-*" = "ant-small"
"best" = "ant-strong"

[profiles.ANT]
session_lock = true
quality_floor = 3
allowed_models = ["ant-strong", "ant-small"]

[profiles.OAI]
session_lock = true
quality_floor = 3
allowed_models = ["oai-strong", "oai-small"]
"#,
        fake.anthropic_base_url(),
        fake.openai_base_url(),
        model("ant-strong", "ant", 3),
        model("ant-small", "ant", 1),
        model("oai-strong", "oai", 3),
        model("oai-small", "oai", 1),
    );
    let cp = ControlPlane::start(tmp.path(), &config(&tmp.path().join("data"), &body))
        .await
        .unwrap();
    let sc = Sidecar::start(tmp.path(), &cp.url(), SIDECAR_ARGS, KEYS)
        .await
        .unwrap();
    Setup {
        fake,
        cp,
        sc,
        client: reqwest::Client::new(),
        _tmp: tmp,
    }
}

/// A Claude Code style turn: tools, a mid-conversation system message.
fn claude_code_body(model: &str, tools: bool) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": 1024,
        "stream": false,
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Fix the build."}]},
            {"role": "system", "content": "# Environment\nPlatform: linux"}
        ],
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
    });
    if tools {
        body["tools"] = json!([{"name": "Bash", "description": "Run a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]);
    }
    body
}

impl Setup {
    async fn messages(
        &self,
        path: &str,
        profile: &str,
        session: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.sc.url()))
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "context-management-2025-06-27")
            .header("anthropic-beta", "interleaved-thinking-2025-05-14")
            .header("x-app", "cli")
            .header("user-agent", "claude-cli/2.1.332 (external, sdk-cli)")
            .header("x-claude-code-session-id", session)
            .header("x-router-profile", profile)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_to_an_anthropic_provider() {
    let s = setup().await;
    // HEAD / answers, as harnesses probe it.
    let head = s.client.head(s.sc.url()).send().await.unwrap();
    assert_eq!(head.status(), 200);

    // Side call first: the title on the small model, no tools.
    let title = s
        .messages(
            "/v1/messages?beta=true",
            "ANT",
            "cc-1",
            &claude_code_body("claude-haiku-4-5-20251001", false),
        )
        .await;
    assert_eq!(title.status(), 200);
    assert_eq!(header(&title, "x-keel-decision-kind"), "side");
    assert_eq!(header(&title, "x-keel-model"), "ant-small");
    assert_eq!(header(&title, "x-keel-turn"), "0");

    // The main line, with Claude Code's default model name: pinned at the floor.
    for turn in 1..=2 {
        let r = s
            .messages(
                "/v1/messages?beta=true",
                "ANT",
                "cc-1",
                &claude_code_body("claude-opus-4-5-20251101", true),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-keel-model"), "ant-strong");
        assert_eq!(header(&r, "x-keel-turn"), turn.to_string());
        assert_eq!(header(&r, "x-keel-pinned"), "true");
    }

    // A token count is forwarded and is a side call too.
    let count = s
        .messages(
            "/v1/messages/count_tokens?beta=true",
            "ANT",
            "cc-1",
            &claude_code_body("claude-opus-4-5-20251101", true),
        )
        .await;
    assert_eq!(count.status(), 200);
    assert_eq!(header(&count, "x-keel-decision-kind"), "side");
    assert_eq!(
        header(&count, "x-keel-model"),
        "ant-strong",
        "served by the pin"
    );
    assert!(count.headers().get("x-keel-estimate").is_none());
    let counted: Value = count.json().await.unwrap();
    assert_eq!(counted["input_tokens"], FAKE_TOKEN_COUNT);

    // What reached the provider: the app's betas, version and query, the
    // body's beta fields and its mid-conversation system message.
    let seen = s.fake.requests();
    assert_eq!(seen.len(), 4);
    for r in &seen {
        assert_eq!(r.query.as_deref(), Some("beta=true"), "{}", r.path);
        assert_eq!(
            r.headers.get("anthropic-beta").map(String::as_str),
            Some("context-management-2025-06-27,interleaved-thinking-2025-05-14")
        );
        assert_eq!(r.anthropic_version.as_deref(), Some("2023-06-01"));
        assert_eq!(r.x_api_key.as_deref(), Some("sk-ant-secret"));
    }
    assert_eq!(seen[3].path, "/v1/messages/count_tokens");
    assert_eq!(seen[3].body["model"], "ant-strong-up");
    assert_eq!(seen[1].body["messages"][1]["role"], "system");
    assert!(seen[1].body.get("context_management").is_some());

    // Two turns on the main line; the side calls are on the timeline as side.
    let c = conversation(&s.cp.url(), "cc-1").await;
    assert_eq!(c.turns, 2);
    assert_eq!(c.pinned_model, "ant-strong");
    let side = c
        .decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::Side as i32)
        .count();
    assert_eq!(side, 2, "{:?}", c.decisions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_to_an_openai_provider_by_translation() {
    let s = setup().await;
    let r = s
        .messages(
            "/v1/messages?beta=true",
            "OAI",
            "cc-2",
            &claude_code_body("claude-opus-4-5", true),
        )
        .await;
    let status = r.status();
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-keel-model"], "oai-strong");
    assert_eq!(body["type"], "message", "answered in Anthropic's shape");

    // Translated: the system message in place, Anthropic's headers and query dropped.
    let seen = s.fake.requests();
    let sent = &seen[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.query, None);
    assert!(!sent.headers.contains_key("anthropic-beta"));
    let roles: Vec<&str> = sent.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "system"]);

    // A token count without an Anthropic target: Keel's estimate.
    let count = s
        .messages(
            "/v1/messages/count_tokens",
            "OAI",
            "cc-2",
            &claude_code_body("claude-opus-4-5", true),
        )
        .await;
    assert_eq!(count.status(), 200);
    assert_eq!(header(&count, "x-keel-estimate"), "true");
    let counted: Value = count.json().await.unwrap();
    assert!(counted["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(s.fake.requests().len(), 1, "nothing sent for an estimate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_names_and_aliases_that_resolve() {
    let s = setup().await;
    let r = s
        .client
        .get(format!("{}/v1/models", s.sc.url()))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"ant-strong") && ids.contains(&"best"),
        "{ids:?}"
    );
    assert!(!ids.iter().any(|id| id.contains('*')), "{ids:?}");

    // A name no model or alias matches is still a 404 in the caller's shape.
    let r = s
        .messages(
            "/v1/messages",
            "ANT",
            "cc-3",
            &json!({"model": "gpt-4o", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ids_a_retry_is_the_same_turn_and_a_rerun_a_new_conversation() {
    let s = setup().await;
    let post = |body: Value| {
        s.client
            .post(format!("{}/v1/chat/completions", s.sc.url()))
            .header("x-router-profile", "OAI")
            .json(&body)
            .send()
    };
    // Turn `n` of run `run`: the same opening, then what that run's model said.
    let turn = |run: &str, n: usize| {
        let mut messages = vec![
            json!({"role": "system", "content": "You are a build agent."}),
            json!({"role": "user", "content": "Fix the build."}),
        ];
        for i in 1..n {
            messages.push(json!({"role": "assistant", "content": format!("{run}: step {i}")}));
            messages.push(json!({"role": "user", "content": format!("result {i}")}));
        }
        json!({"model": "auto", "messages": messages})
    };
    let turns = |r: &reqwest::Response| header(r, "x-keel-turn").to_owned();
    let r1 = post(turn("a", 1)).await.unwrap();
    let r2 = post(turn("a", 2)).await.unwrap();
    // The same history again: a retry, the same turn.
    let retry = post(turn("a", 2)).await.unwrap();
    assert_eq!([turns(&r1), turns(&r2), turns(&retry)], ["1", "2", "2"]);
    assert_eq!(header(&retry, "x-keel-decision-kind"), "retain");
    let r3 = post(turn("a", 3)).await.unwrap();
    assert_eq!(turns(&r3), "3");
    // The task again from its opening: a new conversation.
    let rerun = post(turn("b", 1)).await.unwrap();
    assert_eq!(turns(&rerun), "1");
    assert_eq!(header(&rerun, "x-keel-decision-kind"), "initialize");
    assert_eq!(header(&rerun, "x-keel-session-source"), "fingerprint");
    // Each continues on its own.
    assert_eq!(turns(&post(turn("b", 2)).await.unwrap()), "2");
    assert_eq!(turns(&post(turn("a", 4)).await.unwrap()), "4");
    assert_eq!(turns(&post(turn("b", 3)).await.unwrap()), "3");
}
