//! Streams pass through chunk by chunk: the app sees the first chunk while
//! the provider is still holding the rest; usage is read and reported.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use keel_testkit::Behavior;
use serde_json::Value;

async fn setup() -> Gateway {
    Gateway::start(&model("strong-a", 3, 3.0, 15.0), &[]).await
}

/// The `data:` payloads of an SSE body.
fn data_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_chunk_reaches_the_app_before_the_provider_finishes() {
    let gw = setup().await;
    let (fake, sc) = (&gw.fake, &gw.sc);
    // The provider sends two frames, then waits until released.
    fake.set_behavior(Behavior {
        hold_after_frames: Some(2),
        ..Default::default()
    });
    let client = reqwest::Client::new();
    let resp = post_chat(
        &client,
        &sc.url(),
        Some("s-1"),
        Some("AGENT"),
        &chat_body("auto", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    assert_eq!(header(&resp, "x-keel-model"), "strong-a");
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    while data_lines(&seen).len() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("first chunks arrive while the provider holds the rest (not buffered)")
            .expect("stream open")
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        !seen.contains("[DONE]"),
        "the provider has not finished yet"
    );
    fake.release();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
    {
        seen.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let data = data_lines(&seen);
    assert_eq!(*data.last().unwrap(), "[DONE]");
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert!(text.starts_with("The build fails because"), "{text}");
    // Keel asked the provider for usage, but the app did not: no usage chunk.
    assert!(
        fake.requests()[0]
            .body
            .pointer("/stream_options/include_usage")
            == Some(&Value::Bool(true))
    );
    assert!(
        data.iter().all(|d| !d.contains("\"choices\":[]")),
        "usage-only chunk stripped for an app that did not ask"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_chunk_reaches_an_app_that_asked_and_spend_is_reported() {
    let gw = setup().await;
    let (cp, sc) = (&gw.cp, &gw.sc);
    let client = reqwest::Client::new();
    let mut body = chat_body("auto", true);
    body["stream_options"] = serde_json::json!({"include_usage": true});
    let resp = post_chat(&client, &sc.url(), Some("s-2"), Some("AGENT"), &body).await;
    let text = resp.text().await.unwrap();
    let usage: Vec<Value> = data_lines(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["choices"].as_array().is_some_and(Vec::is_empty))
        .collect();
    assert_eq!(usage.len(), 1, "{text}");
    assert_eq!(usage[0]["usage"]["prompt_tokens"], 1843);

    // A non-streamed turn of the same conversation.
    let resp = post_chat(
        &client,
        &sc.url(),
        Some("s-2"),
        Some("AGENT"),
        &chat_body("auto", false),
    )
    .await;
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["usage"]["completion_tokens"], 41);

    // Reports are asynchronous: poll the control plane until both arrived.
    // Expected spend: (1843 + 1843) input and (14 + 41) output tokens at
    // 3 and 15 USD per million.
    let expected = (2.0 * 1843.0 * 3.0 + 55.0 * 15.0) / 1e6;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let conv = conversation(&cp.url(), "s-2").await;
        if (conv.spend_usd - expected).abs() < 1e-9 {
            assert_eq!(conv.turns, 2);
            assert_eq!(conv.pinned_model, "strong-a");
            assert_eq!(conv.decisions.len(), 2);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spend {} never reached {expected}",
            conv.spend_usd
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_dying_mid_stream_ends_the_stream_with_an_error_event() {
    let gw = setup().await;
    let (fake, sc) = (&gw.fake, &gw.sc);
    // Frames are spaced so the head and first frames are on the wire before the cut.
    fake.set_behavior(Behavior {
        cut_after_frames: Some(3),
        frame_delay_ms: 20,
        ..Default::default()
    });
    let client = reqwest::Client::new();
    let resp = post_chat(
        &client,
        &sc.url(),
        None,
        Some("CHAT"),
        &chat_body("auto", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .unwrap()
        .unwrap();
    let data = data_lines(&text);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"].is_string(),
        "ends with an error event: {text}"
    );
    assert!(!text.contains("[DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_limit_the_app_gets_a_prompt_503_and_open_streams_count() {
    let gw = Gateway::start(
        &model("strong-a", 3, 3.0, 15.0),
        &["--max-concurrency", "2"],
    )
    .await;
    gw.fake.set_behavior(Behavior {
        hold_after_frames: Some(2),
        ..Default::default()
    });
    // Two open streams hold both slots.
    let mut open = Vec::new();
    for i in 0..2 {
        let conversation = format!("c-{i}");
        let r = gw
            .chat(Some(&conversation), Some("AGENT"), &chat_body("auto", true))
            .await;
        assert_eq!(r.status(), 200);
        let mut body = r.bytes_stream();
        tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        open.push(body);
    }
    let r = gw.chat(None, Some("CHAT"), &chat_body("auto", false)).await;
    assert_eq!(r.status(), 503, "shed at once, not queued");
    assert_eq!(header(&r, "retry-after"), "1");
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 2"),
        "{v}"
    );

    gw.fake.release();
    for mut body in open {
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .unwrap()
        {
            chunk.unwrap();
        }
    }
    // The slots come back when the streams end.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = gw.chat(None, Some("CHAT"), &chat_body("auto", false)).await;
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(std::time::Instant::now() < deadline, "slots never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
