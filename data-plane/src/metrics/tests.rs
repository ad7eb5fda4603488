use std::time::Duration;

use keel::pb;

use super::Metrics;
use crate::format::Format;

/// A target of catalog provider `provider`, speaking `wire`, with the
/// configured `gen_ai.provider.name` (empty: by its wire format).
fn target(model: &str, provider: &str, wire: pb::WireFormat, gen_ai: &str) -> Option<pb::Target> {
    Some(pb::Target {
        model: model.into(),
        provider: provider.into(),
        wire_format: wire as i32,
        gen_ai_provider_name: gen_ai.into(),
        ..Default::default()
    })
}

#[test]
fn renders_counters_with_fixed_labels() {
    let m = Metrics::default();
    m.request(Format::OpenAi, 200);
    m.request(Format::Anthropic, 429);
    m.request(Format::Anthropic, 503);
    m.degraded();
    m.fallbacks(2);
    m.reports_dropped.inc_by(7);
    let text = m.render();
    assert!(text.contains("keel_sidecar_requests_total{api=\"openai\",status=\"2xx\"} 1"));
    assert!(text.contains("keel_sidecar_requests_total{api=\"anthropic\",status=\"4xx\"} 1"));
    assert!(text.contains("keel_sidecar_requests_total{api=\"anthropic\",status=\"5xx\"} 1"));
    assert!(text.contains("keel_sidecar_degraded_total 1"));
    assert!(text.contains("keel_sidecar_fallbacks_total 2"));
    assert!(text.contains("keel_sidecar_reports_dropped_total 7"));
}

#[test]
fn an_outcome_is_measured_per_call_with_tokens_by_type_and_no_conversation_id() {
    let m = Metrics::default();
    let o = pb::Outcome {
        conversation_id: "conv-secret-id".into(),
        profile: "agent".into(),
        success: true,
        total_latency_ms: 900,
        attempts: vec![
            pb::Attempt {
                target: target("gpt", "openai-main", pb::WireFormat::Openai, ""),
                error_class: "upstream_5xx".into(),
                latency_ms: 100,
                ..Default::default()
            },
            pb::Attempt {
                target: target(
                    "sonnet",
                    "claude-eu",
                    pb::WireFormat::Anthropic,
                    "aws.bedrock",
                ),
                latency_ms: 200,
                ttft_ms: 250,
                ..Default::default()
            },
        ],
        usage: Some(pb::Usage {
            input_tokens: 100,
            output_tokens: 20,
            cached_input_tokens: 64,
            cache_creation_tokens: 0,
            estimated: false,
        }),
        ..Default::default()
    };
    m.outcome(&o, Some(Duration::from_millis(700)), true);
    let text = m.render();
    assert!(!text.contains("conv-secret-id"));
    let failed = "gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",keel_provider=\"openai-main\",gen_ai_request_model=\"gpt\",keel_profile=\"agent\",error_type=\"upstream_5xx\"} 1";
    assert!(text.contains(failed), "{text}");
    let served = "gen_ai_client_operation_duration_seconds_sum{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"aws.bedrock\",keel_provider=\"claude-eu\",gen_ai_request_model=\"sonnet\",keel_profile=\"agent\",error_type=\"\"} 0.7";
    assert!(text.contains(served), "{text}");
    assert!(text.contains("gen_ai_client_operation_time_to_first_chunk_seconds_sum{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"aws.bedrock\",keel_provider=\"claude-eu\",gen_ai_request_model=\"sonnet\",keel_profile=\"agent\",error_type=\"\"} 0.25"));
    for (kind, n) in [("input", 100), ("output", 20), ("cached", 64)] {
        let line = format!(
            "gen_ai_client_token_usage_sum{{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"aws.bedrock\",keel_provider=\"claude-eu\",gen_ai_request_model=\"sonnet\",keel_profile=\"agent\",gen_ai_token_type=\"{kind}\"}} {n}.0"
        );
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert!(text.contains(
        "keel_sidecar_request_duration_seconds_count{model=\"sonnet\",provider=\"claude-eu\",profile=\"agent\"} 1"
    ));
}
