//! Compact features of a request for the router, computed from the parsed
//! body without copying it.

use keel::pb::RequestFeatures;
use serde_json::{Map, Value};

use crate::cues::Cues;

/// Rough characters-per-token ratio; routing needs the order of magnitude,
/// not a tokenizer.
const CHARS_PER_TOKEN: usize = 4;

/// Computes the features of a chat request.
pub fn compute(body: &Map<String, Value>, stream: bool) -> RequestFeatures {
    let messages = body.get("messages").and_then(Value::as_array);
    let mut chars = 0usize;
    let mut images = false;
    let mut tool_traffic = false;
    for m in messages.into_iter().flatten() {
        walk(m, &mut chars, &mut images, &mut tool_traffic);
    }
    if let Some(system) = body.get("system") {
        walk(system, &mut chars, &mut images, &mut tool_traffic);
    }
    let tools = body.get("tools").and_then(Value::as_array);
    if let Some(tools) = tools {
        for t in tools {
            walk(t, &mut chars, &mut images, &mut tool_traffic);
        }
    }
    let max_output = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
        .unwrap_or(0);
    let cues = difficulty_cues(body, messages);
    RequestFeatures {
        estimated_prompt_tokens: u32::try_from(chars / CHARS_PER_TOKEN).unwrap_or(u32::MAX),
        uses_tools: tools.is_some_and(|t| !t.is_empty()) || tool_traffic,
        has_images: images,
        max_output_tokens: u32::try_from(max_output).unwrap_or(u32::MAX),
        stream,
        ends_with_tool_result: messages.and_then(|m| m.last()).is_some_and(is_tool_result),
        code_cues: cues.code,
        reasoning_cues: cues.reasoning,
        tool_count: u32::try_from(tools.map_or(0, Vec::len)).unwrap_or(u32::MAX),
        reasoning_requested: reasoning_requested(body),
    }
}

/// Cues over the system prompt(s) and the last user message (the task at
/// hand).
fn difficulty_cues(body: &Map<String, Value>, messages: Option<&Vec<Value>>) -> Cues {
    let mut cues = Cues::default();
    let scan_text = |v: &Value, cues: &mut Cues| match v {
        Value::String(s) => cues.scan(s),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .for_each(|t| cues.scan(t)),
        _ => {}
    };
    if let Some(system) = body.get("system") {
        scan_text(system, &mut cues);
    }
    if let Some(messages) = messages {
        for m in messages {
            if matches!(
                m.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            ) && let Some(c) = m.get("content")
            {
                scan_text(c, &mut cues);
            }
        }
        let last = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user") && !is_tool_result(m));
        if let Some(c) = last.and_then(|m| m.get("content")) {
            scan_text(c, &mut cues);
        }
    }
    cues
}

/// OpenAI `reasoning_effort` / `reasoning`, Anthropic `thinking` (enabled).
fn reasoning_requested(body: &Map<String, Value>) -> bool {
    body.get("reasoning_effort")
        .and_then(Value::as_str)
        .is_some_and(|e| e != "none" && e != "minimal")
        || body.get("reasoning").is_some_and(Value::is_object)
        || body
            .get("thinking")
            .and_then(|t| t.get("type"))
            .and_then(Value::as_str)
            == Some("enabled")
}

/// A tool's answer to the model: OpenAI `role: tool`, or an Anthropic user
/// message carrying `tool_result` blocks.
fn is_tool_result(m: &Value) -> bool {
    match m.get("role").and_then(Value::as_str) {
        Some("tool") => true,
        Some("user") => m
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| {
                blocks
                    .iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            }),
        _ => false,
    }
}

/// Counts string characters and spots images and tool traffic in one pass.
fn walk(v: &Value, chars: &mut usize, images: &mut bool, tools: &mut bool) {
    match v {
        Value::String(s) => *chars += s.len(),
        Value::Array(a) => a.iter().for_each(|x| walk(x, chars, images, tools)),
        Value::Object(o) => {
            match o.get("type").and_then(Value::as_str) {
                Some("image_url" | "image") => {
                    *images = true;
                    // Base64 image data is not prompt text.
                    return;
                }
                Some("tool_use" | "tool_result") => *tools = true,
                _ => {}
            }
            if o.contains_key("tool_calls") || o.get("role").and_then(Value::as_str) == Some("tool")
            {
                *tools = true;
            }
            o.values().for_each(|x| walk(x, chars, images, tools));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn features(body: Value) -> RequestFeatures {
        compute(body.as_object().unwrap(), false)
    }

    #[test]
    fn difficulty_cues_come_from_the_system_prompt_and_the_last_user_message() {
        let f = features(json!({"messages": [
                {"role": "system", "content": "Refactor code when asked."},
                {"role": "user", "content": "old question: debug debug debug"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "Now implement it:\n```\nlet x = 1;\n```"}
            ], "tools": [{"type": "function", "function": {"name": "a"}}],
               "reasoning_effort": "high"}));
        assert_eq!(
            f.reasoning_cues, 2,
            "refactor + implement; older turns ignored"
        );
        assert_eq!(f.code_cues, 2, "a fenced block and `let x = 1;`");
        assert_eq!(f.tool_count, 1);
        assert!(f.reasoning_requested);

        let f = features(json!({"system": [{"type": "text", "text": "Prove it."}],
                   "thinking": {"type": "enabled", "budget_tokens": 1024},
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}));
        assert_eq!((f.reasoning_cues, f.code_cues), (1, 0));
        assert!(f.reasoning_requested);
    }
}
