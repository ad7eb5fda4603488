//! The sidecar fails static when the control plane is down or slow: a pinned
//! conversation keeps its model, a new one gets `--default-model`, responses
//! say `X-Keel-Degraded: true`, and reports are delivered once the control
//! plane is back — which then adopts the degraded conversation's model.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keel_testkit::{ControlPlane, FakeProvider, Sidecar};

fn catalog(fake: &FakeProvider) -> String {
    // AGENT picks strong-b; the operator's degraded default is strong-a.
    format!(
        "{}{}{}{}",
        alpha(fake),
        model("strong-a", 3, 3.0, 15.0),
        model("strong-b", 4, 5.0, 20.0),
        model("cheap", 1, 0.1, 0.4)
    )
}

/// `cfg` with the ephemeral listen addresses replaced by `cp`'s, to restart
/// on the same ports.
fn same_ports(cfg: &str, cp: &ControlPlane) -> String {
    cfg.replacen(
        "grpc_listen = \"127.0.0.1:0\"",
        &format!("grpc_listen = \"{}\"", cp.grpc),
        1,
    )
    .replacen(
        "http_listen = \"127.0.0.1:0\"",
        &format!("http_listen = \"{}\"", cp.http),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_down_then_back_keeps_pins_adopts_degraded_models_and_delivers_reports() {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp.path().join("data"), &catalog(&fake));
    let cp_dir = tmp.path().join("cp1");
    std::fs::create_dir_all(&cp_dir).unwrap();
    let mut cp = ControlPlane::start(&cp_dir, &cfg).await.unwrap();
    let url = cp.url();
    let args = ["--route-timeout", "2s", "--default-model", "strong-a"];
    let sc = Sidecar::start(tmp.path(), &url, &args, KEYS).await.unwrap();
    let client = reqwest::Client::new();
    let body = chat_body("auto", false);

    for _ in 0..3 {
        let r = post_chat(&client, &sc.url(), Some("p-1"), Some("AGENT"), &body).await;
        assert_eq!(header(&r, "x-keel-model"), "strong-b");
        assert!(r.headers().get("x-keel-degraded").is_none());
    }
    // A harness's side call (Claude Code, no tools) leaves the cached pin.
    let side_call = || {
        client
            .post(format!("{}/v1/chat/completions", sc.url()))
            .header("x-conversation-id", "p-1")
            .header("x-router-profile", "AGENT")
            .header("user-agent", "claude-cli/2.1.332 (external, cli)")
            .json(&body)
            .send()
    };
    let r = side_call().await.unwrap();
    assert_eq!(header(&r, "x-keel-decision-kind"), "side");
    let restart_cfg = same_ports(&cfg, &cp);
    // A graceful stop (a deploy): turn counters are flushed. (A crash keeps
    // every pin, see agent_pin.rs, but may lose the last 500 ms of counters.)
    assert!(cp.terminate().unwrap().success());

    // Down: the pinned conversation keeps its model, no request fails.
    for turn in 4..=6 {
        let r = post_chat(&client, &sc.url(), Some("p-1"), Some("AGENT"), &body).await;
        assert_eq!(
            r.status(),
            200,
            "turn {turn} served while the control plane is down"
        );
        assert_eq!(header(&r, "x-keel-degraded"), "true");
        assert_eq!(header(&r, "x-keel-model"), "strong-b");
        assert_eq!(header(&r, "x-keel-pinned"), "true");
    }
    // A side call while down: served by the cached pin, not a turn.
    let r = side_call().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-keel-degraded"), "true");
    assert_eq!(header(&r, "x-keel-decision-kind"), "side");
    assert_eq!(header(&r, "x-keel-model"), "strong-b");
    assert_eq!(header(&r, "x-keel-turn"), "0");
    // A new conversation goes to the operator's default model, and stays there.
    for _ in 0..2 {
        let r = post_chat(&client, &sc.url(), Some("n-1"), Some("AGENT"), &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-keel-degraded"), "true");
        assert_eq!(header(&r, "x-keel-model"), "strong-a");
    }

    // Back on the same ports: routing resumes within seconds.
    let cp_dir = tmp.path().join("cp2");
    std::fs::create_dir_all(&cp_dir).unwrap();
    let _cp = ControlPlane::start(&cp_dir, &restart_cfg).await.unwrap();
    let back = Instant::now();
    loop {
        let r = post_chat(&client, &sc.url(), None, Some("CHAT"), &body).await;
        assert_eq!(r.status(), 200);
        if r.headers().get("x-keel-degraded").is_none() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "still degraded 10 s after the control plane returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No silent switch: the degraded conversation keeps strong-a, now pinned.
    let r = post_chat(&client, &sc.url(), Some("n-1"), Some("AGENT"), &body).await;
    assert!(r.headers().get("x-keel-degraded").is_none());
    assert_eq!(header(&r, "x-keel-model"), "strong-a");
    assert_eq!(header(&r, "x-keel-pinned"), "true");
    let r = post_chat(&client, &sc.url(), Some("p-1"), Some("AGENT"), &body).await;
    assert_eq!(header(&r, "x-keel-model"), "strong-b");

    // The degraded turns were reported after the return: p-1 had 3 routed,
    // 3 degraded and 1 more routed turn (its side calls are no turns).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let conv = conversation(&url, "p-1").await;
        if conv.turns == 7 {
            assert!(conv.spend_usd > 0.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "p-1 has {} turns, expected 7",
            conv.turns
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let conv = conversation(&url, "n-1").await;
    assert_eq!(conv.pinned_model, "strong-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_control_plane_is_bypassed_after_the_route_deadline() {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp.path().join("data"), &catalog(&fake));
    let cp = ControlPlane::start(tmp.path(), &cfg).await.unwrap();
    let args = ["--route-timeout", "300ms", "--default-model", "strong-a"];
    let sc = Sidecar::start(tmp.path(), &cp.url(), &args, KEYS)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let body = chat_body("auto", false);
    // Warm the pin while the control plane answers (first call may be slow
    // on a loaded machine: retry until not degraded).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = post_chat(&client, &sc.url(), Some("s-1"), Some("AGENT"), &body).await;
        if r.headers().get("x-keel-degraded").is_none() {
            assert_eq!(header(&r, "x-keel-model"), "strong-b");
            break;
        }
        assert!(Instant::now() < deadline);
    }
    // Frozen control plane: requests still answered, promptly, on the pin.
    cp.signal("STOP").unwrap();
    let started = Instant::now();
    let r = post_chat(&client, &sc.url(), Some("s-1"), Some("AGENT"), &body).await;
    let waited = started.elapsed();
    cp.signal("CONT").unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-keel-degraded"), "true");
    assert_eq!(header(&r, "x-keel-model"), "strong-b");
    assert!(
        waited < Duration::from_secs(5),
        "bounded by the route deadline, took {waited:?}"
    );
}
