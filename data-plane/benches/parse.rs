//! Sidecar request work for a 200-message agent history, per request (and
//! scan + features + fingerprints for 20, 114 and 200 KB histories, on an
//! agent's next turn, on first sight and, for comparison, from the whole
//! parsed tree): scan + check the body, compute the routing features,
//! fingerprint the tail (loop detection), encode the `RouteRequest`, and
//! write the body for the upstream (the app's bytes with the model
//! replaced). Harness-free, never run by `cargo test`:
//!   cargo bench -p keel-data-plane --bench parse

use std::{hint::black_box, time::Instant};

use keel::{fingerprint::FingerprintCache, pb};
use keel_data_plane::{
    chat_body::ChatView, facts::FactsCache, features, format::Format, inbound, rewrite,
};
use prost::Message;
use serde_json::{Map, Value, json};

// The sidecar binary's allocator, so allocation costs are the ones it pays.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A 200-message coding-agent history in OpenAI shape: tool calls with
/// realistic argument and output sizes (file reads of ~2 KB, test runs, edits).
fn openai_body() -> Vec<u8> {
    openai_history(200)
}

/// An OpenAI agent history of about `kb` KB (the same turns as
/// [`openai_body`], as many as fit).
fn openai_history_of(kb: usize) -> Vec<u8> {
    let mut n = 4;
    loop {
        let body = openai_history(n);
        if body.len() >= kb * 1024 || n > 2000 {
            return body;
        }
        n += 2;
    }
}

/// A coding-agent history of `messages` messages in OpenAI shape.
fn openai_history(messages: usize) -> Vec<u8> {
    let file: String = (0..60)
        .map(|i| format!("    line_{i} = compute(x, y) + {i}  # comment\n"))
        .collect();
    let mut m = vec![
        json!({"role": "system", "content": "You are a coding agent. Use the tools to fix the repository."}),
        json!({"role": "user", "content": "Fix the failing tests in the repository."}),
    ];
    let mut k = 0;
    while m.len() < messages {
        let (name, args, out) = match k % 3 {
            0 => (
                "read_file",
                json!({"path": format!("/repo/src/mod_{k}.py")}),
                file.clone(),
            ),
            1 => (
                "str_replace_editor",
                json!({"command": "str_replace", "path": format!("/repo/src/mod_{k}.py"), "old_str": "x + 1", "new_str": "x + 2"}),
                "The file has been edited.".to_owned(),
            ),
            _ => (
                "run_tests",
                json!({"path": "tests"}),
                format!(
                    "FAILED tests/test_core.py::test_{k} - AssertionError\n3 failed, 40 passed in 1.{k}s"
                ),
            ),
        };
        m.push(json!({"role": "assistant", "content": "Next step.", "tool_calls": [{"id": format!("call_{k}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}));
        m.push(json!({"role": "tool", "tool_call_id": format!("call_{k}"), "content": out}));
        k += 1;
    }
    let tools: Vec<Value> = ["read_file", "str_replace_editor", "run_tests"]
        .iter()
        .map(|n| json!({"type": "function", "function": {"name": n, "description": "A tool.", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}))
        .collect();
    serde_json::to_vec(&json!({"model": "auto", "messages": m, "tools": tools, "max_tokens": 1024}))
        .expect("json")
}

fn time<T>(label: &str, bytes: usize, rounds: u32, mut f: impl FnMut() -> T) {
    for _ in 0..rounds / 10 {
        black_box(f());
    }
    let mut samples: Vec<f64> = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let t = Instant::now();
        black_box(f());
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    report(label, bytes, samples);
}

/// Prints p50 and p99 of `samples` (µs) for `bytes` of input.
fn report(label: &str, bytes: usize, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let p = |q: f64| samples[((q * samples.len() as f64) as usize).min(samples.len() - 1)];
    println!(
        "{label:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  ({:.0} MB/s at p50)",
        p(0.5),
        p(0.99),
        bytes as f64 / p(0.5)
    );
}

/// What the sidecar computes from a body before asking `Route`: the scanned
/// request, its features and the fingerprints of its tail (chat.rs), with
/// the sidecar's two caches.
struct Caches {
    facts: FactsCache,
    fingerprints: FingerprintCache,
}

impl Caches {
    fn new() -> Self {
        Caches {
            facts: FactsCache::default(),
            fingerprints: FingerprintCache::default(),
        }
    }
}

fn route_inputs(
    body: &bytes::Bytes,
    window: usize,
    caches: &Caches,
) -> (
    inbound::ChatRequest,
    pb::RequestFeatures,
    Vec<pb::TurnFingerprint>,
) {
    let chat = inbound::parse_chat(Format::OpenAi, body.clone(), &caches.facts).expect("parse");
    let f = features::from_facts(&chat.facts, &chat.body, chat.stream);
    let (offset, tail) = chat.body.last_message_texts(window + 1);
    let fps = caches.fingerprints.fingerprint_tail_proto(
        keel::fingerprint::Format::OpenAi,
        &tail,
        offset,
        window,
    );
    (chat, f, fps)
}

/// The same from a whole parsed tree, as the sidecar did before the scan
/// (no caches): the comparison.
fn route_inputs_from_tree(
    body: &[u8],
    window: usize,
) -> (pb::RequestFeatures, Vec<pb::TurnFingerprint>) {
    let tree: Map<String, Value> = serde_json::from_slice(body).expect("parse");
    let f = features::compute(&tree, false);
    let messages = tree
        .get("messages")
        .and_then(Value::as_array)
        .expect("messages");
    let fps =
        keel::fingerprint::fingerprint_proto(keel::fingerprint::Format::OpenAi, messages, window);
    (f, fps)
}

/// [`route_inputs`] of `body` timed `rounds` times, each with caches that
/// saw `before` (the previous turn), or nothing when it is None.
fn time_turn(
    label: &str,
    before: Option<&bytes::Bytes>,
    body: &bytes::Bytes,
    window: usize,
    rounds: u32,
) {
    let mut samples: Vec<f64> = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let caches = Caches::new();
        if let Some(before) = before {
            black_box(route_inputs(before, window, &caches));
        }
        let t = Instant::now();
        black_box(route_inputs(body, window, &caches));
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    report(label, body.len(), samples);
}

fn main() {
    let body = bytes::Bytes::from(openai_body());
    let n = body.len();
    println!("200-message OpenAI agent history: {} KB", n / 1024);
    let rounds = 2000;
    let window = keel::fingerprint::DEFAULT_WINDOW;
    let caches = Caches::new();
    time("scan + check, parts seen (parse_chat)", n, rounds, || {
        inbound::parse_chat(Format::OpenAi, body.clone(), &caches.facts).expect("parse")
    });
    time(
        "the whole tree, for comparison (from_slice)",
        n,
        rounds,
        || serde_json::from_slice::<Map<String, Value>>(&body).expect("parse"),
    );
    let chat = inbound::parse_chat(Format::OpenAi, body.clone(), &caches.facts).expect("parse");
    time("features from facts", n, rounds, || {
        features::from_facts(&chat.facts, &chat.body, chat.stream)
    });
    let (_, f, fps) = route_inputs(&body, window, &caches);
    let req = pb::RouteRequest {
        tenant: keel::DEFAULT_TENANT.into(),
        conversation_id: "bench-12345".into(),
        profile: "AGENT".into(),
        model: chat.model.clone(),
        features: Some(f),
        fingerprints: fps,
        ..Default::default()
    };
    println!("RouteRequest: {} bytes on the wire", req.encoded_len());
    time("encode RouteRequest", n, rounds, || req.encode_to_vec());
    let target = pb::Target {
        upstream_model: "gpt-4.1-2025-04-14".into(),
        wire_format: Format::OpenAi.wire() as i32,
        ..Default::default()
    };
    let upstream = |chat: &mut inbound::ChatRequest| {
        rewrite::prepare(Format::OpenAi, &mut chat.body, &target, false, false, 1024)
            .expect("prepare")
            .body
    };
    let mut same = inbound::parse_chat(Format::OpenAi, body.clone(), &caches.facts).expect("parse");
    time(
        "body for upstream, app's bytes (prepare)",
        n,
        rounds,
        || upstream(&mut same),
    );
    let tree = serde_json::from_slice::<Map<String, Value>>(&body).expect("parse");
    time(
        "body for upstream, re-serialized (to_vec)",
        n,
        rounds,
        || serde_json::to_vec(&tree).expect("json"),
    );
    // Scan + features + fingerprints on histories of the sizes agents send:
    // a turn whose earlier messages the caches saw on the previous turn
    // (an agent's next turn), one they never saw (the first request after a
    // restart), and the whole tree without caches (before the scan).
    for kb in [20, 114, 200] {
        let body = bytes::Bytes::from(openai_history_of(kb));
        let n = body.len();
        let v: Value = serde_json::from_slice(&body).expect("json");
        let mut previous = v.clone();
        let m = previous["messages"].as_array_mut().expect("messages");
        m.truncate(m.len() - 2);
        let previous = bytes::Bytes::from(serde_json::to_vec(&previous).expect("json"));
        let kb = n / 1024;
        time_turn(
            &format!("next turn, {kb} KB"),
            Some(&previous),
            &body,
            window,
            rounds,
        );
        time_turn(
            &format!("first sight, {kb} KB"),
            None,
            &body,
            window,
            rounds / 4,
        );
        time(
            &format!("whole tree, no caches, {kb} KB"),
            n,
            rounds,
            || route_inputs_from_tree(&body, window),
        );
    }
    time("all of the above, next turn", n, rounds, || {
        let (chat, f, fps) = route_inputs(&body, window, &caches);
        let req = pb::RouteRequest {
            features: Some(f),
            fingerprints: fps,
            ..Default::default()
        };
        let mut chat = chat;
        (req.encode_to_vec(), upstream(&mut chat))
    });
}
