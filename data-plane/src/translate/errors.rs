//! Request translation errors and error bodies in each API's own shape.

use serde_json::{Value, json};

use super::Format;

/// A caller request that cannot be translated. Every variant is the caller's fault and
/// maps to HTTP 400; the message names the offending field as a JSON path.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// A required field is absent or null.
    #[error("missing required field `{field}`")]
    Missing {
        /// JSON path of the field, e.g. `messages[3].tool_call_id`.
        field: String,
    },
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// JSON path of the field.
        field: String,
        /// What was expected, e.g. "a string".
        expected: &'static str,
    },
    /// A string that must hold JSON (tool call arguments) does not parse.
    #[error("field `{field}` is not valid JSON: {source}")]
    BadJson {
        /// JSON path of the field.
        field: String,
        /// The parse failure.
        source: serde_json::Error,
    },
    /// A field has the right type but a value the translation cannot accept.
    #[error("field `{field}` is invalid: {reason}")]
    Invalid {
        /// JSON path of the field.
        field: String,
        /// Why the value is rejected.
        reason: String,
    },
    /// A feature of the source API with no counterpart in the target API.
    #[error("field `{field}`: {what} is not supported when the upstream speaks the {target} API")]
    Unsupported {
        /// JSON path of the field.
        field: String,
        /// The feature, e.g. "content part type `input_audio`".
        what: String,
        /// Target API name.
        target: &'static str,
    },
}

impl TranslateError {
    /// JSON path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            Self::Missing { field }
            | Self::WrongType { field, .. }
            | Self::BadJson { field, .. }
            | Self::Invalid { field, .. }
            | Self::Unsupported { field, .. } => field,
        }
    }

    /// HTTP status for the caller: always 400, since only caller input fails translation.
    pub fn status(&self) -> u16 {
        400
    }
}

/// Error type string for an HTTP status in the given API.
pub(crate) fn error_type(format: Format, status: u16) -> &'static str {
    match (format, status) {
        (_, 401) => "authentication_error",
        (_, 403) => "permission_error",
        (_, 429) => "rate_limit_error",
        // OpenAI keeps few types and says the rest in `code` (see `openai_code`).
        (Format::Anthropic, 404) => "not_found_error",
        (Format::Anthropic, 413) => "request_too_large",
        // Anthropic signals capacity trouble distinctly so clients back off instead of failing.
        (Format::Anthropic, 503 | 529) => "overloaded_error",
        (_, 500..=599) => "api_error",
        _ => "invalid_request_error",
    }
}

/// OpenAI's `code` for an HTTP status, where OpenAI sets one.
fn openai_code(status: u16) -> Value {
    match status {
        401 => "invalid_api_key".into(),
        404 => "not_found".into(),
        413 => "request_too_large".into(),
        429 => "rate_limit_exceeded".into(),
        _ => Value::Null,
    }
}

pub(crate) fn openai_error_value(kind: &str, message: &str, param: Value, code: Value) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

pub(crate) fn anthropic_error_value(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

fn to_bytes(v: &Value) -> Vec<u8> {
    // Serializing a `Value` into memory cannot fail; an empty body is the harmless fallback.
    serde_json::to_vec(v).unwrap_or_default()
}

/// Error body in the caller's API shape, with the type (and OpenAI's `code`) chosen from
/// the HTTP status. The one renderer of Keel's own errors.
pub fn error_body(format: Format, status: u16, message: &str) -> Vec<u8> {
    let kind = error_type(format, status);
    to_bytes(&match format {
        Format::OpenAi => openai_error_value(kind, message, Value::Null, openai_code(status)),
        Format::Anthropic => anthropic_error_value(kind, message),
    })
}

/// What we salvage from an upstream error body of either shape.
#[derive(Default)]
struct Upstream {
    message: Option<String>,
    kind: Option<String>,
    param: Option<Value>,
    code: Option<Value>,
}

/// Longest upstream text we forward, so an HTML error page does not become the message.
const MAX_MESSAGE_CHARS: usize = 1000;

fn parse_upstream(body: &[u8]) -> Upstream {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return Upstream {
            message: (!text.is_empty()).then(|| text.chars().take(MAX_MESSAGE_CHARS).collect()),
            ..Upstream::default()
        };
    };
    // Both APIs nest the details under `error`; some proxies put a bare string there.
    match v.get("error") {
        Some(Value::Object(e)) => Upstream {
            message: e.get("message").and_then(Value::as_str).map(str::to_owned),
            kind: e.get("type").and_then(Value::as_str).map(str::to_owned),
            param: e.get("param").cloned(),
            code: e.get("code").cloned(),
        },
        Some(Value::String(s)) => Upstream {
            message: Some(s.clone()),
            ..Upstream::default()
        },
        _ => Upstream {
            message: v.get("message").and_then(Value::as_str).map(str::to_owned),
            ..Upstream::default()
        },
    }
}

/// Rewrites an upstream error body into the caller's API shape, keeping the upstream message.
///
/// The error type is kept when both sides speak the same API; across APIs it is chosen
/// from the status, because type names differ between the two.
pub fn translate_error_body(
    from: Format,
    to: Format,
    status: u16,
    upstream_body: &[u8],
) -> Vec<u8> {
    let up = parse_upstream(upstream_body);
    let message = up
        .message
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| format!("upstream returned HTTP {status}"));
    let kind = match up.kind {
        Some(k) if from == to => k,
        _ => error_type(to, status).to_owned(),
    };
    to_bytes(&match to {
        Format::OpenAi => {
            let same = from == Format::OpenAi;
            let param = up.param.filter(|_| same).unwrap_or(Value::Null);
            let code = up
                .code
                .filter(|_| same)
                .unwrap_or_else(|| openai_code(status));
            openai_error_value(&kind, &message, param, code)
        }
        Format::Anthropic => anthropic_error_value(&kind, &message),
    })
}

#[cfg(test)]
mod tests;
