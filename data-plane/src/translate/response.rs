//! Non-streaming response bodies in both directions.

use serde_json::{Map, Value, json};

use super::mapping::{chat_id, finish_reason, message_id, stop_reason, unix_now};
use super::usage::{usage_from_anthropic, usage_from_openai};

/// Translates an Anthropic Messages response into an OpenAI `chat.completion` object.
///
/// Text blocks are concatenated into `content`; `tool_use` blocks become `tool_calls`
/// with the input serialized to a JSON string; thinking blocks are dropped.
pub fn anthropic_to_openai_response(body: &Value, client_model: &str) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in body["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => {
                let input = match &block["input"] {
                    Value::Null => json!({}),
                    v => v.clone(),
                };
                calls.push(json!({
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": input.to_string()},
                }));
            }
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    message.insert("content".into(), content);
    message.insert("refusal".into(), Value::Null);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    json!({
        "id": chat_id(body["id"].as_str()),
        "object": "chat.completion",
        "created": unix_now(),
        "model": client_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(body["stop_reason"].as_str()),
        }],
        "usage": usage_from_anthropic(body).to_openai_json(),
    })
}

/// Translates an OpenAI `chat.completion` object into an Anthropic Messages response.
///
/// Only the first choice is used (Anthropic has no `n`). Tool call arguments that are not a
/// JSON object become `{}`, because Anthropic clients require an object there.
pub fn openai_to_anthropic_response(body: &Value, client_model: &str) -> Value {
    let choice = &body["choices"][0];
    let message = &choice["message"];
    let mut content = Vec::new();
    let text = match &message["content"] {
        Value::String(s) => s.clone(),
        // Responses rarely use parts, but compatible servers sometimes do.
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<String>(),
        _ => String::new(),
    };
    let text = if text.is_empty() {
        message["refusal"].as_str().unwrap_or_default().to_owned()
    } else {
        text
    };
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let input = call["function"]["arguments"]
            .as_str()
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        content.push(json!({
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": input,
        }));
    }
    let has_calls = content.iter().any(|b| b["type"] == "tool_use");
    let finish = choice["finish_reason"].as_str();
    // Some compatible servers say "stop" on a tool-call turn; the caller must see tool_use.
    let stop = if has_calls && finish == Some("stop") {
        "tool_use"
    } else {
        stop_reason(finish)
    };
    json!({
        "id": message_id(body["id"].as_str()),
        "type": "message",
        "role": "assistant",
        "model": client_model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage_from_openai(body).to_anthropic_json(),
    })
}

#[cfg(test)]
mod tests;
