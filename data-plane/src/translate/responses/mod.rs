//! The OpenAI Responses API (`POST /v1/responses`) against providers that do not speak
//! it: requests become Chat Completions requests (and, through the Chat → Anthropic
//! translator, Anthropic Messages requests); answers and streams come back as Responses
//! objects and events. A provider that speaks it gets the app's body as it is.

mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use serde_json::{Value, json};

use super::Usage;
use super::json::count;

pub(crate) use request::push_items;
pub use request::responses_to_chat_request;
pub use response::chat_to_responses_response;
pub use stream::{
    OnResponseId, anthropic_stream_to_responses, chat_stream_to_responses, responses_passthrough,
};

/// The Responses `usage` object.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input_tokens.saturating_add(u.output_tokens),
    })
}

/// Reads `usage` from a Responses object (or a bare usage object).
pub fn usage_from_responses(v: &Value) -> Usage {
    let u = v.get("usage").filter(|u| u.is_object()).unwrap_or(v);
    Usage {
        input_tokens: count(u.get("input_tokens")),
        output_tokens: count(u.get("output_tokens")),
        cached_input_tokens: count(u.pointer("/input_tokens_details/cached_tokens")),
        cache_creation_tokens: 0,
    }
}
