//! The recorded fixtures, and how the fake provider replays them: frames are
//! sent as recorded, with the request's model put in.

use serde_json::Value;

pub const OPENAI_COMPLETION: &str = include_str!("../fixtures/openai/chat_completion.json");
pub const OPENAI_COMPLETION_TOOL: &str =
    include_str!("../fixtures/openai/chat_completion_tool_call.json");
pub const OPENAI_STREAM: &str = include_str!("../fixtures/openai/stream_text.sse");
pub const OPENAI_STREAM_TOOL: &str = include_str!("../fixtures/openai/stream_tool_call.sse");
pub const OPENAI_429: &str = include_str!("../fixtures/openai/error_429.json");
pub const ANTHROPIC_MESSAGE: &str = include_str!("../fixtures/anthropic/message.json");
pub const ANTHROPIC_MESSAGE_TOOL: &str =
    include_str!("../fixtures/anthropic/message_tool_use.json");
pub const ANTHROPIC_STREAM: &str = include_str!("../fixtures/anthropic/stream_text.sse");
pub const ANTHROPIC_STREAM_TOOL: &str = include_str!("../fixtures/anthropic/stream_tool_use.sse");
pub const ANTHROPIC_429: &str = include_str!("../fixtures/anthropic/error_429.json");
pub const ANTHROPIC_OVERLOADED: &str = include_str!("../fixtures/anthropic/error_overloaded.json");

/// Sets every `model` field (top level or in `message`) to `model`.
pub fn with_model(json: &str, model: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(json) else {
        return json.to_owned();
    };
    if v.get("model").is_some() {
        v["model"] = Value::String(model.to_owned());
    }
    if let Some(m) = v.get_mut("message").and_then(|m| m.get_mut("model")) {
        *m = Value::String(model.to_owned());
    }
    v.to_string()
}

/// The frames of an SSE recording, each a complete frame text ending in a
/// blank line, with the model replaced. Drops OpenAI's usage-only chunk
/// unless the request asked for it, as OpenAI does.
pub fn frames(recording: &str, model: &str, include_usage: bool) -> Vec<String> {
    recording
        .split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .filter_map(|frame| {
            let mut out = String::new();
            for line in frame.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    if data == "[DONE]" {
                        out.push_str("data: [DONE]\n");
                        continue;
                    }
                    let v: Value = serde_json::from_str(data).ok()?;
                    let usage_only = v
                        .get("choices")
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty);
                    if usage_only && !include_usage {
                        return None;
                    }
                    out.push_str("data: ");
                    out.push_str(&with_model(data, model));
                    out.push('\n');
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out.push('\n');
            Some(out)
        })
        .collect()
}
