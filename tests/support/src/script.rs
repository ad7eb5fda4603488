//! A scripted agent model, for driving real harnesses (Claude Code, the
//! OpenAI Agents SDK) through a task that uses a shell tool twice:
//!
//! 1. no tool result yet: call the shell tool with
//!    `echo keel-step-1 > keel-proof.txt`;
//! 2. one tool result: call it with `cat keel-proof.txt`;
//! 3. two or more: answer `DONE: <the last tool result>`, proving the tool
//!    results came back through the gateway.
//!
//! A request without tools (a harness's side call: a title, a summary) gets
//! a short text. Answers are generated in either API's real wire format,
//! whole or streamed (the same event sequence the providers send).

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

static ANSWERS: AtomicUsize = AtomicUsize::new(0);

/// A number for the next answer's ids (unique within the process).
pub fn answer_number() -> usize {
    ANSWERS.fetch_add(1, Ordering::Relaxed)
}

/// The file the scripted task writes and reads back.
pub const PROOF_FILE: &str = "keel-proof.txt";
/// What the first step writes into it.
pub const PROOF_TEXT: &str = "keel-step-1";

/// What the scripted model says next.
pub enum Step {
    Tool { name: String, command: String },
    Text(String),
}

/// The next step for a request in the given format.
pub fn next(anthropic: bool, body: &Value) -> Step {
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some(shell) = shell_tool(tools, anthropic) else {
        return Step::Text("Keel scripted answer".into());
    };
    let results = tool_results(anthropic, body);
    match results.len() {
        0 => Step::Tool {
            name: shell,
            command: format!("echo {PROOF_TEXT} > {PROOF_FILE}"),
        },
        1 => Step::Tool {
            name: shell,
            command: format!("cat {PROOF_FILE}"),
        },
        _ => Step::Text(format!(
            "DONE: {}",
            results
                .last()
                .map(String::as_str)
                .unwrap_or_default()
                .trim()
        )),
    }
}

/// The shell tool's name: one named like bash/shell, else the first tool.
fn shell_tool(tools: &[Value], anthropic: bool) -> Option<String> {
    let name = |t: &Value| {
        let n = if anthropic {
            t.get("name")
        } else {
            t.pointer("/function/name")
        };
        n.and_then(Value::as_str).map(str::to_owned)
    };
    let names: Vec<String> = tools.iter().filter_map(name).collect();
    names
        .iter()
        .find(|n| {
            let l = n.to_ascii_lowercase();
            l == "bash" || l.contains("shell") || l.contains("command")
        })
        .or(names.first())
        .cloned()
}

/// The text of every tool result in the history, in order.
fn tool_results(anthropic: bool, body: &Value) -> Vec<String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = Vec::new();
    for m in messages {
        if anthropic {
            let blocks = m.get("content").and_then(Value::as_array);
            for b in blocks.into_iter().flatten() {
                if b.get("type").and_then(Value::as_str) == Some("tool_result") {
                    out.push(text_of(b.get("content")));
                }
            }
        } else if m.get("role").and_then(Value::as_str) == Some("tool") {
            out.push(text_of(m.get("content")));
        }
    }
    out
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// A whole (non-streamed) answer.
pub fn whole(anthropic: bool, model: &str, step: &Step, n: usize) -> String {
    let id = format!("{n:08}");
    let v = match (anthropic, step) {
        (true, Step::Tool { name, command }) => json!({
            "id": format!("msg_scripted{id}"), "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "tool_use", "id": format!("toolu_scripted{id}"), "name": name,
                "input": {"command": command}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 20}
        }),
        (true, Step::Text(text)) => json!({
            "id": format!("msg_scripted{id}"), "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 20}
        }),
        (false, Step::Tool { name, command }) => json!({
            "id": format!("chatcmpl-scripted{id}"), "object": "chat.completion", "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": format!("call_scripted{id}"), "type": "function",
                    "function": {"name": name, "arguments": json!({"command": command}).to_string()}}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        }),
        (false, Step::Text(text)) => json!({
            "id": format!("chatcmpl-scripted{id}"), "object": "chat.completion", "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        }),
    };
    v.to_string()
}

/// A streamed answer as SSE frames (each ending in a blank line).
pub fn frames(
    anthropic: bool,
    model: &str,
    step: &Step,
    n: usize,
    include_usage: bool,
) -> Vec<String> {
    if anthropic {
        anthropic_frames(model, step, n)
    } else {
        openai_frames(model, step, n, include_usage)
    }
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn anthropic_frames(model: &str, step: &Step, n: usize) -> Vec<String> {
    let mut out = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": format!("msg_scripted{n:08}"), "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 1}}}),
    )];
    let stop = match step {
        Step::Tool { name, command } => {
            out.push(event("content_block_start", json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": format!("toolu_scripted{n:08}"), "name": name, "input": {}}})));
            let args = json!({"command": command}).to_string();
            let (a, b) = args.split_at(args.len() / 2);
            for part in [a, b] {
                out.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
            "tool_use"
        }
        Step::Text(text) => {
            out.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            ));
            for part in split_words(text) {
                out.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": part}}),
                ));
            }
            "end_turn"
        }
    };
    out.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 20}}),
    ));
    out.push(event("message_stop", json!({"type": "message_stop"})));
    out
}

fn openai_frames(model: &str, step: &Step, n: usize, include_usage: bool) -> Vec<String> {
    let id = format!("chatcmpl-scripted{n:08}");
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let finish = match step {
        Step::Tool { name, command } => {
            out.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": format!("call_scripted{n:08}"),
                "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            let args = json!({"command": command}).to_string();
            let (a, b) = args.split_at(args.len() / 2);
            for part in [a, b] {
                out.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                    Value::Null,
                ));
            }
            "tool_calls"
        }
        Step::Text(text) => {
            for part in split_words(text) {
                out.push(chunk(json!({"content": part}), Value::Null));
            }
            "stop"
        }
    };
    out.push(chunk(json!({}), json!(finish)));
    if include_usage {
        let c = json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
            "choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}});
        out.push(format!("data: {c}\n\n"));
    }
    out.push("data: [DONE]\n\n".to_owned());
    out
}

/// The text in a few pieces, as a model streams it.
fn split_words(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices(' ') {
        parts.push(&text[start..i]);
        start = i;
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_runs_two_tool_steps_then_answers() {
        let tools = json!([{"name": "Read"}, {"name": "Bash"}]);
        let mut body = json!({"tools": tools, "messages": [{"role": "user", "content": "go"}]});
        assert!(
            matches!(next(true, &body), Step::Tool { name, command } if name == "Bash" && command.starts_with("echo"))
        );
        body["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": ""}]}));
        assert!(
            matches!(next(true, &body), Step::Tool { command, .. } if command.starts_with("cat"))
        );
        body["messages"].as_array_mut().unwrap().push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "u", "content": [{"type": "text", "text": "keel-step-1\n"}]}]}));
        assert!(matches!(next(true, &body), Step::Text(t) if t == "DONE: keel-step-1"));
        assert!(matches!(
            next(true, &json!({"messages": []})),
            Step::Text(_)
        ));
        assert_eq!(split_words("a b c").concat(), "a b c");
    }
}
