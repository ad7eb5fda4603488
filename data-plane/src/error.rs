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
    /// An upstream's own error, relayed with its status; the body is
    /// already in the caller's shape (see `translate_error_body`).
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
            Self::Unavailable(_) | Self::Wait { .. } => StatusCode::SERVICE_UNAVAILABLE,
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
            }
            | Self::Wait {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        };
        let body = match self {
            Self::Upstream { body, .. } => body,
            other => Bytes::from(error_body(format, status.as_u16(), &other.to_string())),
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

/// The app's body cannot be expressed in the target's API: the app's fault,
/// and the message names the field.
impl From<TranslateError> for ApiError {
    fn from(e: TranslateError) -> Self {
        Self::BadRequest(e.to_string())
    }
}
