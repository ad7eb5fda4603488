//! What an operator sees of real traffic: both processes' `/metrics`
//! (histograms and counters, never a conversation id) and
//! `X-Keel-Overhead-Ms` on every response.

mod common;

use std::time::{Duration, Instant};

use common::*;

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = header(&r, "content-type").to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    r.text().await.unwrap()
}

fn overhead_ms(r: &reqwest::Response) -> f64 {
    header(r, "x-keel-overhead-ms")
        .parse()
        .expect("overhead is a number of milliseconds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_measure_real_traffic_per_model_provider_and_profile() {
    let gw = Gateway::start(&model("strong", 3, 3.0, 15.0), &[]).await;
    let conversation = "obs-conversation-42";
    for stream in [false, true] {
        let r = gw
            .chat(
                Some(conversation),
                Some("AGENT"),
                &chat_body("auto", stream),
            )
            .await;
        assert_eq!(r.status(), 200);
        let own = overhead_ms(&r);
        assert!((0.0..5_000.0).contains(&own), "{own}");
        r.text().await.unwrap();
    }
    // Errors and plain routes carry it too.
    let r = gw
        .client
        .get(format!("{}/nowhere", gw.sc.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    overhead_ms(&r);

    let sc = scrape(&gw.client, &format!("{}/metrics", gw.sc.url())).await;
    let call = "gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",keel_provider=\"alpha\",gen_ai_request_model=\"strong\",keel_profile=\"AGENT\"";
    for line in [
        "keel_sidecar_requests_total{api=\"openai\",status=\"2xx\"} 2".to_owned(),
        format!("gen_ai_client_operation_duration_seconds_count{{{call},error_type=\"\"}} 2"),
        format!("gen_ai_client_operation_time_to_first_chunk_seconds_count{{{call},error_type=\"\"}} 1"),
        format!("gen_ai_client_token_usage_count{{{call},gen_ai_token_type=\"input\"}} 2"),
        format!("gen_ai_client_token_usage_count{{{call},gen_ai_token_type=\"cached\"}} 2"),
        "keel_sidecar_request_duration_seconds_count{model=\"strong\",provider=\"alpha\",profile=\"AGENT\"} 2".to_owned(),
        "keel_sidecar_overhead_seconds_count 2".to_owned(),
    ] {
        assert!(sc.contains(&line), "{line} missing from\n{sc}");
    }
    assert!(!sc.contains(conversation));

    // Reports reach the control plane a moment later.
    let cp_url = format!("http://{}/metrics", gw.cp.http);
    let served = "profile=\"AGENT\",model=\"strong\",provider=\"alpha\"";
    let cost = format!("keel_request_cost_usd_count{{{served}}} 2");
    let deadline = Instant::now() + Duration::from_secs(10);
    let cp = loop {
        let text = scrape(&gw.client, &cp_url).await;
        if text.contains(&cost) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in [
        cost.clone(),
        format!("keel_request_tokens_count{{{served},gen_ai_token_type=\"output\"}} 2"),
        "keel_route_decisions_total{profile=\"AGENT\",kind=\"initialize\"} 1".to_owned(),
        "keel_route_decisions_total{profile=\"AGENT\",kind=\"retain\"} 1".to_owned(),
        "keel_pins_total{profile=\"AGENT\",event=\"created\"} 1".to_owned(),
        "keel_pins_total{profile=\"AGENT\",event=\"retained\"} 1".to_owned(),
        "keel_route_duration_seconds_count{profile=\"AGENT\"} 2".to_owned(),
        "keel_breaker_state{model=\"strong\",provider=\"alpha\",state=\"closed\"} 1".to_owned(),
        "keel_breaker_state{model=\"strong\",provider=\"alpha\",state=\"open\"} 0".to_owned(),
        "keel_route_refusals_total{reason=\"budget\"} 0".to_owned(),
        "keel_divergence_nudges_total{pattern=\"repeated_action\"} 0".to_owned(),
    ] {
        assert!(cp.contains(&line), "{line} missing from\n{cp}");
    }
    assert!(!cp.contains(conversation));
}
