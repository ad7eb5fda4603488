//! Responses event streams: written from Chat Completions or Anthropic streams, or
//! relayed from a provider that speaks the Responses API.

mod from_chat;
mod native;
mod writer;

use super::super::StreamTranslator;

pub use writer::OnResponseId;

/// Chat Completions chunks (with the usage chunk) → Responses events.
pub fn chat_stream_to_responses(
    client_model: &str,
    on_id: Option<OnResponseId>,
) -> Box<dyn StreamTranslator> {
    Box::new(from_chat::ChatToResponses::new(client_model, on_id))
}

/// Anthropic Messages events → Responses events.
pub fn anthropic_stream_to_responses(
    client_model: &str,
    on_id: Option<OnResponseId>,
) -> Box<dyn StreamTranslator> {
    Box::new(from_chat::AnthropicToResponses::new(client_model, on_id))
}

/// A provider's own Responses stream, relayed as it is.
pub fn responses_passthrough(on_id: Option<OnResponseId>) -> Box<dyn StreamTranslator> {
    Box::new(native::NativeResponses::new(on_id))
}
