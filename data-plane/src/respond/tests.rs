//! The reply path with recorded provider bodies: what the app receives and
//! what is reported.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use keel::pb;
use serde_json::Value;

use super::*;
use crate::{outcome::Pending, report, translate::test_support::fixture};

fn provider(body: String) -> reqwest::Response {
    reqwest::Response::from(http::Response::new(body))
}

fn reply(caller: Format, upstream: Format) -> Reply<'static> {
    Reply {
        caller,
        upstream,
        client_model: "sonnet",
        idle: Duration::from_secs(5),
        attempt_started: Instant::now(),
    }
}

fn pending() -> (Pending, tokio::sync::mpsc::Receiver<pb::Outcome>) {
    let (reporter, rx) = report::capture(1);
    (
        Pending::new(reporter, pb::Outcome::default(), Instant::now()),
        rx,
    )
}

async fn text(r: Response<Body>) -> String {
    let bytes = r
        .into_body()
        .collect()
        .await
        .expect("infallible")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

fn reported_usage(rx: &mut tokio::sync::mpsc::Receiver<pb::Outcome>) -> (pb::Usage, bool) {
    let o = rx.try_recv().expect("one outcome reported");
    (o.usage.expect("usage"), o.stream_completed)
}

#[tokio::test]
async fn whole_anthropic_answer_reaches_an_openai_app_translated() {
    let (p, mut rx) = pending();
    let upstream = provider(fixture("anthropic/message.json"));
    let r = whole(upstream, &reply(Format::OpenAi, Format::Anthropic), p)
        .await
        .expect("relayed");
    let v: Value = serde_json::from_str(&text(r).await).expect("JSON");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "sonnet");
    let (usage, _) = reported_usage(&mut rx);
    // Read in Anthropic's shape: cache reads count as input.
    assert_eq!(
        u64::from(usage.input_tokens),
        v["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert!(usage.cached_input_tokens > 0);
}

#[tokio::test]
async fn whole_same_format_answer_is_relayed_byte_for_byte() {
    let (p, mut rx) = pending();
    let recorded = fixture("openai/chat_completion.json");
    let r = whole(
        provider(recorded.clone()),
        &reply(Format::OpenAi, Format::OpenAi),
        p,
    )
    .await
    .expect("relayed");
    assert_eq!(text(r).await, recorded);
    assert!(reported_usage(&mut rx).0.output_tokens > 0);
}

#[tokio::test]
async fn openai_stream_reaches_an_anthropic_app_as_events() {
    let (p, mut rx) = pending();
    let upstream = provider(fixture("openai/stream_text.sse"));
    let r = streamed(
        upstream,
        &reply(Format::Anthropic, Format::OpenAi),
        false,
        false,
        p,
    );
    let out = text(r).await;
    assert!(out.starts_with("event: message_start\n"), "{out}");
    assert!(out.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    let (usage, completed) = reported_usage(&mut rx);
    assert!(completed);
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
}

#[tokio::test]
async fn anthropic_stream_reaches_an_openai_app_as_chunks() {
    let (p, mut rx) = pending();
    let upstream = provider(fixture("anthropic/stream_text.sse"));
    let r = streamed(
        upstream,
        &reply(Format::OpenAi, Format::Anthropic),
        true,
        false,
        p,
    );
    let out = text(r).await;
    assert!(!out.contains("event:"), "{out}");
    assert!(out.ends_with("data: [DONE]\n\n"));
    assert!(out.contains("\"prompt_tokens\":1840"));
    let (usage, completed) = reported_usage(&mut rx);
    assert!(completed);
    assert_eq!((usage.input_tokens, usage.output_tokens), (1840, 17));
}

#[tokio::test]
async fn truncated_same_format_stream_ends_with_an_error_event() {
    let (mut p, mut rx) = pending();
    p.begin_attempt(&pb::Target::default());
    p.last_attempt().unwrap().error_class.clear();
    let recorded = fixture("anthropic/stream_text.sse");
    let cut = recorded
        .split_once("event: message_delta")
        .map(|(head, _)| head.to_owned())
        .expect("fixture has a message_delta");
    let r = streamed(
        provider(cut.clone()),
        &reply(Format::Anthropic, Format::Anthropic),
        false,
        false,
        p,
    );
    let out = text(r).await;
    assert!(out.starts_with(&cut), "relayed as sent");
    assert!(out[cut.len()..].starts_with("event: error\n"), "{out}");
    // A failure of the provider's: not a success, counted by the breaker.
    let o = rx.try_recv().expect("reported");
    assert!(!o.success && !o.stream_completed && !o.cancelled);
    assert_eq!(o.attempts[0].error_class, crate::outcome::STREAM_BROKEN);
}

/// A provider that sends `parts` as they come on the channel, and stalls
/// when none is waiting (the stream stays open).
fn provider_streaming() -> (
    tokio::sync::mpsc::UnboundedSender<String>,
    reqwest::Response,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let parts = futures_util::stream::unfold(rx, |mut rx| async move {
        let part = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(part), rx))
    });
    let body = reqwest::Body::wrap_stream(parts);
    (tx, reqwest::Response::from(http::Response::new(body)))
}

/// The recorded Anthropic stream, cut before `event: message_delta`.
fn anthropic_stream_head() -> (String, String) {
    let recorded = fixture("anthropic/stream_text.sse");
    let (head, tail) = recorded
        .split_once("event: message_delta")
        .expect("fixture has a message_delta");
    (head.to_owned(), format!("event: message_delta{tail}"))
}

#[tokio::test]
async fn an_app_that_stops_reading_a_stream_is_reported_cancelled() {
    let (p, mut rx) = pending();
    let (tx, upstream) = provider_streaming();
    tx.send(anthropic_stream_head().0).unwrap();
    let r = streamed(
        upstream,
        &reply(Format::Anthropic, Format::Anthropic),
        false,
        false,
        p.estimating(20),
    );
    let mut body = r.into_body();
    let first = body.frame().await.expect("a frame").expect("infallible");
    assert!(first.is_data());
    drop(body);
    let o = rx.try_recv().expect("reported when the app went away");
    assert!(o.cancelled && !o.success, "{o:?}");
    let usage = o.usage.unwrap();
    assert!(usage.input_tokens > 0, "{usage:?}");
}

#[tokio::test]
async fn after_the_first_event_events_at_hand_share_a_write_and_none_waits() {
    // The whole recorded stream at hand: two frames, as sent.
    let (p, _rx) = pending();
    let recorded = fixture("anthropic/stream_text.sse");
    let r = streamed(
        provider(recorded.clone()),
        &reply(Format::Anthropic, Format::Anthropic),
        false,
        false,
        p,
    );
    let mut body = r.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        frames.push(frame.expect("infallible").into_data().expect("data"));
    }
    // The first event at once, the rest in one write.
    let first = recorded.split_inclusive("\n\n").next().unwrap();
    assert_eq!(
        frames.len(),
        2,
        "{} events",
        recorded.matches("\n\n").count()
    );
    assert_eq!(frames[0], first.as_bytes());
    assert_eq!(
        [&frames[0][..], &frames[1][..]].concat(),
        recorded.as_bytes()
    );

    // Events that come apart: each reaches the app without waiting.
    let (p, mut rx) = pending();
    let (tx, upstream) = provider_streaming();
    let (head, tail) = anthropic_stream_head();
    tx.send(head.clone()).unwrap();
    let r = streamed(
        upstream,
        &reply(Format::Anthropic, Format::Anthropic),
        false,
        false,
        p,
    );
    let mut body = r.into_body();
    let mut got = Vec::new();
    while got.len() < head.len() {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the events that came, without the rest")
            .expect("a frame")
            .expect("infallible");
        got.extend_from_slice(&frame.into_data().expect("data"));
    }
    assert_eq!(got, head.as_bytes());
    tx.send(tail.clone()).unwrap();
    drop(tx);
    let rest = body.collect().await.expect("infallible").to_bytes();
    assert_eq!(rest, tail.as_bytes());
    let (_, completed) = reported_usage(&mut rx);
    assert!(completed);
}

#[test]
fn usage_from_the_usage_members_equals_usage_from_the_whole_body() {
    let bodies = [
        fixture("openai/chat_completion.json"),
        fixture("anthropic/message.json"),
        r#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}}"#.to_owned(),
        r#"{"type":"message","usage":{"input_tokens":7,"output_tokens":2,"cache_read_input_tokens":5}}"#.to_owned(),
        r#"{"message":{"usage":{"input_tokens":9,"output_tokens":1}}}"#.to_owned(),
        r#"{"prompt_tokens":5,"completion_tokens":6}"#.to_owned(),
        r#"{"usage":null,"input_tokens":3}"#.to_owned(),
        r#"[{"usage":{"prompt_tokens":1}}]"#.to_owned(),
        "not json".to_owned(),
    ];
    for body in bodies {
        let whole = serde_json::from_slice::<Value>(body.as_bytes()).ok();
        let members = usage_fields(body.as_bytes());
        for read in [
            translate::usage_from_openai,
            translate::usage_from_anthropic,
        ] {
            assert_eq!(
                whole.as_ref().map(read).unwrap_or_default(),
                members.as_ref().map(read).unwrap_or_default(),
                "{body}"
            );
        }
    }
}

#[test]
fn a_same_format_answer_keeps_its_finish_reason_without_its_content() {
    let openai = usage_fields(fixture("openai/chat_completion_tool_call.json").as_bytes())
        .expect("an object");
    assert_eq!(
        openai["choices"],
        serde_json::json!([{"finish_reason": "tool_calls"}])
    );
    assert_eq!(
        translate::finish_reason_of(Format::OpenAi, &openai),
        Some("tool_calls")
    );
    let anthropic = usage_fields(fixture("anthropic/message.json").as_bytes()).expect("an object");
    assert!(anthropic.get("content").is_none());
    assert_eq!(
        translate::finish_reason_of(Format::Anthropic, &anthropic),
        Some("end_turn")
    );
}
