//! Errors that reach the app, each rendered once in the error shape of the
//! API the app called, with the right status.

use crate::{
    body::Body,
    format::Format,
    translate::{TranslateError, error_body},
};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

/// An error answered to the app.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    /// 408: the request body stalled.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: Option<u64>,
    },
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    /// 503 with `Retry-After`: try again later (e.g. a pinned model is down).
    #[error("{message}")]
    Wait {
        message: String,
        retry_after_secs: Option<u64>,
    },
    #[error("{0}")]
    GatewayTimeout(String),
    /// 402: a budget cap is reached. Not a failure to retry: the
    /// conversation resumes as soon as the cap is raised.
    #[error("{}", .0.message)]
    BudgetExceeded(Box<BudgetExceeded>),
    /// An upstream's own error, relayed with its status; the body is
    /// already in the caller's shape (see `translate_error_body`).
    #[error("upstream error {status}")]
    Upstream { status: StatusCode, body: Bytes },
}

/// The control plane's budget refusal (`keel-budget` metadata).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BudgetExceeded {
    pub message: String,
    /// `conversation_usd`, `conversation_turns` or `tenant_usd_per_day`.
    pub budget: String,
    pub limit: Option<f64>,
    pub used: Option<f64>,
    pub remaining_usd: Option<f64>,
    pub remaining_turns: Option<u64>,
}

impl BudgetExceeded {
    /// The error body in `format`'s shape, type `budget_exceeded`, with the
    /// cap and the remaining amounts as fields beside the message.
    fn body(&self, format: Format) -> Vec<u8> {
        let mut error = serde_json::Map::new();
        let details = [
            ("budget", serde_json::json!(self.budget)),
            ("limit", serde_json::json!(self.limit)),
            ("used", serde_json::json!(self.used)),
            ("remaining_usd", serde_json::json!(self.remaining_usd)),
            ("remaining_turns", serde_json::json!(self.remaining_turns)),
        ];
        let body = match format {
            Format::OpenAi => {
                error.insert("message".into(), self.message.clone().into());
                error.insert("type".into(), "budget_exceeded".into());
                error.insert("param".into(), serde_json::Value::Null);
                error.insert("code".into(), self.budget.clone().into());
                error.extend(details.map(|(k, v)| (k.to_owned(), v)));
                serde_json::json!({ "error": error })
            }
            Format::Anthropic => {
                error.insert("type".into(), "budget_exceeded".into());
                error.insert("message".into(), self.message.clone().into());
                error.extend(details.map(|(k, v)| (k.to_owned(), v)));
                serde_json::json!({ "type": "error", "error": error })
            }
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) | Self::Wait { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::BudgetExceeded(_) => StatusCode::PAYMENT_REQUIRED,
            Self::Upstream { status, .. } => *status,
        }
    }

    /// The response in `format`'s error shape.
    pub fn into_response(self, format: Format) -> http::Response<Body> {
        let status = self.status();
        let retry_after = match &self {
            Self::RateLimited {
                retry_after_secs, ..
            }
            | Self::Wait {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        };
        let body = match self {
            Self::Upstream { body, .. } => body,
            Self::BudgetExceeded(b) => Bytes::from(b.body(format)),
            other => Bytes::from(error_body(
                format,
                status.as_u16(),
                bounded(&other.to_string()),
            )),
        };
        let mut resp = http::Response::new(crate::body::full(body));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Longest error message answered, in bytes: messages may quote the app's
/// input (a serde error quotes a string it did not expect), which must never
/// come back unbounded.
const MAX_MESSAGE_BYTES: usize = 1024;

fn bounded(message: &str) -> &str {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// The app's body cannot be expressed in the target's API: the app's fault,
/// and the message names the field.
impl From<TranslateError> for ApiError {
    fn from(e: TranslateError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exceeded() -> ApiError {
        ApiError::BudgetExceeded(Box::new(BudgetExceeded {
            message: "budget exceeded (conversation_turns)".into(),
            budget: "conversation_turns".into(),
            limit: Some(3.0),
            used: Some(3.0),
            remaining_usd: Some(0.25),
            remaining_turns: Some(0),
        }))
    }

    async fn body(resp: http::Response<Body>) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_message_quoting_huge_input_is_cut() {
        let huge = format!("\"{}\"", "é".repeat(1_000_000));
        let cache = crate::facts::FactsCache::default();
        let e = crate::inbound::parse_chat(Format::OpenAi, Bytes::from(huge), &cache)
            .err()
            .unwrap();
        let v = body(e.into_response(Format::OpenAi)).await;
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.len() <= MAX_MESSAGE_BYTES, "{}", message.len());
        assert!(message.starts_with("request body is not a JSON object"));
    }

    #[tokio::test]
    async fn a_budget_refusal_is_402_in_either_shape_with_the_amounts() {
        let resp = exceeded().into_response(Format::OpenAi);
        assert_eq!(resp.status(), StatusCode::PAYMENT_REQUIRED);
        let v = body(resp).await;
        assert_eq!(v["error"]["type"], "budget_exceeded");
        assert_eq!(v["error"]["code"], "conversation_turns");
        assert_eq!(v["error"]["remaining_turns"], 0);
        assert_eq!(v["error"]["remaining_usd"], 0.25);
        let v = body(exceeded().into_response(Format::Anthropic)).await;
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "budget_exceeded");
        assert_eq!(v["error"]["limit"], 3.0);
    }
}
