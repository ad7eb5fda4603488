//! The two LLM HTTP APIs Keel speaks.

use keel::pb::WireFormat;

/// An API's wire format, on either side of the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenAI Chat Completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

impl Format {
    /// The format a catalog target speaks.
    pub fn of_target(wire: i32) -> Self {
        match WireFormat::try_from(wire) {
            Ok(WireFormat::Anthropic) => Self::Anthropic,
            _ => Self::OpenAi,
        }
    }

    /// The protobuf value.
    pub fn wire(self) -> WireFormat {
        match self {
            Self::OpenAi => WireFormat::Openai,
            Self::Anthropic => WireFormat::Anthropic,
        }
    }
}
