//! Wire-format work on bodies and streams: translation between the OpenAI Chat
//! Completions and Anthropic Messages APIs (requests, responses, streams,
//! error bodies), same-format stream passthrough, and usage extraction.
//!
//! Everything here is synchronous and allocation-only: no I/O, no panics on
//! any input. The request path parses bodies and SSE frames; this module only
//! rewrites them.
//!
//! Architecture invariants:
//! * Request translators whitelist fields: anything not explicitly mapped is
//!   dropped, so no field of one API ever leaks into the other.
//! * Only request translation fails (caller input, always a 400 naming the
//!   field). Response and stream translators never fail: missing upstream
//!   fields fall back to neutral defaults.
//! * Stream translators write each frame as soon as it exists and write
//!   nothing after the caller's stream has ended.

mod errors;
mod json;
mod mapping;
mod request;
mod response;
pub mod responses;
mod stream;
#[cfg(test)]
pub(crate) mod test_support;
mod usage;

// Child modules name the format as `super::Format`.
use crate::format::Format;

pub use errors::{TranslateError, error_body, translate_error_body};
pub use mapping::{finish_reason_of, reason_as_sent, responses_finish_reason};
pub use request::{anthropic_to_openai_request, openai_to_anthropic_request};
pub use response::{anthropic_to_openai_response, openai_to_anthropic_response};
pub use stream::{
    StreamTranslator, anthropic_stream_to_openai, openai_stream_to_anthropic, passthrough,
};
pub use usage::{Usage, usage_from_anthropic, usage_from_openai};
