//! Prepares the body for a target: the app's body with the upstream model
//! name and injected messages, or a translation into the target's format.

use bytes::Bytes;
use keel::pb;
use serde_json::{Map, Value, json};

use crate::{
    chat_body::{ChatBody, ChatView},
    error::ApiError,
    format::Format,
    translate,
};

/// What the app asked for that the relay must honour.
pub struct Prepared {
    pub body: Bytes,
    /// Keel asked an OpenAI provider for a usage chunk the app did not want.
    pub strip_usage_chunk: bool,
    /// Where to send it, when not the target's usual endpoint (`upstream::url`).
    pub url: Option<String>,
}

pub(crate) mod splice;

/// Adds injected system messages to the app's body, once, before any
/// attempt (in the app's own format; translation carries them over);
/// whether there were any. Only then is the body parsed and changed: the
/// app's own bytes no longer go upstream.
pub fn inject(
    format: Format,
    body: &mut ChatBody,
    inject: &[pb::InjectedMessage],
) -> Result<bool, ApiError> {
    if inject.is_empty() {
        return Ok(false);
    }
    let body = body.tree_mut()?;
    match format {
        Format::OpenAi => {
            if let Some(Value::Array(messages)) = body.get_mut("messages") {
                // Right before the latest message, where the model reads it
                // as guidance for this turn; but never inside the tool
                // results that answer an assistant's tool calls (they must
                // follow it directly, or OpenAI refuses the request), so
                // after them when they end the conversation.
                let ends_in_tool_result = messages.last().is_some_and(|m| {
                    matches!(
                        m.get("role").and_then(Value::as_str),
                        Some("tool" | "function")
                    )
                });
                let at = if ends_in_tool_result {
                    messages.len()
                } else {
                    messages.len().saturating_sub(1)
                };
                for (i, m) in inject.iter().enumerate() {
                    messages.insert(at + i, json!({"role": "system", "content": m.content}));
                }
            }
        }
        Format::Anthropic => {
            let extra: Vec<Value> = inject
                .iter()
                .map(|m| json!({"type": "text", "text": m.content}))
                .collect();
            let system = match body.remove("system") {
                None | Some(Value::Null) => Value::Array(extra),
                Some(Value::String(s)) => {
                    let mut blocks = vec![json!({"type": "text", "text": s})];
                    blocks.extend(extra);
                    Value::Array(blocks)
                }
                Some(Value::Array(mut blocks)) => {
                    blocks.extend(extra);
                    Value::Array(blocks)
                }
                Some(other) => other,
            };
            body.insert("system".into(), system);
        }
    }
    Ok(true)
}

/// Whether the app itself asked for OpenAI's streamed usage chunk.
pub fn app_wants_usage(body: &impl ChatView) -> bool {
    body.value("stream_options")
        .and_then(|o| o.get("include_usage").and_then(Value::as_bool))
        .unwrap_or(false)
}

/// The body for `target`, from the app's body in `format` (with injected
/// messages already in it, see [`inject`]). `wants_usage` comes from
/// [`app_wants_usage`] before any rewrite; `default_max_tokens` fills
/// Anthropic's required `max_tokens` for an OpenAI body that has none.
/// While `body` is unchanged, a target of the app's format gets the app's
/// bytes, model replaced.
pub fn prepare(
    format: Format,
    body: &mut ChatBody,
    target: &pb::Target,
    stream: bool,
    wants_usage: bool,
    default_max_tokens: u32,
) -> Result<Prepared, ApiError> {
    let model = target.upstream_model.as_str();
    let translated = match (format, Format::of_target(target.wire_format)) {
        (Format::OpenAi, Format::Anthropic) => Some(translate::openai_to_anthropic_request(
            body.tree()?,
            model,
            default_max_tokens,
        )?),
        // The usage chunk is always asked for: the stream translator reads it
        // and Anthropic callers get usage in `message_delta` anyway.
        (Format::Anthropic, Format::OpenAi) => Some(translate::anthropic_to_openai_request(
            body.tree()?,
            model,
            stream,
        )?),
        (Format::OpenAi, Format::OpenAi) | (Format::Anthropic, Format::Anthropic) => None,
    };
    if let Some(translated) = translated {
        return Ok(Prepared {
            body: encode(&translated)?,
            strip_usage_chunk: false,
            url: None,
        });
    }
    // Same format: the app's body as it is (cache_control and unknown fields
    // included), but for the upstream model name.
    let strip_usage_chunk = stream && format == Format::OpenAi && !wants_usage;
    if let Some(spliced) = body.spliced(model, strip_usage_chunk) {
        return Ok(Prepared {
            body: Bytes::from(spliced),
            strip_usage_chunk,
            url: None,
        });
    }
    let body = body.tree_mut()?;
    body.insert("model".into(), Value::String(model.to_owned()));
    if strip_usage_chunk {
        // Usage is needed for reports and spend; the app did not ask for the
        // chunk, so the relay drops it again.
        let opts = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(o) = opts {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    Ok(Prepared {
        body: encode(body)?,
        strip_usage_chunk,
        url: None,
    })
}

pub(crate) fn encode(body: &Map<String, Value>) -> Result<Bytes, ApiError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| ApiError::BadRequest(format!("cannot encode request: {e}")))
}

#[cfg(test)]
mod tests;
