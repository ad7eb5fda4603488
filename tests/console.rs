//! The console's pages over real HTTP after real traffic (the browser test
//! in tests/ui drives the same pages in chromium).

mod common;

use std::time::{Duration, Instant};

use common::*;

async fn get(client: &reqwest::Client, url: &str) -> String {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    assert!(header(&r, "content-type").starts_with("text/html"));
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_conversations_their_timeline_health_and_spend() {
    let gw = Gateway::start(&model("strong", 3, 3.0, 15.0), &[]).await;
    for _ in 0..2 {
        let r = gw
            .chat(
                Some("console-<b>1</b>"),
                Some("AGENT"),
                &chat_body("auto", false),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let ui = format!("http://{}/ui", gw.cp.http);
    // Listed once its session is written behind (≤ 250 ms) and reported.
    let deadline = Instant::now() + Duration::from_secs(10);
    let list = loop {
        let page = get(&gw.client, &format!("{ui}/")).await;
        if page.contains("$0.") && page.contains("console-&lt;b&gt;1&lt;/b&gt;")
            || Instant::now() > deadline
        {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        list.contains("console-&lt;b&gt;1&lt;/b&gt;"),
        "escaped id listed: {list}"
    );
    assert!(!list.contains("<b>1</b>"));
    assert!(list.contains(">strong<"), "{list}");

    // Filters run on the server.
    let none = get(&gw.client, &format!("{ui}/?nudged=1")).await;
    assert!(none.contains("No live conversation matches."));
    let found = get(&gw.client, &format!("{ui}/?q=console-%3Cb%3E1%3C%2Fb%3E")).await;
    assert!(found.contains("console-&lt;b&gt;1&lt;/b&gt;"));

    // Charts once the turns' reports have completed their records.
    let one_url = format!("{ui}/conversation?id=console-%3Cb%3E1%3C%2Fb%3E");
    let one = loop {
        let page = get(&gw.client, &one_url).await;
        if page.contains("<svg") || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(one.contains("id=\"pinned-model\">strong<"), "{one}");
    assert!(one.contains("data-turn=\"1\"") && one.contains("data-turn=\"2\""));
    assert!(one.contains("keel.v1.Admin/GetConversation"));
    assert!(one.contains("<svg"));

    let health = get(&gw.client, &format!("{ui}/health")).await;
    assert!(health.contains("closed") && health.contains("alpha-main"));
    let spend = get(&gw.client, &format!("{ui}/spend")).await;
    assert!(spend.contains("default") && spend.contains("strong"));

    // A browser logs in once; the token is kept in an HTTP-only cookie.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{ui}/login"))
        .form(&[("token", "t0ken")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(header(&r, "set-cookie").starts_with("keel_console=t0ken;"));
    assert!(header(&r, "set-cookie").contains("HttpOnly"));

    let r = gw.client.get(format!("{ui}/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// The per-model table of the spend page.
fn model_table(page: &str) -> Option<&str> {
    let start = page.find("data-by=\"model\"")?;
    let len = page[start..].find("</table>")?;
    Some(&page[start..start + len])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_per_model_and_day_survives_a_control_plane_restart() {
    let fake = keel_testkit::FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        &tmp.path().join("data"),
        &format!("{}{}", alpha(&fake), model("strong", 3, 3.0, 15.0)),
    );
    let dir = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let client = reqwest::Client::new();
    let mut cp = keel_testkit::ControlPlane::start(&dir("cp1"), &cfg)
        .await
        .unwrap();
    let mut sc = keel_testkit::Sidecar::start(&dir("sc1"), &cp.url(), SIDECAR_ARGS, KEYS)
        .await
        .unwrap();
    for _ in 0..3 {
        let r = post_chat(
            &client,
            &sc.url(),
            Some("spend-1"),
            None,
            &chat_body("auto", false),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    // Counted once the three reports arrived.
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let page = get(&client, &format!("http://{}/ui/spend", cp.http)).await;
        let table = model_table(&page).map(str::to_owned);
        if table
            .as_deref()
            .is_some_and(|t| t.contains("<td class=\"n\">3</td>"))
            || Instant::now() > deadline
        {
            break table.expect("a per-model table");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(before.contains("<td>strong</td>"), "{before}");
    assert!(
        before.contains("<td class=\"n\">3</td>"),
        "3 requests: {before}"
    );
    assert!(
        !before.contains("$0.0000</td><td class=\"n\">3"),
        "spent: {before}"
    );

    assert!(sc.terminate().unwrap().success());
    assert!(cp.terminate().unwrap().success());
    let cp = keel_testkit::ControlPlane::start(&dir("cp2"), &cfg)
        .await
        .unwrap();
    let page = get(&client, &format!("http://{}/ui/spend", cp.http)).await;
    assert_eq!(model_table(&page), Some(before.as_str()), "kept on disk");
}
