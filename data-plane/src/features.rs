//! Compact features of a request for the router, computed from the parsed
//! body without copying it.

use keel::pb::RequestFeatures;
use serde_json::{Map, Value};

use crate::format::Format;

/// Rough characters-per-token ratio; routing needs the order of magnitude,
/// not a tokenizer.
const CHARS_PER_TOKEN: usize = 4;

/// Computes the features of a chat request.
pub fn compute(format: Format, body: &Map<String, Value>, stream: bool) -> RequestFeatures {
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
    let system_extra = u32::from(format == Format::Anthropic && body.contains_key("system"));
    RequestFeatures {
        estimated_prompt_tokens: u32::try_from(chars / CHARS_PER_TOKEN).unwrap_or(u32::MAX),
        message_count: u32::try_from(messages.map_or(0, Vec::len)).unwrap_or(u32::MAX)
            + system_extra,
        uses_tools: tools.is_some_and(|t| !t.is_empty()) || tool_traffic,
        has_images: images,
        max_output_tokens: u32::try_from(max_output).unwrap_or(u32::MAX),
        stream,
        inbound_format: format.wire() as i32,
        ends_with_tool_result: messages.and_then(|m| m.last()).is_some_and(is_tool_result),
    }
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
