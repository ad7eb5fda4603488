//! The real OpenAI Codex CLI through Keel: `codex exec` with a custom model provider
//! pointing at the sidecar (`wire_api = "responses"`), against a scripted fake
//! provider of each kind. The scripted model asks for a shell command, Codex runs it
//! and sends its output back, the model finishes: the task completes, the tool call
//! and its output cross intact, both requests are turns of one pinned conversation,
//! and the sidecar answered no 4xx.
//!
//! Ignored by `cargo test`: `scripts/test-codex.sh` installs the pinned CLI and runs
//! these with `KEEL_CODEX_BIN` set.

mod common;

use std::{path::Path, process::Stdio, time::Duration};

use common::*;
use keel_testkit::{Behavior, FakeProvider, ScriptedCall, scripted};

/// The command the scripted model asks Codex to run, and what it prints.
const COMMAND: &str = "echo $((6*7)) > answer.txt && cat answer.txt";

/// Part of the recorded text answers the fake replays in both formats.
const RECORDED_TEXT: &str = "`serde_json` is not a dependency";

/// Runs the task on `model`; the provider answers on `provider_path` and its last
/// (recorded or written) answer says `final_text`.
async fn run_codex(model: &str, provider_path: &str, final_text: &str) {
    let codex = std::env::var("KEEL_CODEX_BIN")
        .expect("KEEL_CODEX_BIN names the codex launcher (scripts/test-codex.sh sets it)");
    let fake = FakeProvider::start().await.unwrap();
    fake.set_behavior(Behavior {
        tool_call: Some(ScriptedCall {
            name: Some("exec_command".into()),
            arguments: serde_json::json!({ "cmd": COMMAND }).to_string(),
        }),
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp.path().join("data"), &three_providers(&fake));
    let cp = keel_testkit::ControlPlane::start(tmp.path(), &cfg)
        .await
        .unwrap();
    let sc = keel_testkit::Sidecar::start(tmp.path(), &cp.url(), SIDECAR_ARGS, THREE_KEYS)
        .await
        .unwrap();

    let home = tmp.path().join("codex-home");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    write_config(&home, &sc.url(), model);
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(&codex)
            .args([
                "exec",
                "--skip-git-repo-check",
                "--dangerously-bypass-approvals-and-sandbox",
                "--color",
                "never",
                "-C",
            ])
            .arg(&work)
            .arg("Compute six times seven with the shell and save it to answer.txt")
            .env("CODEX_HOME", &home)
            .env("KEEL_APP_KEY", "app-own-credential")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("codex exec finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs = || {
        format!(
            "stdout:\n{stdout}\nstderr:\n{stderr}\nsidecar:\n{}",
            sc.logs()
        )
    };
    assert!(out.status.success(), "codex exec failed: {}", logs());
    assert!(
        stdout.contains(final_text),
        "the model's last answer: {}",
        logs()
    );
    // Codex really ran the command the model asked for.
    let answer = std::fs::read_to_string(work.join("answer.txt")).unwrap_or_default();
    assert_eq!(answer.trim(), "42", "{}", logs());

    // Two model calls reached the provider, in its own format; the second carries the
    // command's output back to the model.
    let calls: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == provider_path)
        .collect();
    assert_eq!(calls.len(), 2, "{}", logs());
    assert_eq!(calls[0].body["stream"], true, "Codex streams");
    let second = calls[1].body.to_string();
    assert!(
        second.contains("42"),
        "tool output reaches the model: {second}"
    );
    assert!(second.contains("exec_command"));

    // Codex's session id is the conversation: two turns, pinned, on the model asked for.
    let session = stderr
        .lines()
        .find_map(|l| l.strip_prefix("session id: "))
        .expect("codex prints its session id")
        .trim()
        .to_owned();
    let conv = conversation(&cp.url(), &session).await;
    assert_eq!(conv.turns, 2, "{conv:?}");
    assert_eq!(conv.pinned_model, model);

    // No request was refused.
    let metrics = reqwest::get(format!("{}/metrics", sc.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused = metrics
        .lines()
        .filter(|l| l.starts_with("keel_sidecar_requests_total") && l.contains("4xx"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert_eq!(refused, 0, "{metrics}");
}

/// The Codex config the README documents, pointed at this sidecar.
fn write_config(home: &Path, sidecar: &str, model: &str) {
    let config = format!(
        r#"model = "{model}"
model_provider = "keel"
# Offline test: no update check, no web search, no retries hiding an error.
check_for_update_on_startup = false
web_search = "disabled"

[model_providers.keel]
name = "Keel"
base_url = "{sidecar}/v1"
env_key = "KEEL_APP_KEY"
wire_api = "responses"
http_headers = {{ "X-Router-Profile" = "AGENT" }}
request_max_retries = 0
stream_max_retries = 0
"#
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Codex CLI: scripts/test-codex.sh"]
async fn codex_runs_a_tool_task_through_a_chat_completions_provider() {
    run_codex("chat-m", "/v1/chat/completions", RECORDED_TEXT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Codex CLI: scripts/test-codex.sh"]
async fn codex_runs_a_tool_task_through_an_anthropic_provider() {
    run_codex("claude-m", "/v1/messages", RECORDED_TEXT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Codex CLI: scripts/test-codex.sh"]
async fn codex_runs_a_tool_task_through_a_native_responses_provider() {
    run_codex("native-m", "/v1/responses", scripted::TEXT).await;
}
