use http::{HeaderMap, HeaderValue, header};

use super::*;

#[test]
fn dates_are_civil_utc() {
    assert_eq!(date(0), "1970-01-01");
    assert_eq!(date(19_723), "2024-01-01");
    assert_eq!(time(1_709_210_096_000), "2024-02-29 12:34:56");
}

#[test]
fn a_token_comes_from_the_header_or_the_login_cookie() {
    let mut h = HeaderMap::new();
    assert_eq!(presented_token(&h), None);
    h.insert(
        header::COOKIE,
        HeaderValue::from_static("other=1; keel_console=tok-cookie"),
    );
    assert_eq!(presented_token(&h), Some("tok-cookie"));
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer tok-header"),
    );
    assert_eq!(presented_token(&h), Some("tok-header"));
    assert!(
        authorize(&h, &Credentials::default()).is_ok(),
        "open without credentials"
    );
}

fn credential(name: &str, role: crate::auth::Role, token: &str) -> crate::auth::Credential {
    use sha2::Digest;
    crate::auth::Credential {
        name: name.into(),
        role,
        tenant: (role == crate::auth::Role::Sidecar).then(|| "t".into()),
        token_sha256: sha2::Sha256::digest(token.as_bytes()).into(),
    }
}

#[test]
fn with_credentials_the_console_needs_a_viewer_or_an_admin() {
    use crate::auth::Role;
    let creds = Credentials::new(&[
        credential("ops", Role::Viewer, "tok-viewer"),
        credential("boss", Role::Admin, "tok-admin"),
        credential("host", Role::Sidecar, "tok-sidecar"),
    ]);
    let with = |name, value: &str| {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    };
    let status = |h: &HeaderMap| match authorize(h, &creds) {
        Ok(()) => StatusCode::OK,
        Err(r) => r.status(),
    };
    assert_eq!(
        status(&HeaderMap::new()),
        StatusCode::SEE_OTHER,
        "to the login form"
    );
    assert_eq!(
        status(&with(header::COOKIE, "keel_console=wrong")),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        status(&with(header::COOKIE, "keel_console=tok-viewer")),
        StatusCode::OK
    );
    assert_eq!(
        status(&with(header::AUTHORIZATION, "Bearer tok-admin")),
        StatusCode::OK
    );
    assert_eq!(
        status(&with(header::AUTHORIZATION, "Bearer tok-sidecar")),
        StatusCode::FORBIDDEN,
        "a sidecar's token reads no other tenant's conversations"
    );
}

#[test]
fn links_encode_their_parameters() {
    assert_eq!(
        link(
            "/ui/conversation",
            &[("tenant", "a b"), ("id", "x/y&z"), ("skip", "")]
        ),
        "/ui/conversation?tenant=a+b&id=x%2Fy%26z"
    );
}

#[test]
fn svg_elements_are_closed_so_html_parsers_keep_them_siblings() {
    let labels = vec!["1".to_owned(), "2".to_owned()];
    let s = [chart::Series {
        name: "spend",
        color: "#000",
        values: vec![1.0, 2.0],
    }];
    let svg = chart::lines("t", &labels, &s, |v| v.to_string()).into_string();
    assert!(
        svg.contains("</polyline>") && svg.contains("</line>"),
        "{svg}"
    );
    let bars = chart::stacked_bars("t", &labels, &s, |v| v.to_string()).into_string();
    assert_eq!(
        bars.matches("<rect").count(),
        3,
        "legend and two bars: {bars}"
    );
}
