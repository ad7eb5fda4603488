use super::*;
use serde_json::json;

fn oa_call(name: &str, args: &str) -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_x", "type": "function", "function": {"name": name, "arguments": args}}]})
}

fn one(format: Format, msgs: &[Value]) -> Vec<TurnFp> {
    fingerprint(format, msgs, DEFAULT_WINDOW)
}

#[test]
fn hashes_are_pinned_across_builds() {
    // Persisted in the session store: a change here silently resets every detector.
    assert_eq!(h(b"keel"), xxhash_rust::xxh3::xxh3_64(b"keel"));
    assert_eq!(h(b""), 0x2d06_8005_38d3_94c2);
}

#[test]
fn key_order_and_volatile_keys_do_not_change_the_action() {
    let a = one(
        Format::OpenAi,
        &[oa_call(
            "get",
            r##"{"order_id":"#W1","request_id":"a1b2c3d4e5f6a7b8","n":1}"##,
        )],
    );
    let b = one(
        Format::OpenAi,
        &[oa_call(
            "get",
            r##"{"n":1,"order_id":"#W1","request_id":"99887766554433aa"}"##,
        )],
    );
    let c = one(
        Format::OpenAi,
        &[oa_call("get", r##"{"n":1,"order_id":"#W2"}"##)],
    );
    assert_eq!(a[0].action_hashes, b[0].action_hashes);
    assert_ne!(
        a[0].action_hashes, c[0].action_hashes,
        "business ids must stay distinct"
    );
    assert_eq!(a[0].action_name_hashes, c[0].action_name_hashes);
}

#[test]
fn same_call_hashes_the_same_in_both_formats() {
    let oa = one(Format::OpenAi, &[oa_call("read_file", r#"{"path":"/a"}"#)]);
    let an = one(
        Format::Anthropic,
        &[
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "/a"}}]}),
        ],
    );
    assert_eq!(oa[0].action_hashes, an[0].action_hashes);
}

#[test]
fn volatile_values_in_results_are_normalized() {
    let r = |s: &str| {
        one(
            Format::OpenAi,
            &[json!({"role": "tool", "tool_call_id": "c", "content": s})],
        )[0]
        .result_hash
    };
    let a = r(
        "2024-06-11T14:02:11.123Z ok in 0.53s id=3f2b1c9e-1111-4a4a-9b9b-0123456789ab at 0x7f3a2b1c /tmp/tmpab12cd34/x.txt line 40",
    );
    let b = r(
        "2024-06-12T09:59:01.999Z ok in 1.07s id=aaaaaaaa-2222-4b4b-8c8c-ba9876543210 at 0x7f00ffee /tmp/tmpzz99yy88/x.txt line 52",
    );
    assert_eq!(a, b);
    assert_ne!(a, r("2024-06-11T14:02:11.123Z FAIL in 0.53s"));
    assert_ne!(
        r("progress 40/400"),
        r("progress 160/400"),
        "progress counters are meaningful"
    );
}

#[test]
fn anthropic_results_fold_into_one_fingerprint() {
    let msgs = [
        json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "a", "input": {}},
            {"type": "tool_use", "id": "t2", "name": "b", "input": {}}]}),
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "fine"},
            {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "nope"}], "is_error": true}]}),
    ];
    let fps = one(Format::Anthropic, &msgs);
    assert_eq!(fps.len(), 2);
    assert_eq!(fps[1].role, Role::ToolResult);
    assert!(fps[1].is_error);
    assert_ne!(fps[1].error_hash, 0);
}

#[test]
fn fenced_command_and_returncode_reply() {
    let msgs = [
        json!({"role": "system", "content": "sys"}),
        json!({"role": "user", "content": "task"}),
        json!({"role": "assistant", "content": "THOUGHT: run it.\n\n```bash\npython  reproduce.py\n```"}),
        json!({"role": "user", "content": "<returncode>1</returncode>\n<output>\nTraceback (most recent call last):\n  File \"x.py\", line 3, in <module>\nValueError: bad\n</output>"}),
        json!({"role": "assistant", "content": "THOUGHT: again\n```bash\npython reproduce.py\n```"}),
        json!({"role": "user", "content": "<returncode>0</returncode>\n<output>\nerror: this line is just printed\n</output>"}),
        json!({"role": "assistant", "content": "Done, no command."}),
        json!({"role": "user", "content": "Please always provide EXACTLY ONE action in triple backticks."}),
    ];
    let fps = one(Format::OpenAi, &msgs);
    assert_eq!(
        fps.iter().map(|f| f.index).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7],
        "system skipped"
    );
    assert_eq!(fps[0].role, Role::User);
    assert_eq!(
        fps[1].action_hashes, fps[3].action_hashes,
        "whitespace in commands is not meaningful"
    );
    assert_ne!(fps[1].text_hash, fps[3].text_hash);
    assert_eq!(fps[2].role, Role::ToolResult);
    assert!(fps[2].is_error);
    assert_ne!(fps[2].error_hash, 0);
    assert_eq!(fps[4].role, Role::ToolResult);
    assert!(
        !fps[4].is_error,
        "an explicit returncode 0 wins over heuristics"
    );
    assert!(fps[5].action_hashes.is_empty());
    assert_eq!(
        fps[6].role,
        Role::User,
        "no command, so the reply is not a tool result"
    );
}

#[test]
fn mini_swe_agent_2_command_fences_are_actions() {
    // mini-swe-agent 2 labels its action fences `mswea_bash_command`.
    let v1 = one(
        Format::OpenAi,
        &[json!({"role": "assistant", "content": "THOUGHT: x\n\n```bash\npytest -x tests\n```"})],
    );
    let v2 = one(
        Format::OpenAi,
        &[
            json!({"role": "assistant", "content": "THOUGHT: x\n\n```mswea_bash_command\npytest -x tests\n```"}),
            json!({"role": "user", "content": "<returncode>1</returncode>\n<output>\nFAILED tests/test_a.py::test_b - AssertionError\n</output>"}),
        ],
    );
    assert_eq!(v2[0].action_hashes.len(), 1);
    assert_eq!(
        v1[0].action_hashes, v2[0].action_hashes,
        "the same command either way"
    );
    assert_eq!(v2[1].role, Role::ToolResult);
    assert!(v2[1].is_error);
}

#[test]
fn python_code_blocks_are_not_actions() {
    let fps = one(
        Format::OpenAi,
        &[json!({"role": "assistant", "content": "Here:\n```python\nprint(1)\n```"})],
    );
    assert!(fps[0].action_hashes.is_empty());
}

#[test]
fn window_keeps_indices_and_looks_back_one_message() {
    let msgs = [
        json!({"role": "user", "content": "task"}),
        json!({"role": "assistant", "content": "```bash\nls\n```"}),
        json!({"role": "user", "content": "<returncode>0</returncode><output>a</output>"}),
    ];
    let fps = fingerprint(Format::OpenAi, &msgs, 1);
    assert_eq!(fps.len(), 1);
    assert_eq!(fps[0].index, 2);
    assert_eq!(fps[0].role, Role::ToolResult);
}

#[test]
fn errors_are_detected_at_line_starts_only() {
    let r = |s: &str| {
        one(
            Format::OpenAi,
            &[json!({"role": "tool", "tool_call_id": "c", "content": s})],
        )[0]
        .clone()
    };
    assert!(r("Error: user not found").is_error);
    assert!(r("bash: foo: command not found").is_error);
    assert!(!r("def f():\n    raise ValueError('x')\n    error = 1").is_error);
    let a = r("Traceback (most recent call last):\n  File \"a.py\", line 3\nKeyError: 'x'");
    let b = r("Traceback (most recent call last):\n  File \"b.py\", line 9\n  more\nKeyError: 'x'");
    assert_eq!(a.error_hash, b.error_hash, "same final exception line");
    assert_ne!(a.result_hash, b.result_hash);
}

#[test]
fn numbers_fold_in_the_result_shape_and_the_error_signature() {
    let tool = |c: &str| json!({"role": "tool", "tool_call_id": "call_x", "content": c});
    let fps = one(
        Format::OpenAi,
        &[
            oa_call(
                "book",
                r#"{"user_id":"noah_9847","origin":"SFO","destination":"JFK","paid":957}"#,
            ),
            tool("Error: payment amount does not add up, total price is 1002, but paid 957"),
            oa_call(
                "book",
                r#"{"user_id":"noah_9847","origin":"SFO","destination":"JFK","paid":1047}"#,
            ),
            tool("Error: payment amount does not add up, total price is 1002, but paid 1047"),
            oa_call("ls", "{}"),
            tool("Please always provide EXACTLY ONE action in triple backticks, found 3 actions."),
            oa_call("ls", r#"{"a":1}"#),
            tool("Please always provide EXACTLY ONE action in triple backticks, found 5 actions."),
        ],
    );
    let (a, b, c, d) = (&fps[1], &fps[3], &fps[5], &fps[7]);
    assert!(a.is_error && b.is_error);
    assert_ne!(a.result_hash, b.result_hash, "the exact results differ");
    assert_eq!(a.result_shape_hash, b.result_shape_hash);
    assert_eq!(
        a.error_hash, b.error_hash,
        "one signature, whatever the amounts"
    );
    assert_ne!(c.result_hash, d.result_hash);
    assert_eq!(c.result_shape_hash, d.result_shape_hash);
    assert_ne!(a.result_shape_hash, c.result_shape_hash);
    assert_eq!(
        c.result_size as usize,
        "Please always provide EXACTLY ONE action in triple backticks, found 3 actions.".len()
    );
    assert_ne!(c.result_simhash, 0);
    // Re-guessed arguments of one call give near (here equal: digits fold) simhashes.
    let near = (fps[0].action_simhash ^ fps[2].action_simhash).count_ones();
    assert!(fps[0].action_simhash != 0 && near <= 8, "{near}");
}

#[test]
fn shell_diagnostics_and_not_found_are_errors() {
    for out in [
        "/bin/bash: line 2: unexpected EOF while looking for matching `''",
        "bash: line 44517: DISCUSSION: command not found",
        "File gson/src/Foo.java not found",
    ] {
        let fps = one(
            Format::OpenAi,
            &[
                json!({"role": "assistant", "content": "```\nopen x\n```"}),
                json!({"role": "user", "content": format!("{out}\n(Open file: n/a)\nbash-$")}),
            ],
        );
        assert!(fps[1].is_error && fps[1].error_hash != 0, "{out}");
    }
    let ok = one(
        Format::OpenAi,
        &[
            json!({"role": "assistant", "content": "```\nsearch_dir foo\n```"}),
            json!({"role": "user", "content": "No matches found for \"foo\" in /repo"}),
        ],
    );
    assert!(!ok[1].is_error);
}

#[test]
fn short_text_has_no_simhash_and_long_text_does() {
    let fps = one(
        Format::OpenAi,
        &[
            json!({"role": "user", "content": "yes"}),
            json!({"role": "user", "content": "could you please give me your email address"}),
        ],
    );
    assert_eq!(fps[0].text_simhash, 0);
    assert_ne!(fps[1].text_simhash, 0);
}

#[test]
fn malformed_input_never_panics() {
    let junk = [
        json!(null),
        json!(42),
        json!({"role": 7}),
        json!({"role": "assistant", "content": {"weird": true}, "tool_calls": "nope"}),
        json!({"role": "assistant", "tool_calls": [{"function": {"name": 3, "arguments": "{not json"}}, null]}),
        json!({"role": "user", "content": [null, 1, {"type": "tool_result"}]}),
        json!({"role": "assistant", "content": "```"}),
        json!({"role": "assistant", "content": "é```bash\n"}),
        json!({"role": "tool", "content": "<returncode>x</returncode>"}),
        json!({"role": "tool", "content": "é".repeat(5000)}),
    ];
    for f in [Format::OpenAi, Format::Anthropic] {
        let _ = fingerprint(f, &junk, 100);
        let _ = fingerprint(f, &junk, 0);
        let _ = fingerprint(f, &[], 40);
    }
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!({"a": [deep]});
    }
    let _ = fingerprint(
        Format::Anthropic,
        &[
            json!({"role": "assistant", "content": [{"type": "tool_use", "name": "x", "input": deep}]}),
        ],
        1,
    );
}

#[test]
fn proto_roles_round_trip() {
    for r in [Role::Assistant, Role::ToolResult, Role::User] {
        assert_eq!(Role::from_proto(r.to_proto()), Some(r));
    }
    assert_eq!(Role::from_proto(0), None);
}

/// The divergence corpus: (format, messages) of every conversation.
fn corpus() -> Vec<(Format, Vec<Value>)> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("control-plane/corpus/divergence");
    let mut out = Vec::new();
    for name in ["loops.jsonl", "healthy.jsonl"] {
        let text = std::fs::read_to_string(dir.join(name)).expect("corpus file");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let conv: Value = serde_json::from_str(line).expect("corpus line");
            let format = match conv["format"].as_str() {
                Some("anthropic") => Format::Anthropic,
                _ => Format::OpenAi,
            };
            let messages = conv["messages"].as_array().expect("messages").clone();
            out.push((format, messages));
        }
    }
    assert!(out.len() >= 70, "corpus has {} conversations", out.len());
    out
}

#[test]
fn cache_yields_exactly_what_fingerprint_yields_on_the_corpus() {
    // Persisted detector state depends on these values: the cache may only skip work.
    // A large cache shared by every conversation (hits across conversations and after
    // the window slides), and a tiny one that evicts constantly.
    let shared = FingerprintCache::default();
    let tiny = FingerprintCache::new(8);
    let corpus = corpus();
    for (format, msgs) in &corpus {
        for end in 1..=msgs.len() {
            for window in [1, 2, 3, DEFAULT_WINDOW, usize::MAX] {
                let history = &msgs[..end];
                let want = fingerprint(*format, history, window);
                assert_eq!(shared.fingerprint(*format, history, window), want);
                assert_eq!(tiny.fingerprint(*format, history, window), want);
                assert_eq!(
                    shared.fingerprint_proto(*format, history, window),
                    to_proto(&want)
                );
            }
        }
    }
    assert!(tiny.len() <= 32, "tiny cache holds {}", tiny.len());
    // Cold: the same results from a fresh cache in the other format (the key includes it).
    let other = FingerprintCache::default();
    for (format, msgs) in &corpus {
        let flipped = match format {
            Format::OpenAi => Format::Anthropic,
            Format::Anthropic => Format::OpenAi,
        };
        assert_eq!(
            other.fingerprint(flipped, msgs, usize::MAX),
            fingerprint(flipped, msgs, usize::MAX)
        );
    }
}

#[test]
fn cache_keeps_the_fenced_context_apart() {
    // The same user message is a command's output after a fenced action and a person
    // speaking otherwise; both must come out of the cache as computed.
    let cache = FingerprintCache::default();
    let reply =
        json!({"role": "user", "content": "<returncode>1</returncode><output>boom</output>"});
    let fenced = [
        json!({"role": "assistant", "content": "```bash\nmake\n```"}),
        reply.clone(),
    ];
    let plain = [json!({"role": "assistant", "content": "ok"}), reply];
    for _ in 0..2 {
        for msgs in [&fenced[..], &plain[..]] {
            for window in [1, 2] {
                assert_eq!(
                    cache.fingerprint(Format::OpenAi, msgs, window),
                    fingerprint(Format::OpenAi, msgs, window)
                );
            }
        }
    }
    assert_eq!(
        cache.fingerprint(Format::OpenAi, &fenced, 1)[0].role,
        Role::ToolResult
    );
    assert_eq!(
        cache.fingerprint(Format::OpenAi, &plain, 1)[0].role,
        Role::User
    );
}

#[test]
fn cache_is_bounded_and_handles_junk() {
    let cache = FingerprintCache::new(64);
    for i in 0..1000 {
        let msgs = [json!({"role": "user", "content": format!("message number {i}")})];
        let _ = cache.fingerprint(Format::OpenAi, &msgs, 1);
    }
    assert!(cache.len() <= 64, "holds {}", cache.len());
    let many_calls: Vec<Value> = (0..40)
        .map(|i| json!({"id": format!("c{i}"), "type": "function", "function": {"name": "f", "arguments": format!("{{\"n\":{i}}}")}}))
        .collect();
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!({"a": [deep]});
    }
    let junk = [
        json!(null),
        json!({"role": 7}),
        json!({"role": "system", "content": "be nice"}),
        json!({"role": "assistant", "content": null, "tool_calls": many_calls}),
        json!({"role": "assistant", "content": [{"type": "tool_use", "name": "x", "input": deep}]}),
        json!({"role": "tool", "content": [1, 2.5, -3, 1e300, true, {"text": "x"}]}),
    ];
    for _ in 0..2 {
        for f in [Format::OpenAi, Format::Anthropic] {
            for w in [1, 2, 100] {
                assert_eq!(cache.fingerprint(f, &junk, w), fingerprint(f, &junk, w));
            }
        }
    }
}

/// Folds every field of every fingerprint into one hash.
fn digest(fps: &[TurnFp], acc: &mut Vec<u64>) {
    for f in fps {
        acc.extend([
            u64::from(f.index),
            f.role.to_proto() as u64,
            f.text_hash,
            f.is_error as u64,
            f.result_hash,
            f.error_hash,
            f.text_simhash,
            f.result_simhash,
            u64::from(f.result_size),
            f.action_simhash,
            f.result_shape_hash,
            f.action_hashes.len() as u64,
        ]);
        acc.extend(&f.action_hashes);
        acc.extend(&f.action_name_hashes);
    }
}

#[test]
fn corpus_fingerprints_are_pinned() {
    // Any change to the values, which the detector persists, shows up here. Last
    // changed deliberately when error signatures started folding digits, shell
    // diagnostics and `... not found` lines became errors, and results gained a
    // simhash, a size and a digit-folded hash, actions a simhash; and when the corpus
    // was re-rendered from its scripts (new volatile values).
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("control-plane/corpus/divergence");
    let mut acc = Vec::new();
    for name in ["loops.jsonl", "healthy.jsonl"] {
        let text = std::fs::read_to_string(dir.join(name)).expect("corpus file");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let conv: Value = serde_json::from_str(line).expect("corpus line");
            let msgs = conv["messages"].as_array().expect("messages");
            for format in [Format::OpenAi, Format::Anthropic] {
                for end in 1..=msgs.len() {
                    digest(&fingerprint(format, &msgs[..end], DEFAULT_WINDOW), &mut acc);
                }
                digest(&fingerprint(format, msgs, usize::MAX), &mut acc);
            }
        }
    }
    let got = h_seq(acc.iter().copied());
    println!("corpus digest {got:#018x} over {} words", acc.len());
    assert_eq!(got, 0xdf10_60af_5e93_c2ce);
}

#[test]
fn a_tail_with_the_message_before_the_window_fingerprints_as_the_whole_history() {
    // Fenced commands make the look-back before the window matter.
    let mut msgs = vec![json!({"role": "user", "content": "fix it"})];
    for i in 0..12 {
        msgs.push(json!({"role": "assistant", "content": format!("```bash\nls dir{i}\n```")}));
        msgs.push(json!({"role": "user", "content": format!("dir{i}: a b c")}));
    }
    let window = 5;
    let cache = FingerprintCache::new(1024);
    let whole = cache.fingerprint_proto(Format::OpenAi, &msgs, window);
    let offset = msgs.len() - (window + 1);
    let tail = cache.fingerprint_tail_proto(Format::OpenAi, &msgs[offset..], offset, window);
    assert_eq!(tail, whole);
    assert_eq!(whole.len(), window);
    assert_eq!(whole[0].index as usize, msgs.len() - window);
    // A fresh cache: the tail alone, computed, not remembered.
    let fresh = FingerprintCache::new(1024);
    let short = fresh.fingerprint_tail_proto(Format::OpenAi, &msgs[offset..], offset, window);
    assert_eq!(short, whole);
    // The same messages as the app wrote them: keyed by their bytes, parsed
    // only when new, the same fingerprints (fresh and then from the cache).
    let texts: Vec<String> = msgs[offset..].iter().map(Value::to_string).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let by_text = FingerprintCache::new(1024);
    for _ in 0..2 {
        assert_eq!(
            by_text.fingerprint_tail_proto(Format::OpenAi, &texts, offset, window),
            whole
        );
    }
    assert_eq!(
        by_text.len(),
        window,
        "the window's; the look-back is read, not kept"
    );
    // Without the message before the window, a fenced answer reads differently.
    let cut = fresh.fingerprint_tail_proto(Format::OpenAi, &msgs[offset + 1..], offset + 1, window);
    assert_ne!(cut, whole, "the look-back message is needed");
}
