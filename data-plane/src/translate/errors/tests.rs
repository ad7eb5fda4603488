use serde_json::{Value, json};

use super::super::Format;
use super::super::test_support::fixture;
use super::*;

fn parse(b: &[u8]) -> Value {
    serde_json::from_slice(b).expect("error body is JSON")
}

#[test]
fn error_body_openai_shape() {
    let v = parse(&error_body(Format::OpenAi, 429, "slow down"));
    assert_eq!(
        v,
        json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
    );
}

#[test]
fn error_body_anthropic_shape() {
    let v = parse(&error_body(Format::Anthropic, 401, "bad key"));
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "bad key"}})
    );
}

#[test]
fn error_types_follow_status() {
    let cases = [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "invalid_request_error", "not_found_error"),
        (413, "invalid_request_error", "request_too_large"),
        (422, "invalid_request_error", "invalid_request_error"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "api_error"),
        (502, "api_error", "api_error"),
        (503, "api_error", "overloaded_error"),
        (529, "api_error", "overloaded_error"),
    ];
    for (status, openai, anthropic) in cases {
        assert_eq!(error_type(Format::OpenAi, status), openai, "{status}");
        assert_eq!(error_type(Format::Anthropic, status), anthropic, "{status}");
    }
}

#[test]
fn openai_429_to_anthropic_keeps_message() {
    let body = fixture("openai/error_429.json");
    let v = parse(&translate_error_body(
        Format::OpenAi,
        Format::Anthropic,
        429,
        body.as_bytes(),
    ));
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit reached for gpt-4o")
    );
}

#[test]
fn anthropic_overloaded_to_openai() {
    let body = fixture("anthropic/error_overloaded.json");
    let v = parse(&translate_error_body(
        Format::Anthropic,
        Format::OpenAi,
        529,
        body.as_bytes(),
    ));
    assert_eq!(v["error"]["message"], "Overloaded");
    assert_eq!(v["error"]["type"], "api_error");
    assert_eq!(v["error"]["code"], Value::Null);
    assert_eq!(v["error"]["param"], Value::Null);
}

#[test]
fn anthropic_429_to_openai() {
    let body = fixture("anthropic/error_429.json");
    let v = parse(&translate_error_body(
        Format::Anthropic,
        Format::OpenAi,
        429,
        body.as_bytes(),
    ));
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rate limit")
    );
}

#[test]
fn same_format_keeps_type_and_code() {
    let body = fixture("openai/error_429.json");
    let v = parse(&translate_error_body(
        Format::OpenAi,
        Format::OpenAi,
        429,
        body.as_bytes(),
    ));
    assert_eq!(v["error"]["type"], "tokens");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let body = fixture("anthropic/error_overloaded.json");
    let v = parse(&translate_error_body(
        Format::Anthropic,
        Format::Anthropic,
        529,
        body.as_bytes(),
    ));
    assert_eq!(v["error"]["type"], "overloaded_error");
}

#[test]
fn non_json_and_empty_upstream_bodies() {
    let html = b"<html><body>502 Bad Gateway</body></html>\n";
    let v = parse(&translate_error_body(
        Format::OpenAi,
        Format::Anthropic,
        502,
        html,
    ));
    assert_eq!(
        v["error"]["message"],
        "<html><body>502 Bad Gateway</body></html>"
    );
    assert_eq!(v["error"]["type"], "api_error");

    let v = parse(&translate_error_body(
        Format::Anthropic,
        Format::OpenAi,
        504,
        b"",
    ));
    assert_eq!(v["error"]["message"], "upstream returned HTTP 504");

    let long = vec![b'x'; 5000];
    let v = parse(&translate_error_body(
        Format::OpenAi,
        Format::OpenAi,
        500,
        &long,
    ));
    assert_eq!(
        v["error"]["message"].as_str().unwrap().len(),
        MAX_MESSAGE_CHARS
    );

    let v = parse(&translate_error_body(
        Format::OpenAi,
        Format::Anthropic,
        400,
        br#"{"error":"bad model"}"#,
    ));
    assert_eq!(v["error"]["message"], "bad model");
    let v = parse(&translate_error_body(
        Format::OpenAi,
        Format::Anthropic,
        400,
        &[0xff, 0xfe],
    ));
    assert!(v["error"]["message"].is_string());
}

#[test]
fn translate_error_names_field_and_maps_to_400() {
    let e = TranslateError::Missing {
        field: "messages[2].tool_call_id".into(),
    };
    assert_eq!(e.status(), 400);
    assert_eq!(e.field(), "messages[2].tool_call_id");
    let v = parse(&error_body(Format::Anthropic, e.status(), &e.to_string()));
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[2].tool_call_id")
    );
}
