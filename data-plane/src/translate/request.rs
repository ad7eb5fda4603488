//! Request bodies: OpenAI Chat Completions ⇄ Anthropic Messages.

mod content;
mod to_anthropic;
mod to_openai;
mod tools;
mod turns;

pub use to_anthropic::openai_to_anthropic_request;
pub use to_openai::anthropic_to_openai_request;
