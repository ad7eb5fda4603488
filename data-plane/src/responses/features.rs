//! Route features and loop-detection fingerprints of a Responses request, read from its
//! input items without copying the history.

use keel::pb::{self, RequestFeatures};
use serde_json::{Map, Value};

use crate::{cues::Cues, state::AppState, translate::responses::push_items};

/// Rough characters-per-token ratio, as for chat requests.
const CHARS_PER_TOKEN: usize = 4;

fn kind(item: &Value) -> &str {
    item.get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
}

fn role(item: &Value) -> Option<&str> {
    (kind(item) == "message")
        .then(|| item.get("role").and_then(Value::as_str))
        .flatten()
}

/// The input as items (a string input is one user message).
fn items(body: &Map<String, Value>) -> &[Value] {
    body.get("input")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Computes the features of a Responses request.
pub fn compute(body: &Map<String, Value>, stream: bool) -> RequestFeatures {
    let items = items(body);
    let mut walk = Walk::default();
    for item in items {
        walk.value(item);
    }
    for key in ["instructions", "input"] {
        if let Some(Value::String(s)) = body.get(key) {
            walk.chars += s.len();
        }
    }
    let tools = body.get("tools").and_then(Value::as_array);
    for t in tools.into_iter().flatten() {
        walk.value(t);
    }
    let cues = difficulty_cues(body, items);
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    RequestFeatures {
        estimated_prompt_tokens: count(walk.chars / CHARS_PER_TOKEN),
        uses_tools: tools.is_some_and(|t| !t.is_empty()) || walk.tool_traffic,
        has_images: walk.images,
        max_output_tokens: body
            .get("max_output_tokens")
            .and_then(Value::as_u64)
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        stream,
        ends_with_tool_result: items
            .last()
            .is_some_and(|i| kind(i).ends_with("call_output")),
        code_cues: cues.code,
        reasoning_cues: cues.reasoning,
        tool_count: count(tools.map_or(0, Vec::len)),
        reasoning_requested: body
            .get("reasoning")
            .and_then(|r| r.get("effort"))
            .and_then(Value::as_str)
            .is_some_and(|e| e != "none" && e != "minimal"),
    }
}

/// Cues over the instructions, system/developer messages and the last user message.
fn difficulty_cues(body: &Map<String, Value>, items: &[Value]) -> Cues {
    let mut cues = Cues::default();
    let scan = |v: &Value, cues: &mut Cues| -> usize {
        match v {
            Value::String(s) => {
                cues.scan(s);
                s.len()
            }
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(|t| {
                    cues.scan(t);
                    t.len()
                })
                .sum(),
            _ => 0,
        }
    };
    if let Some(i) = body.get("instructions") {
        scan(i, &mut cues);
    }
    for item in items {
        if matches!(role(item), Some("system" | "developer"))
            && let Some(c) = item.get("content")
        {
            scan(c, &mut cues);
        }
    }
    // The task at hand: the last user message.
    match body.get("input") {
        Some(v @ Value::String(_)) => scan(v, &mut cues),
        _ => items
            .iter()
            .rev()
            .find(|i| role(i) == Some("user"))
            .and_then(|i| i.get("content"))
            .map_or(0, |c| scan(c, &mut cues)),
    };
    cues
}

#[derive(Default)]
struct Walk {
    chars: usize,
    images: bool,
    tool_traffic: bool,
}

impl Walk {
    fn value(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.chars += s.len(),
            Value::Array(a) => a.iter().for_each(|x| self.value(x)),
            Value::Object(o) => {
                match o.get("type").and_then(Value::as_str) {
                    Some("input_image") => {
                        self.images = true;
                        // Image data is not prompt text.
                        return;
                    }
                    // Encrypted reasoning is opaque, not prompt text the model reads as such.
                    Some("reasoning") => return,
                    Some(t) if t.ends_with("_call") || t.ends_with("_call_output") => {
                        self.tool_traffic = true;
                    }
                    _ => {}
                }
                o.values().for_each(|x| self.value(x));
            }
            _ => {}
        }
    }
}

/// Fingerprints of the tail of the input, for loop detection. The tail's items are seen
/// as Chat messages (function calls join their assistant message); each fingerprint is
/// indexed by the input item that opened its message, so indices stay put across turns.
pub fn fingerprints(state: &AppState, body: &Map<String, Value>) -> Vec<pb::TurnFingerprint> {
    let window = state.config.fingerprint_window;
    let items = items(body);
    if window == 0 || items.is_empty() {
        return Vec::new();
    }
    // A message may take several items (text, then each call): look a little further back.
    let start = items.len().saturating_sub(window.saturating_mul(2));
    let mut messages = Vec::new();
    let mut starts = Vec::new();
    if push_items(&items[start..], start, &mut messages, Some(&mut starts)).is_err() {
        return Vec::new();
    }
    let mut fps =
        state
            .fingerprints
            .fingerprint_proto(keel::fingerprint::Format::OpenAi, &messages, window);
    for fp in &mut fps {
        if let Some(&item) = starts.get(fp.index as usize) {
            fp.index = u32::try_from(item).unwrap_or(u32::MAX);
        }
    }
    fps
}
