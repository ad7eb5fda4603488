//! The response body type: a whole buffer or a stream of frames.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

/// Every response body the sidecar sends. Infallible: a broken upstream
/// stream ends with an error event in the caller's format, not a body error.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}
