//! A control plane deployed centrally lets nobody in without a credential:
//! tokens map to roles and a sidecar's tenant, every gRPC call and
//! `/metrics` check them, names and batches are bounded, TLS (and mutual
//! TLS) protects the gRPC port, and an open control plane refuses to listen
//! on a non-loopback address.

mod common;

use std::path::Path;

use common::*;
use keel::pb::{
    self, GetConversationRequest, ReportBatch, RouteRequest, SetBudgetsRequest,
    admin_client::AdminClient, router_client::RouterClient,
};
use keel_testkit::{ControlPlane, FakeProvider, Pki, Sidecar, bin_path};
use serde_json::Value;
use tonic::{
    Code, Request,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

const SIDECAR_TOKEN: &str = "kt-sidecar-acme-0123456789";
const ADMIN_TOKEN: &str = "kt-admin-0123456789";
const VIEWER_TOKEN: &str = "kt-viewer-0123456789";

fn credentials() -> String {
    format!(
        r#"
[[credentials]]
name = "acme-host"
role = "sidecar"
tenant = "acme"
token_sha256 = "{}"

[[credentials]]
name = "ops"
role = "admin"
token_sha256 = "{}"

[[credentials]]
name = "dashboard"
role = "viewer"
token_sha256 = "{}"
"#,
        sha256_hex(SIDECAR_TOKEN),
        sha256_hex(ADMIN_TOKEN),
        sha256_hex(VIEWER_TOKEN)
    )
}

/// A config whose `[server]` table takes `server_extra`.
fn config_with(data: &Path, server_extra: &str, body: &str) -> String {
    format!(
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n{server_extra}\n\
         [store]\npath = \"{}\"\n{body}",
        data.display()
    )
}

fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

fn route_req(tenant: &str, conversation: &str) -> RouteRequest {
    RouteRequest {
        tenant: tenant.into(),
        conversation_id: conversation.into(),
        profile: "AGENT".into(),
        model: "auto".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_and_tenants_gate_every_call() {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}{}",
        alpha(&fake),
        model("strong", 3, 3.0, 15.0),
        credentials()
    );
    let cp = ControlPlane::start(
        tmp.path(),
        &config_with(&tmp.path().join("data"), "", &body),
    )
    .await
    .unwrap();
    let channel = Channel::from_shared(cp.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut router = RouterClient::new(channel.clone());
    let mut admin = AdminClient::new(channel);

    // No token, or a wrong one: UNAUTHENTICATED everywhere.
    for token in [None, Some("kt-guess")] {
        let e = router
            .route(with_token(route_req("acme", "c1"), token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let e = admin
            .set_budgets(with_token(SetBudgetsRequest::default(), token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let e = router
            .report(with_token(ReportBatch::default(), token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    }

    // The sidecar routes for its own tenant (empty means its own) only.
    let d = router
        .route(with_token(route_req("", "c1"), Some(SIDECAR_TOKEN)))
        .await
        .unwrap()
        .into_inner();
    assert!(d.pinned);
    let e = router
        .route(with_token(route_req("globex", "c1"), Some(SIDECAR_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("acme-host") && !e.message().contains(SIDECAR_TOKEN));
    // ...and may not read or change admin data, nor report for another tenant.
    let read = GetConversationRequest {
        tenant: "acme".into(),
        conversation_id: "c1".into(),
    };
    let e = admin
        .get_conversation(with_token(read.clone(), Some(SIDECAR_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let forged = ReportBatch {
        outcomes: vec![pb::Outcome {
            tenant: "globex".into(),
            success: true,
            ..Default::default()
        }],
    };
    let e = router
        .report(with_token(forged, Some(SIDECAR_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Viewer reads any tenant, writes nothing; admin writes.
    let c = admin
        .get_conversation(with_token(read.clone(), Some(VIEWER_TOKEN)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((c.tenant.as_str(), c.turns), ("acme", 1));
    let pause = SetBudgetsRequest {
        caps: Some(pb::BudgetCaps {
            per_conversation_turns: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = admin
        .set_budgets(with_token(pause.clone(), Some(VIEWER_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = router
        .route(with_token(route_req("acme", "c2"), Some(ADMIN_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "admin is not a sidecar");
    admin
        .set_budgets(with_token(SetBudgetsRequest::default(), Some(ADMIN_TOKEN)))
        .await
        .unwrap();

    // Bounded input: a 3.9 MB tenant and an 80k-outcome batch are refused
    // with short messages.
    let huge = "t".repeat(3_900_000);
    let e = router
        .route(with_token(route_req(&huge, "c1"), Some(SIDECAR_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().len() < 100, "{}", e.message());
    let flood = ReportBatch {
        outcomes: vec![pb::Outcome::default(); 80_000],
    };
    let e = router
        .report(with_token(flood, Some(SIDECAR_TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // HTTP: /healthz open, /metrics needs viewer or admin.
    let http = reqwest::Client::new();
    let metrics = format!("http://{}/metrics", cp.http);
    assert_eq!(
        http.get(format!("http://{}/healthz", cp.http))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = http.get(&metrics).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = http
        .get(&metrics)
        .bearer_auth(SIDECAR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(&metrics)
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A real sidecar with its token serves; one without is refused (502 in
    // the app's shape, not a silent fail-static).
    let sc = Sidecar::start(
        tmp.path(),
        &cp.url(),
        &[SIDECAR_ARGS, &["--tenant", "acme"]].concat(),
        &[KEYS, &[("KEEL_CONTROL_PLANE_TOKEN", SIDECAR_TOKEN)]].concat(),
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let r = post_chat(
        &client,
        &sc.url(),
        Some("c3"),
        Some("AGENT"),
        &chat_body("auto", false),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-keel-degraded").is_none());
    let anonymous = Sidecar::start(tmp.path(), &cp.url(), SIDECAR_ARGS, KEYS)
        .await
        .unwrap();
    let r = post_chat(
        &client,
        &anonymous.url(),
        Some("c4"),
        Some("AGENT"),
        &chat_body("auto", false),
    )
    .await;
    assert_eq!(r.status(), 502);
    let err: Value = r.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused this gateway"),
        "{err}"
    );
    assert!(!sc.logs().contains(SIDECAR_TOKEN) && !cp.logs().contains(SIDECAR_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls_protect_the_grpc_port() {
    let fake = FakeProvider::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let (cert, key) = pki.issue(tmp.path(), "server");
    let (client_cert, client_key) = pki.issue(tmp.path(), "client");
    let server = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"",
        cert.display(),
        key.display(),
        pki.ca.display()
    );
    let body = format!("{}{}", alpha(&fake), model("strong", 3, 3.0, 15.0));
    let cp = ControlPlane::start(
        tmp.path(),
        &config_with(&tmp.path().join("data"), &server, &body),
    )
    .await
    .unwrap();
    let url = format!("https://localhost:{}", cp.grpc.port());
    let ca = Certificate::from_pem(std::fs::read(&pki.ca).unwrap());
    let catalog = |tls: Option<ClientTlsConfig>, url: String| async move {
        let mut endpoint = Channel::from_shared(url).unwrap();
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).unwrap();
        }
        let channel = endpoint.connect().await?;
        AdminClient::new(channel)
            .get_catalog(pb::GetCatalogRequest {})
            .await
            .map_err(|s| anyhow::anyhow!("{s}"))?;
        anyhow::Ok(())
    };
    // Plaintext to the TLS port, or TLS without a client certificate: no.
    assert!(
        catalog(None, format!("http://127.0.0.1:{}", cp.grpc.port()))
            .await
            .is_err()
    );
    let no_identity = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .domain_name("localhost");
    assert!(catalog(Some(no_identity), url.clone()).await.is_err());
    let identity = Identity::from_pem(
        std::fs::read(&client_cert).unwrap(),
        std::fs::read(&client_key).unwrap(),
    );
    let full = ClientTlsConfig::new()
        .ca_certificate(ca)
        .identity(identity)
        .domain_name("localhost");
    catalog(Some(full), url.clone()).await.unwrap();

    // The sidecar over mutual TLS is routed (not degraded).
    let (ca_path, cert_path, key_path) = (
        pki.ca.display().to_string(),
        client_cert.display().to_string(),
        client_key.display().to_string(),
    );
    let args = [
        SIDECAR_ARGS,
        &[
            "--control-plane-ca",
            &ca_path,
            "--control-plane-cert",
            &cert_path,
            "--control-plane-key",
            &key_path,
        ],
    ]
    .concat();
    let sc = Sidecar::start(tmp.path(), &url, &args, KEYS).await.unwrap();
    let client = reqwest::Client::new();
    let r = post_chat(
        &client,
        &sc.url(),
        Some("t1"),
        Some("AGENT"),
        &chat_body("auto", false),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-keel-degraded").is_none());
    assert_eq!(
        conversation_over(&url, &pki, &client_cert, &client_key, "t1").await,
        1
    );

    // An https:// URL never falls back to plaintext: a sidecar that does not
    // trust the server's CA gets no decision and no catalog (503).
    let sc = Sidecar::start(tmp.path(), &url, SIDECAR_ARGS, KEYS)
        .await
        .unwrap();
    let r = post_chat(
        &client,
        &sc.url(),
        Some("t2"),
        Some("AGENT"),
        &chat_body("auto", false),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert!(
        sc.logs().contains("invalid peer certificate"),
        "{}",
        sc.logs()
    );
}

async fn conversation_over(url: &str, pki: &Pki, cert: &Path, key: &Path, id: &str) -> u32 {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ))
        .domain_name("localhost");
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    AdminClient::new(channel)
        .get_conversation(GetConversationRequest {
            tenant: String::new(),
            conversation_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .turns
}

#[test]
fn an_open_control_plane_refuses_a_non_loopback_address() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("keel.toml");
    let exposed = "[server]\ngrpc_listen = \"0.0.0.0:0\"\nhttp_listen = \"127.0.0.1:0\"\n";
    std::fs::write(&path, exposed).unwrap();
    let out = std::process::Command::new(bin_path("keel-control-plane"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("allow_unauthenticated") && err.contains("0.0.0.0"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_whose_store_was_replaced_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config_with(&data, "", "");
    let mut cp = ControlPlane::start(tmp.path(), &cfg).await.unwrap();
    assert!(cp.terminate().unwrap().success());
    // The store's files are replaced by an empty sled store's.
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "KEEL_STORE" {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
    let out = std::process::Command::new(bin_path("keel-control-plane"))
        .arg("--config")
        .arg(&cp.config_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
    assert!(
        err.contains(&data.display().to_string()) && err.contains("--fresh-store"),
        "{err}"
    );
}
