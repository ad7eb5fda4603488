//! Names from the OpenTelemetry GenAI semantic conventions that Keel emits,
//! in one place: the conventions are still in development, so a rename is
//! one edit here. Metric names are in their Prometheus form (dots become
//! underscores; the exporter appends the unit, e.g. `_seconds`); attribute
//! keys are the dotted OpenTelemetry names used on spans.

/// Metric families (Prometheus names without the unit suffix).
pub mod metric {
    /// `gen_ai.client.operation.duration`: one upstream call, request sent to
    /// last byte (seconds).
    pub const OPERATION_DURATION: &str = "gen_ai_client_operation_duration";
    /// `gen_ai.client.token.usage`: tokens of one call, by `gen_ai_token_type`.
    pub const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
    /// `gen_ai.client.operation.time_to_first_chunk`: streamed calls only
    /// (seconds).
    pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai_client_operation_time_to_first_chunk";

    /// Bucket bounds the conventions advise for durations, in seconds.
    pub const DURATION_BUCKETS: [f64; 14] = [
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ];
    /// Bucket bounds the conventions advise for token counts (powers of 4).
    pub const TOKEN_BUCKETS: [f64; 14] = [
        1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
        4194304.0, 16777216.0, 67108864.0,
    ];
}

/// Span attribute keys (and, with dots as underscores, metric label names).
pub mod attr {
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
    pub const USAGE_CACHE_CREATION_INPUT_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
    pub const RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    pub const ERROR_TYPE: &str = "error.type";
}

/// Values of `gen_ai.provider.name`: the conventions' well-known values
/// Keel derives from a provider's API; a provider may name another
/// (`[[providers]] gen_ai_provider_name`, e.g. `azure.ai.openai`,
/// `aws.bedrock`, `gcp.vertex_ai`), carried in `Target`.
pub mod provider {
    use crate::pb::{self, WireFormat};

    pub const OPENAI: &str = "openai";
    pub const ANTHROPIC: &str = "anthropic";

    /// The well-known value of a wire format.
    pub fn of_wire_format(w: WireFormat) -> &'static str {
        match w {
            WireFormat::Anthropic => ANTHROPIC,
            WireFormat::Openai | WireFormat::Unspecified => OPENAI,
        }
    }

    /// The target's `gen_ai.provider.name`: its provider's, else (from an
    /// older control plane) its wire format's.
    pub fn of(t: &pb::Target) -> &str {
        if t.gen_ai_provider_name.is_empty() {
            of_wire_format(t.wire_format())
        } else {
            &t.gen_ai_provider_name
        }
    }
}

/// Keel's own span attribute keys beside the conventions'.
pub mod keel_attr {
    /// The catalog's provider name (`gen_ai.provider.name` is the
    /// provider's kind, shared by every provider of that kind).
    pub const PROVIDER: &str = "keel.provider";
}

/// Values of `gen_ai.operation.name` Keel uses.
pub mod operation {
    /// Chat completions and Anthropic messages alike.
    pub const CHAT: &str = "chat";
}

/// Values of `gen_ai.token.type` (the conventions define `input` and
/// `output`; `cached` is Keel's, for input tokens read from a prompt cache).
pub mod token_type {
    pub const INPUT: &str = "input";
    pub const OUTPUT: &str = "output";
    pub const CACHED: &str = "cached";
}
