//! Errors that reach the app, each rendered once in the error shape of the
//! API the app called, with the right status.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::{body::Body, format::Format};

/// An error answered to the app.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
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
    #[error("{0}")]
    GatewayTimeout(String),
    /// An upstream's own error, relayed with its status (already in the
    /// caller's shape).
    #[error("upstream error {status}")]
    Upstream { status: StatusCode, body: Bytes },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream { status, .. } => *status,
        }
    }

    /// The response in `format`'s error shape.
    pub fn into_response(self, format: Format) -> http::Response<Body> {
        let status = self.status();
        let retry_after = match &self {
            Self::RateLimited {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        };
        let body = match self {
            Self::Upstream { body, .. } => body,
            other => Bytes::from(error_body(format, status, &other.to_string())),
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

/// An error body in `format`'s shape for `status`.
pub fn error_body(format: Format, status: StatusCode, message: &str) -> Vec<u8> {
    let value = match format {
        Format::OpenAi => {
            let (kind, code) = match status.as_u16() {
                400 => ("invalid_request_error", None),
                401 => ("authentication_error", Some("invalid_api_key")),
                403 => ("permission_error", None),
                404 => ("invalid_request_error", Some("not_found")),
                413 => ("invalid_request_error", Some("request_too_large")),
                429 => ("rate_limit_error", Some("rate_limit_exceeded")),
                _ => ("api_error", None),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Format::Anthropic => {
            let kind = match status.as_u16() {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                503 | 529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}
