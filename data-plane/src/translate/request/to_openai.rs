//! Anthropic Messages request → OpenAI Chat Completions request.

use serde_json::{Map, Value, json};

use super::super::TranslateError;
use super::super::json::{
    as_object, field, get, opt_array, opt_bool, opt_number, opt_positive_u32, opt_str, req_str,
    wrong_type,
};
use super::content::{anthropic_image, anthropic_text_only, anthropic_tool_result_content};
use super::tools::{anthropic_tool_choice, anthropic_tools};

/// Translates an Anthropic Messages body into an OpenAI Chat Completions body.
///
/// `upstream_model` replaces `model`; the system prompt (Keel's injected blocks included)
/// becomes one system message. When the request streams and `want_stream_usage` is set,
/// `stream_options.include_usage` is requested so the final chunk reports tokens.
/// Anthropic-only fields (`top_k`, `thinking`, `cache_control`, …) are dropped.
pub fn anthropic_to_openai_request(
    body: &Map<String, Value>,
    upstream_model: &str,
    want_stream_usage: bool,
) -> Result<Map<String, Value>, TranslateError> {
    let messages = opt_array(body, "messages", "")?.ok_or_else(|| TranslateError::Missing {
        field: "messages".into(),
    })?;
    let mut out_msgs = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = get(body, "system") {
        let text = anthropic_text_only(system, "system")?;
        if !text.is_empty() {
            out_msgs.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, msg) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = as_object(msg, || path.clone())?;
        match req_str(m, "role", &path)? {
            "user" => user_messages(m, &path, &mut out_msgs)?,
            "assistant" => out_msgs.push(assistant_message(m, &path)?),
            // Mid-conversation instructions (Claude Code sends them): a
            // system message in the same place.
            "system" => {
                let content = get(m, "content").ok_or_else(|| TranslateError::Missing {
                    field: field(&path, "content"),
                })?;
                let text = anthropic_text_only(content, &field(&path, "content"))?;
                if !text.is_empty() {
                    out_msgs.push(json!({"role": "system", "content": text}));
                }
            }
            other => {
                return Err(TranslateError::Invalid {
                    field: field(&path, "role"),
                    reason: format!("unknown role `{other}` (expected user, assistant or system)"),
                });
            }
        }
    }

    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    out.insert("messages".into(), Value::Array(out_msgs));
    // `max_completion_tokens` is the current name; reasoning models reject `max_tokens`.
    if let Some(n) = opt_positive_u32(body, "max_tokens", "")? {
        out.insert("max_completion_tokens".into(), n.into());
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = opt_number(body, key, "")? {
            out.insert(key.into(), json!(v));
        }
    }
    if let Some(stop) = opt_array(body, "stop_sequences", "")? {
        let mut seqs = Vec::with_capacity(stop.len());
        for (i, s) in stop.iter().enumerate() {
            let s = s
                .as_str()
                .ok_or_else(|| wrong_type(format!("stop_sequences[{i}]"), "a string"))?;
            seqs.push(Value::from(s));
        }
        if !seqs.is_empty() {
            out.insert("stop".into(), Value::Array(seqs));
        }
    }
    if let Some(stream) = opt_bool(body, "stream", "")? {
        out.insert("stream".into(), stream.into());
        if stream && want_stream_usage {
            out.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    if let Some(meta) = get(body, "metadata") {
        let meta = as_object(meta, || "metadata".into())?;
        if let Some(user) = opt_str(meta, "user_id", "metadata")? {
            out.insert("user".into(), user.into());
        }
    }
    copy_tools(body, &mut out)?;
    Ok(out)
}

/// One Anthropic user turn becomes: a `tool` message per `tool_result` (OpenAI wants them
/// right after the assistant's calls), then a user message with the remaining content.
fn user_messages(
    m: &Map<String, Value>,
    path: &str,
    out: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let content_path = field(path, "content");
    let blocks = match get(m, "content") {
        Some(Value::String(s)) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Some(Value::Array(b)) => b,
        Some(_) => return Err(wrong_type(content_path, "a string or an array")),
        None => {
            return Err(TranslateError::Missing {
                field: content_path,
            });
        }
    };
    let mut parts = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let p = format!("{content_path}[{i}]");
        let block = as_object(b, || p.clone())?;
        match req_str(block, "type", &p)? {
            "text" => {
                let text = req_str(block, "text", &p)?;
                if !text.is_empty() {
                    parts.push(json!({"type": "text", "text": text}));
                }
            }
            "image" => parts.push(anthropic_image(block, &p)?),
            "tool_result" => {
                let id = req_str(block, "tool_use_id", &p)?;
                let result =
                    anthropic_tool_result_content(get(block, "content"), &field(&p, "content"))?;
                // OpenAI tool messages have no error flag; say it in the text the model reads.
                let text = if opt_bool(block, "is_error", &p)? == Some(true) {
                    format!("Error: {}", result.text)
                } else {
                    result.text
                };
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
                // Tool messages are text-only in OpenAI; screenshots follow in the user turn.
                parts.extend(result.images);
            }
            other => {
                return Err(TranslateError::Unsupported {
                    field: field(&p, "type"),
                    what: format!("user content block type `{other}`"),
                    target: "OpenAI",
                });
            }
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    let only_text = parts.iter().all(|p| p["type"] == "text");
    // A lone text part reads better (and works with more servers) as a plain string.
    let content = match parts.as_mut_slice() {
        [single] if only_text => single.get_mut("text").map(Value::take).unwrap_or_default(),
        _ => Value::Array(parts),
    };
    out.push(json!({"role": "user", "content": content}));
    Ok(())
}

fn assistant_message(m: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let content_path = field(path, "content");
    let blocks = match get(m, "content") {
        Some(Value::String(s)) => return Ok(json!({"role": "assistant", "content": s})),
        Some(Value::Array(b)) => b,
        Some(_) => return Err(wrong_type(content_path, "a string or an array")),
        None => {
            return Err(TranslateError::Missing {
                field: content_path,
            });
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let p = format!("{content_path}[{i}]");
        let block = as_object(b, || p.clone())?;
        match req_str(block, "type", &p)? {
            "text" => text.push_str(req_str(block, "text", &p)?),
            "tool_use" => {
                let input = get(block, "input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": req_str(block, "id", &p)?,
                    "type": "function",
                    "function": {
                        "name": req_str(block, "name", &p)?,
                        "arguments": input.to_string(),
                    },
                }));
            }
            // Reasoning traces are Anthropic-internal; OpenAI has nowhere to put them.
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(TranslateError::Unsupported {
                    field: field(&p, "type"),
                    what: format!("assistant content block type `{other}`"),
                    target: "OpenAI",
                });
            }
        }
    }
    let mut msg = Map::new();
    msg.insert("role".into(), "assistant".into());
    // OpenAI wants null content, not "", on a pure tool-call turn.
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    msg.insert("content".into(), content);
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    Ok(Value::Object(msg))
}

fn copy_tools(
    body: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    let tools = anthropic_tools(
        opt_array(body, "tools", "")?.map_or(&[][..], Vec::as_slice),
        "tools",
    )?;
    if tools.is_empty() {
        return Ok(());
    }
    if let Some(choice) = get(body, "tool_choice") {
        let (choice, parallel) = anthropic_tool_choice(choice, "tool_choice")?;
        out.insert("tool_choice".into(), choice);
        if let Some(p) = parallel {
            out.insert("parallel_tool_calls".into(), p.into());
        }
    }
    out.insert("tools".into(), Value::Array(tools));
    Ok(())
}

#[cfg(test)]
mod tests;
