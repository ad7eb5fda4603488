//! Cost per routed turn on 200-message histories: fingerprint the tail window (what the
//! sidecar does) plus `observe` (what the control plane does, including the state's round
//! trip through the session record's codec). Fingerprinting is measured cold (every
//! message of the window computed: [`fingerprint`]) and warm (the sidecar's
//! [`FingerprintCache`] across the turns of a growing conversation, 2 new messages per
//! turn). Harness-free:
//! `cargo bench -p keel-control-plane --bench divergence`.

use keel::fingerprint::{FingerprintCache, Format, fingerprint};
use keel_control_plane::divergence::DivergenceConfig;
use keel_control_plane::store::{Session, decode_session, encode_session};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Instant;

/// A 200-message coding-agent history: tool calls with realistic argument and output
/// sizes (file reads of ~2 KB, test runs, edits), in the given format.
fn history(format: Format) -> Vec<Value> {
    let file: String = (0..60)
        .map(|i| format!("    line_{i} = compute(x, y) + {i}  # comment\n"))
        .collect();
    let mut m =
        vec![json!({"role": "user", "content": "Fix the failing tests in the repository."})];
    let mut k = 0;
    while m.len() < 200 {
        let (name, args, out) = match k % 3 {
            0 => (
                "read_file",
                json!({"path": format!("/repo/src/mod_{k}.py")}),
                file.clone(),
            ),
            1 => (
                "str_replace_editor",
                json!({"command": "str_replace", "path": format!("/repo/src/mod_{k}.py"), "old_str": "x + 1", "new_str": "x + 2"}),
                "The file has been edited.".to_string(),
            ),
            _ => (
                "run_tests",
                json!({"path": "tests"}),
                format!(
                    "FAILED tests/test_core.py::test_{k} - AssertionError\n{} failed, 40 passed in 1.{k}s",
                    10 - k % 10
                ),
            ),
        };
        match format {
            Format::OpenAi => {
                m.push(json!({"role": "assistant", "content": "Next step.", "tool_calls": [{"id": format!("call_{k}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}));
                m.push(
                    json!({"role": "tool", "tool_call_id": format!("call_{k}"), "content": out}),
                );
            }
            Format::Anthropic => {
                m.push(json!({"role": "assistant", "content": [{"type": "text", "text": "Next step."}, {"type": "tool_use", "id": format!("toolu_{k}"), "name": name, "input": args}]}));
                m.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": format!("toolu_{k}"), "content": out}]}));
            }
        }
        k += 1;
    }
    m
}

/// A 200-message mini-swe-agent history (fenced commands, returncode replies).
fn fenced_history() -> Vec<Value> {
    let out: String = (0..50)
        .map(|i| format!("src/pkg/file_{i}.py:{i}: def handler_{i}(request):\n"))
        .collect();
    let mut m = vec![
        json!({"role": "system", "content": "You are a helpful assistant."}),
        json!({"role": "user", "content": "<pr_description>fix it</pr_description>"}),
    ];
    let mut k = 0;
    while m.len() < 200 {
        m.push(json!({"role": "assistant", "content": format!("THOUGHT: I will look for the handler number {k} and check its behaviour.\n\n```bash\ngrep -rn handler_{k} src | head -50\n```")}));
        m.push(json!({"role": "user", "content": format!("<returncode>0</returncode>\n<output>\n{out}</output>")}));
        k += 1;
    }
    m
}

fn bench(label: &str, format: Format, msgs: &[Value], window: usize) {
    let cfg = DivergenceConfig::default();
    // One routed turn per assistant message: the history grows by 2 messages per turn.
    let turns: Vec<usize> = (1..=msgs.len())
        .filter(|&i| {
            i == msgs.len() || msgs[i].get("role").and_then(Value::as_str) == Some("assistant")
        })
        .collect();
    let rounds = 20;
    let (mut t_cold, mut t_warm, mut t_obs, mut t_store) = (0u128, 0u128, 0u128, 0u128);
    for _ in 0..rounds {
        let mut session = Session::default();
        // What the sidecar holds: a cache that has seen this conversation's earlier turns
        // (fresh per round, so each round's first turn is a cold one).
        let cache = FingerprintCache::default();
        for &end in &turns {
            let t0 = Instant::now();
            let fps = fingerprint(format, &msgs[..end], window);
            let t1 = Instant::now();
            let warm = cache.fingerprint(format, &msgs[..end], window);
            let t2 = Instant::now();
            black_box(session.divergence.observe(&fps, &cfg));
            let t3 = Instant::now();
            let stored = encode_session(&session);
            session = decode_session(&stored).unwrap_or_default();
            let t4 = Instant::now();
            assert_eq!(warm, fps, "cached fingerprints differ");
            t_cold += (t1 - t0).as_nanos();
            t_warm += (t2 - t1).as_nanos();
            t_obs += (t3 - t2).as_nanos();
            t_store += (t4 - t3).as_nanos();
        }
    }
    let n = (rounds * turns.len()) as f64 * 1000.0;
    println!(
        "{label:<32} window {window:>3}: fingerprint cold {:>6.1} µs/turn, warm {:>5.1} µs/turn; observe {:>4.2} µs/turn; session record encode+decode {:>4.1} µs/turn",
        t_cold as f64 / n,
        t_warm as f64 / n,
        t_obs as f64 / n,
        t_store as f64 / n
    );
}

fn main() {
    let oa = history(Format::OpenAi);
    let an = history(Format::Anthropic);
    let fe = fenced_history();
    for w in [keel::fingerprint::DEFAULT_WINDOW, 40, 200] {
        bench("openai tool agent, 200 msgs", Format::OpenAi, &oa, w);
        bench("anthropic tool agent, 200 msgs", Format::Anthropic, &an, w);
        bench("mini-swe fenced agent, 200 msgs", Format::OpenAi, &fe, w);
    }
}
