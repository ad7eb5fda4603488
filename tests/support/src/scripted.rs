//! Answers the fake provider writes rather than replays: the OpenAI Responses API
//! (`POST /v1/responses`, whole and streamed, in its real wire format), and a scripted
//! tool call in any of the three formats, naming a tool the request offers with
//! arguments the test chose, so that a real agent harness runs it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A tool call the fake makes instead of the recorded one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ScriptedCall {
    /// The tool to call; the request's first function tool when absent.
    pub name: Option<String>,
    /// The call's arguments, a JSON object as text.
    pub arguments: String,
}

/// The wire format of a request to the fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Anthropic,
    Responses,
}

/// What the fake answers: a JSON body or SSE frames (each ending in a blank line).
pub enum Answer {
    Json(String),
    Frames(Vec<String>),
}

/// The text of the fake's final answers.
pub const TEXT: &str = "Done: the command ran and printed its output.";

/// The first function tool a request offers, in its format.
pub fn first_tool(api: Api, body: &Value) -> Option<String> {
    let tools = body.get("tools")?.as_array()?;
    tools.iter().find_map(|t| {
        let name = match api {
            Api::Chat => t.pointer("/function/name"),
            Api::Anthropic => t.get("name").filter(|_| t.get("input_schema").is_some()),
            Api::Responses => t.get("name").filter(|_| t["type"] == "function"),
        };
        name.and_then(Value::as_str).map(str::to_owned)
    })
}

fn frame(event: Option<&str>, v: &Value) -> String {
    match event {
        Some(e) => format!("event: {e}\ndata: {v}\n\n"),
        None => format!("data: {v}\n\n"),
    }
}

/// Splits arguments in two pieces, as providers stream them.
fn halves(s: &str) -> (&str, &str) {
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid -= 1;
    }
    s.split_at(mid)
}

/// A Chat Completions tool call answer.
pub fn chat_tool_call(model: &str, name: &str, args: &str, stream: bool, usage: bool) -> Answer {
    let id = "chatcmpl-scripted";
    let call_id = "call_scripted_1";
    let usage_v = json!({"prompt_tokens": 120, "completion_tokens": 20, "total_tokens": 140});
    if !stream {
        return Answer::Json(
            json!({
                "id": id, "object": "chat.completion", "created": 1_761_302_500, "model": model,
                "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null, "message": {
                    "role": "assistant", "content": null, "refusal": null,
                    "tool_calls": [{"id": call_id, "type": "function",
                                    "function": {"name": name, "arguments": args}}]}}],
                "usage": usage_v,
            })
            .to_string(),
        );
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1_761_302_500,
               "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": null,
               "finish_reason": finish}]})
    };
    let (a, b) = halves(args);
    let mut frames = vec![
        frame(
            None,
            &chunk(json!({"role": "assistant", "content": null}), Value::Null),
        ),
        frame(
            None,
            &chunk(
                json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
            "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ),
        ),
        frame(
            None,
            &chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
                Value::Null,
            ),
        ),
        frame(
            None,
            &chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
                Value::Null,
            ),
        ),
        frame(None, &chunk(json!({}), json!("tool_calls"))),
    ];
    if usage {
        let mut last = chunk(json!({}), Value::Null);
        last["choices"] = json!([]);
        last["usage"] = usage_v;
        frames.push(frame(None, &last));
    }
    frames.push("data: [DONE]\n\n".to_owned());
    Answer::Frames(frames)
}

/// An Anthropic Messages tool_use answer.
pub fn anthropic_tool_call(model: &str, name: &str, args: &str, stream: bool) -> Answer {
    let id = "msg_scripted";
    let tool_id = "toolu_scripted_1";
    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
    if !stream {
        return Answer::Json(
            json!({
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "tool_use", "id": tool_id, "name": name, "input": input}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 120, "output_tokens": 20},
            })
            .to_string(),
        );
    }
    let (a, b) = halves(args);
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": id, "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": 120, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": a}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": b}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use",
            "stop_sequence": null}, "usage": {"output_tokens": 20}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    Answer::Frames(events.iter().map(|(e, v)| frame(Some(e), v)).collect())
}

/// Whether a Responses request should get a tool call now: it offers function tools
/// and its input does not end with a call's output.
pub fn responses_wants_tool(body: &Value) -> bool {
    let answered = body
        .get("input")
        .and_then(Value::as_array)
        .and_then(|items| items.last())
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t.ends_with("call_output"));
    first_tool(Api::Responses, body).is_some() && !answered
}

/// A Responses API answer: a reasoning item (opaque `encrypted_content`, as OpenAI
/// sends it), then a function call (`call`: name and arguments) or a text message.
pub fn responses(model: &str, call: Option<(&str, &str)>, stream: bool) -> Answer {
    let id = "resp_fake_0001";
    let reasoning = json!({"id": "rs_fake_0001", "type": "reasoning", "summary": [],
                           "encrypted_content": "gAAAAABfakeEncryptedReasoning=="});
    let item = match call {
        Some((name, args)) => json!({"id": "fc_fake_0001", "type": "function_call",
            "status": "completed", "call_id": "call_fake_0001", "name": name, "arguments": args}),
        None => json!({"id": "msg_fake_0001", "type": "message", "status": "completed",
            "role": "assistant", "content": [{"type": "output_text", "text": TEXT,
            "annotations": [], "logprobs": []}]}),
    };
    let usage = json!({"input_tokens": 150, "input_tokens_details": {"cached_tokens": 100},
        "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 10},
        "total_tokens": 180});
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": id, "object": "response", "created_at": 1_761_302_600, "status": status,
            "error": null, "incomplete_details": null, "model": model, "output": output,
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "usage": usage})
    };
    if !stream {
        return Answer::Json(response("completed", json!([reasoning, item]), usage).to_string());
    }
    let mut events = vec![
        json!({"type": "response.created", "response": response("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.in_progress", "response": response("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"id": "rs_fake_0001", "type": "reasoning", "summary": []}}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": reasoning}),
    ];
    match call {
        Some((name, args)) => {
            let (a, b) = halves(args);
            let mut added = item.clone();
            added["status"] = json!("in_progress");
            added["arguments"] = json!("");
            events.extend([
                json!({"type": "response.output_item.added", "output_index": 1, "item": added}),
                json!({"type": "response.function_call_arguments.delta", "item_id": "fc_fake_0001",
                       "output_index": 1, "delta": a}),
                json!({"type": "response.function_call_arguments.delta", "item_id": "fc_fake_0001",
                       "output_index": 1, "delta": b}),
                json!({"type": "response.function_call_arguments.done", "item_id": "fc_fake_0001",
                       "output_index": 1, "name": name, "arguments": args}),
            ]);
        }
        None => {
            let (a, b) = halves(TEXT);
            let ids = json!({"item_id": "msg_fake_0001", "output_index": 1, "content_index": 0});
            let with = |kind: &str, extra: Value| {
                let mut v = ids.clone();
                v["type"] = json!(kind);
                if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
                    v.extend(extra);
                }
                v
            };
            let part =
                json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
            let mut added = item.clone();
            added["status"] = json!("in_progress");
            added["content"] = json!([]);
            events.extend([
                json!({"type": "response.output_item.added", "output_index": 1, "item": added}),
                with("response.content_part.added", json!({"part": part})),
                with(
                    "response.output_text.delta",
                    json!({"delta": a, "logprobs": []}),
                ),
                with(
                    "response.output_text.delta",
                    json!({"delta": b, "logprobs": []}),
                ),
                with(
                    "response.output_text.done",
                    json!({"text": TEXT, "logprobs": []}),
                ),
                with(
                    "response.content_part.done",
                    json!({"part": item["content"][0]}),
                ),
            ]);
        }
    }
    events.push(json!({"type": "response.output_item.done", "output_index": 1, "item": item}));
    events.push(json!({"type": "response.completed",
                       "response": response("completed", json!([reasoning, item]), usage)}));
    Answer::Frames(
        events
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e["sequence_number"] = json!(i);
                let kind = e["type"].as_str().unwrap_or_default().to_owned();
                frame(Some(&kind), &e)
            })
            .collect(),
    )
}
