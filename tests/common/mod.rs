//! Shared pieces of the end-to-end tests: configs, provider keys, requests.
#![allow(dead_code)]

use std::path::Path;

use keel_testkit::FakeProvider;
use serde_json::{Value, json};

/// Provider keys the sidecar holds (from env), never seen by the control plane.
pub const KEYS: &[(&str, &str)] = &[
    ("KEEL_KEY_ALPHA_MAIN", "sk-alpha-main-secret"),
    ("KEEL_KEY_ALPHA_BACKUP", "sk-alpha-backup-secret"),
];

/// Sidecar flags for tests: a generous route deadline, since debug builds on
/// a loaded 2-core machine are slow and degraded mode is tested on purpose
/// elsewhere.
pub const SIDECAR_ARGS: &[&str] = &["--route-timeout", "5s"];

/// A control-plane config on ephemeral ports with sessions in `data`.
pub fn config(data: &Path, body: &str) -> String {
    format!(
        r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[store]
path = "{}"
session_idle_ttl = "1h"

{body}
"#,
        data.display()
    )
}

/// An OpenAI-format provider `alpha` at the fake, with two keys.
pub fn alpha(fake: &FakeProvider) -> String {
    format!(
        r#"
[[providers]]
name = "alpha"
api = "openai"
base_url = "{}"
keys = [{{ ref = "alpha-main", rpm = 1000 }}, {{ ref = "alpha-backup" }}]
"#,
        fake.openai_base_url()
    )
}

/// A `[[models]]` entry on provider `alpha` (upstream id `NAME-up`).
pub fn model(name: &str, tier: u32, usd_in: f64, usd_out: f64) -> String {
    format!(
        r#"
[[models]]
name = "{name}"
provider = "alpha"
upstream_model = "{name}-up"
tier = {tier}
input_usd_per_mtok = {usd_in}
output_usd_per_mtok = {usd_out}
context_tokens = 128000
capabilities = ["tools"]
"#
    )
}

/// A small OpenAI chat body.
pub fn chat_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a build assistant."},
            {"role": "user", "content": "Why does cargo build fail?"}
        ]
    })
}

/// POSTs an OpenAI chat request with Keel's headers.
pub async fn post_chat(
    client: &reqwest::Client,
    sidecar: &str,
    conversation: Option<&str>,
    profile: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = client
        .post(format!("{sidecar}/v1/chat/completions"))
        .header("authorization", "Bearer app-own-credential")
        .json(body);
    if let Some(c) = conversation {
        req = req.header("x-conversation-id", c);
    }
    if let Some(p) = profile {
        req = req.header("x-router-profile", p);
    }
    req.send().await.expect("request reaches the sidecar")
}

/// A response header as a string.
pub fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("missing header {name}"))
}

/// A gateway for one test: a fake provider `alpha`, a control plane with
/// `models` on it, and a sidecar with the test flags plus `extra_args`.
pub struct Gateway {
    pub fake: keel_testkit::FakeProvider,
    pub cp: keel_testkit::ControlPlane,
    pub sc: keel_testkit::Sidecar,
    pub client: reqwest::Client,
    // Last: the processes are killed before their directory goes.
    pub tmp: tempfile::TempDir,
}

impl Gateway {
    pub async fn start(models: &str, extra_args: &[&str]) -> Self {
        let fake = keel_testkit::FakeProvider::start().await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(
            &tmp.path().join("data"),
            &format!("{}{models}", alpha(&fake)),
        );
        let cp = keel_testkit::ControlPlane::start(tmp.path(), &cfg)
            .await
            .unwrap();
        let mut args = SIDECAR_ARGS.to_vec();
        args.extend_from_slice(extra_args);
        let sc = keel_testkit::Sidecar::start(tmp.path(), &cp.url(), &args, KEYS)
            .await
            .unwrap();
        Self {
            fake,
            cp,
            sc,
            client: reqwest::Client::new(),
            tmp,
        }
    }

    /// POSTs an OpenAI chat request to the sidecar.
    pub async fn chat(
        &self,
        conversation: Option<&str>,
        profile: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        post_chat(&self.client, &self.sc.url(), conversation, profile, body).await
    }
}

/// The conversation as `Admin.GetConversation` shows it (default tenant).
pub async fn conversation(cp_url: &str, id: &str) -> keel::pb::Conversation {
    let mut admin = keel::pb::admin_client::AdminClient::connect(cp_url.to_owned())
        .await
        .unwrap();
    admin
        .get_conversation(keel::pb::GetConversationRequest {
            tenant: String::new(),
            conversation_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Keys of [`three_providers`].
pub const THREE_KEYS: &[(&str, &str)] = &[
    ("KEEL_KEY_ALPHA_MAIN", "sk-alpha-main-secret"),
    ("KEEL_KEY_NATIVE_MAIN", "sk-native-secret"),
    ("KEEL_KEY_CLAUDE_MAIN", "sk-claude-secret"),
];

/// Three providers on one fake: `alpha` (OpenAI Chat Completions), `native` (OpenAI with
/// `responses = true`) and `claude` (Anthropic), serving `chat-m`, `native-m` and
/// `claude-m` (tier 3, tools).
pub fn three_providers(fake: &FakeProvider) -> String {
    let model = |name: &str, provider: &str| {
        format!(
            "[[models]]\nname = \"{name}\"\nprovider = \"{provider}\"\nupstream_model = \"{name}-up\"\n\
             tier = 3\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = 2.0\ncontext_tokens = 128000\n\
             capabilities = [\"tools\"]\n"
        )
    };
    format!(
        r#"
[[providers]]
name = "alpha"
api = "openai"
base_url = "{openai}"
keys = [{{ ref = "alpha-main" }}]

[[providers]]
name = "native"
api = "openai"
responses = true
base_url = "{openai}"
keys = [{{ ref = "native-main" }}]

[[providers]]
name = "claude"
api = "anthropic"
base_url = "{anthropic}"
keys = [{{ ref = "claude-main" }}]

{chat}
{native}
{claude}
"#,
        openai = fake.openai_base_url(),
        anthropic = fake.anthropic_base_url(),
        chat = model("chat-m", "alpha"),
        native = model("native-m", "native"),
        claude = model("claude-m", "claude"),
    )
}

/// Polls the conversation until it has `turns` decision records, each
/// completed by its report (spend, usage and parked keys are then applied).
pub async fn reported(cp_url: &str, id: &str, turns: usize) -> keel::pb::Conversation {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let conv = conversation(cp_url, id).await;
        if conv.decisions.len() >= turns && conv.decisions.iter().all(|d| d.result.is_some()) {
            return conv;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "turns of {id} never all reported: {:?}",
            conv.decisions
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `printf %s TOKEN | sha256sum`, as an operator computes it.
pub fn sha256_hex(token: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(token.as_bytes())?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}
