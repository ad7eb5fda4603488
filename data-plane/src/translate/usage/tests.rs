use serde_json::json;

use super::super::test_support::fixture_json;
use super::*;

#[test]
fn openai_usage_from_response_chunk_and_bare() {
    let u = usage_from_openai(&fixture_json("openai/chat_completion.json"));
    assert_eq!(
        u,
        Usage {
            input_tokens: 1843,
            output_tokens: 41,
            cached_input_tokens: 1536,
            cache_creation_tokens: 0
        }
    );
    let bare = json!({"prompt_tokens": 10, "completion_tokens": 2});
    assert_eq!(usage_from_openai(&bare).input_tokens, 10);
    assert_eq!(usage_from_openai(&json!({"usage": null})), Usage::default());
    assert_eq!(usage_from_openai(&json!("nonsense")), Usage::default());
}

#[test]
fn anthropic_usage_folds_cache_into_input() {
    let u = usage_from_anthropic(&fixture_json("anthropic/message_tool_use.json"));
    assert_eq!(
        u,
        Usage {
            input_tokens: 318 + 1902,
            output_tokens: 112,
            cached_input_tokens: 0,
            cache_creation_tokens: 1902
        }
    );
    let start = json!({"type": "message_start", "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 1}}});
    let u = usage_from_anthropic(&start);
    assert_eq!(
        (u.input_tokens, u.cached_input_tokens, u.output_tokens),
        (105, 100, 1)
    );
}

#[test]
fn round_trip_through_both_shapes() {
    let u = Usage {
        input_tokens: 2000,
        output_tokens: 50,
        cached_input_tokens: 1500,
        cache_creation_tokens: 300,
    };
    let oa = u.to_openai_json();
    assert_eq!(oa["prompt_tokens"], 2000);
    assert_eq!(oa["total_tokens"], 2050);
    assert_eq!(oa["prompt_tokens_details"]["cached_tokens"], 1500);
    let an = u.to_anthropic_json();
    assert_eq!(an["input_tokens"], 200);
    assert_eq!(an["cache_read_input_tokens"], 1500);
    assert_eq!(an["cache_creation_input_tokens"], 300);
    assert_eq!(usage_from_anthropic(&json!({ "usage": an })), u);
}

#[test]
fn counters_saturate_instead_of_overflowing() {
    let huge = json!({"usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": 7, "output_tokens": -3}});
    let u = usage_from_anthropic(&huge);
    assert_eq!(u.input_tokens, u32::MAX);
    assert_eq!(u.output_tokens, 0);
    let odd = Usage {
        input_tokens: 1,
        cached_input_tokens: 5,
        ..Usage::default()
    };
    assert_eq!(odd.to_anthropic_json()["input_tokens"], 0);
}

#[test]
fn merge_keeps_counters_absent_from_later_events() {
    let mut acc = AnthropicCounts::default();
    acc.merge(&json!({"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 1}));
    acc.merge(&json!({"output_tokens": 42}));
    let u = acc.to_usage();
    assert_eq!(
        (u.input_tokens, u.cached_input_tokens, u.output_tokens),
        (100, 90, 42)
    );
}
