//! Budgets that pause instead of kill: a looping conversation hits its cap
//! (402, `budget_exceeded`, remaining amounts), raising the cap through
//! `Admin.SetBudgets` resumes it at once; decision records carry latency,
//! tokens and cost once their reports arrive.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keel::pb::{BudgetCaps, GetBudgetsRequest, SetBudgetsRequest, admin_client::AdminClient};
use keel_testkit::{ControlPlane, FakeProvider, Sidecar};
use serde_json::{Value, json};

async fn start(budgets: &str) -> (FakeProvider, tempfile::TempDir, ControlPlane, Sidecar) {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        &tmp.path().join("data"),
        &format!(
            "{budgets}\n[profiles.AGENT]\nquality_floor = 3\n{}{}",
            alpha(&fake),
            model("strong", 3, 3.0, 15.0)
        ),
    );
    let cp = ControlPlane::start(tmp.path(), &cfg).await.unwrap();
    let sc = Sidecar::start(tmp.path(), &cp.url(), SIDECAR_ARGS, KEYS)
        .await
        .unwrap();
    (fake, tmp, cp, sc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_cap_stops_a_loop_and_raising_it_resumes_the_conversation() {
    let (_fake, _tmp, cp, sc) = start("[budgets]\nper_conversation_turns = 3\n").await;
    let client = reqwest::Client::new();
    let body = chat_body("auto", false);
    for turn in 1..=3 {
        let r = post_chat(&client, &sc.url(), Some("loop-1"), Some("AGENT"), &body).await;
        assert_eq!(r.status(), 200, "turn {turn}");
    }
    // The fourth turn of the loop hits the cap: paused, not failed.
    let r = post_chat(&client, &sc.url(), Some("loop-1"), Some("AGENT"), &body).await;
    assert_eq!(r.status(), 402);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["type"], "budget_exceeded", "{err}");
    assert_eq!(err["error"]["code"], "conversation_turns", "{err}");
    assert_eq!(err["error"]["remaining_turns"], 0, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("3 of its 3 turns"), "{message}");

    // The Anthropic API gets its own shape.
    let r = client
        .post(format!("{}/v1/messages", sc.url()))
        .header("x-conversation-id", "loop-1")
        .header("x-router-profile", "AGENT")
        .json(&json!({"model": "auto", "max_tokens": 64,
            "messages": [{"role": "user", "content": "again"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["error"]["type"], "budget_exceeded", "{err}");
    // Both refusals are counted on the control plane's /metrics.
    let metrics = client
        .get(format!("http://{}/metrics", cp.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keel_route_refusals_total{reason=\"budget\"} 2"),
        "{metrics}"
    );

    // A refused turn is not a turn.
    let mut admin = AdminClient::connect(cp.url()).await.unwrap();
    let conv = conversation(&cp.url(), "loop-1").await;
    assert_eq!(conv.turns, 3);

    // Raise the cap at run time: the conversation resumes on its pin.
    let budgets = admin
        .set_budgets(SetBudgetsRequest {
            profile: String::new(),
            caps: Some(BudgetCaps {
                per_conversation_turns: Some(5),
                ..Default::default()
            }),
            reset: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        budgets.effective.and_then(|c| c.per_conversation_turns),
        Some(5)
    );
    let r = post_chat(&client, &sc.url(), Some("loop-1"), Some("AGENT"), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-keel-turn"), "4");
    assert_eq!(header(&r, "x-keel-decision-kind"), "retain");
    let got = admin
        .get_budgets(GetBudgetsRequest {
            profile: "AGENT".into(),
            tenant: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.effective.unwrap().per_conversation_turns, Some(5));
    assert_eq!(
        got.global_overrides.unwrap().per_conversation_turns,
        Some(5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_cap_pauses_and_decision_records_carry_tokens_and_cost() {
    let (_fake, _tmp, cp, sc) = start("").await;
    let client = reqwest::Client::new();
    let body = chat_body("auto", false);
    let mut admin = AdminClient::connect(cp.url()).await.unwrap();
    // Each turn costs 1843 in × $3/M + 41 out × $15/M ≈ $0.0061.
    admin
        .set_budgets(SetBudgetsRequest {
            profile: "AGENT".into(),
            caps: Some(BudgetCaps {
                per_conversation_usd: Some(0.01),
                ..Default::default()
            }),
            reset: false,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut served = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let r = post_chat(&client, &sc.url(), Some("spender"), Some("AGENT"), &body).await;
        if r.status() == 402 {
            break r.json::<Value>().await.unwrap();
        }
        assert_eq!(r.status(), 200);
        served += 1;
        assert!(Instant::now() < deadline, "the spend cap never applied");
        // Spend arrives with the report.
        reported(&cp.url(), "spender", served).await;
    };
    assert_eq!(served, 2, "$0.0061 then $0.0122: the third turn is refused");
    assert_eq!(refused["error"]["code"], "conversation_usd", "{refused}");
    assert_eq!(refused["error"]["remaining_usd"], 0.0, "{refused}");

    // The timeline: every decision completed by its report.
    let conv = conversation(&cp.url(), "spender").await;
    assert_eq!(conv.decisions.len(), 2);
    for d in &conv.decisions {
        let r = d.result.as_ref().expect("decision record completed");
        assert!(r.success);
        let usage = r.usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (1843, 41));
        assert_eq!(usage.cached_input_tokens, 1536);
        assert!((r.cost_usd - 0.006144).abs() < 1e-6, "{}", r.cost_usd);
        assert_eq!(r.provider, "alpha");
        assert!(!r.key_ref.is_empty());
        assert_eq!(r.attempts, 1);
    }
    assert!((conv.spend_usd - 2.0 * 0.006144).abs() < 1e-6);
    assert!((conv.cache_hit_ratio - 1536.0 / 1843.0).abs() < 1e-9);
    assert_eq!(
        conv.key_affinity,
        conv.decisions[1].result.as_ref().unwrap().key_ref
    );
    // The tenant's spend today includes the conversation's.
    let b = admin
        .get_budgets(GetBudgetsRequest {
            profile: "AGENT".into(),
            tenant: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(b.tenant_spend_today_usd >= conv.spend_usd - 1e-9);
    assert!(b.tenant_turns_today >= 2);

    // Raising the cap resumes it.
    admin
        .set_budgets(SetBudgetsRequest {
            profile: "AGENT".into(),
            caps: Some(BudgetCaps {
                per_conversation_usd: Some(1.0),
                ..Default::default()
            }),
            reset: false,
            ..Default::default()
        })
        .await
        .unwrap();
    let r = post_chat(&client, &sc.url(), Some("spender"), Some("AGENT"), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-keel-turn"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_conversation_gets_its_own_cap_and_the_others_keep_theirs() {
    let (_fake, _tmp, cp, sc) = start("[budgets]\nper_conversation_turns = 10\n").await;
    let client = reqwest::Client::new();
    let body = chat_body("auto", false);
    let mut admin = AdminClient::connect(cp.url()).await.unwrap();
    let cap = |id: &str, turns: u32, reset: bool| SetBudgetsRequest {
        conversation_id: id.into(),
        caps: Some(BudgetCaps {
            per_conversation_turns: Some(turns),
            ..Default::default()
        }),
        reset,
        ..Default::default()
    };

    // Bad scopes: a tenant cap for one conversation, a profile and a
    // conversation at once, a reset of a conversation that does not exist.
    let mut tenant_cap = cap("runaway", 2, false);
    tenant_cap.caps = Some(BudgetCaps {
        per_tenant_usd_per_day: Some(1.0),
        ..Default::default()
    });
    for req in [
        tenant_cap,
        SetBudgetsRequest {
            profile: "AGENT".into(),
            ..cap("runaway", 2, false)
        },
    ] {
        let e = admin.set_budgets(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    }
    let mut reset_unknown = cap("never-seen", 0, true);
    reset_unknown.caps = None;
    let e = admin.set_budgets(reset_unknown).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");

    // A cap set before the conversation starts: its first turn still
    // initializes and pins it, the second is over the cap.
    let got = admin
        .set_budgets(cap("planned", 1, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.conversation_turns, 0);
    assert_eq!(got.effective.unwrap().per_conversation_turns, Some(1));
    let r = post_chat(&client, &sc.url(), Some("planned"), Some("AGENT"), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-keel-turn"), "1");
    assert_eq!(header(&r, "x-keel-decision-kind"), "initialize");
    assert_eq!(header(&r, "x-keel-pinned"), "true");
    let r = post_chat(&client, &sc.url(), Some("planned"), Some("AGENT"), &body).await;
    assert_eq!(r.status(), 402);
    let conv = conversation(&cp.url(), "planned").await;
    assert_eq!(conv.turns, 1);
    assert_eq!(conv.profile, "AGENT");
    assert!(!conv.pinned_model.is_empty(), "{conv:?}");

    for id in ["runaway", "calm"] {
        let r = post_chat(&client, &sc.url(), Some(id), Some("AGENT"), &body).await;
        assert_eq!(r.status(), 200, "{id}");
    }
    // The runaway conversation alone is capped at 2 turns; it has taken 1.
    let got = admin
        .set_budgets(cap("runaway", 2, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.profile, "AGENT");
    assert_eq!(got.conversation_id, "runaway");
    assert_eq!(got.conversation_turns, 1);
    assert_eq!(
        got.conversation_overrides.unwrap().per_conversation_turns,
        Some(2)
    );
    assert_eq!(got.effective.unwrap().per_conversation_turns, Some(2));
    let r = post_chat(&client, &sc.url(), Some("runaway"), Some("AGENT"), &body).await;
    assert_eq!(r.status(), 200);
    let r = post_chat(&client, &sc.url(), Some("runaway"), Some("AGENT"), &body).await;
    assert_eq!(r.status(), 402);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "conversation_turns", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 of its 2 turns"), "{message}");
    // The other conversation keeps the configured cap of 10.
    for turn in 2..=3 {
        let r = post_chat(&client, &sc.url(), Some("calm"), Some("AGENT"), &body).await;
        assert_eq!(r.status(), 200, "calm turn {turn}");
    }

    // 0 lifts the turn cap for this conversation alone, the configured
    // one included: it resumes on its pin.
    admin.set_budgets(cap("runaway", 0, false)).await.unwrap();
    let r = post_chat(&client, &sc.url(), Some("runaway"), Some("AGENT"), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-keel-turn"), "3");
    assert_eq!(header(&r, "x-keel-decision-kind"), "retain");
    let got = admin
        .get_budgets(GetBudgetsRequest {
            conversation_id: "runaway".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.effective.and_then(|c| c.per_conversation_turns),
        None,
        "no turn cap for it"
    );
    assert_eq!(got.conversation_turns, 3);

    // A reset goes back to the profile's caps (the configured 10); with
    // caps, it replaces the conversation's.
    let got = admin
        .set_budgets(cap("runaway", 1, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.effective.unwrap().per_conversation_turns, Some(1));
    let mut reset = cap("runaway", 0, true);
    reset.caps = None;
    let got = admin.set_budgets(reset).await.unwrap().into_inner();
    assert!(got.conversation_overrides.is_none(), "{got:?}");
    assert_eq!(got.effective.unwrap().per_conversation_turns, Some(10));
    // Asking about an unknown conversation is NOT_FOUND.
    let e = admin
        .get_budgets(GetBudgetsRequest {
            conversation_id: "never-seen".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
}
