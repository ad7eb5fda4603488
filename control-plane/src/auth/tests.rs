use http::HeaderMap;

use super::*;

fn credentials() -> Credentials {
    let c = |name: &str, role, tenant: Option<&str>, token: &str| Credential {
        name: name.into(),
        role,
        tenant: tenant.map(Into::into),
        token_sha256: Sha256::digest(token.as_bytes()).into(),
    };
    Credentials::new(&[
        c("acme-host", Role::Sidecar, Some("acme"), "tok-sidecar"),
        c("ops", Role::Admin, None, "tok-admin"),
        c("dash", Role::Viewer, None, "tok-viewer"),
    ])
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

#[test]
fn tokens_resolve_to_their_credential_and_nothing_else_does() {
    let creds = credentials();
    let p = creds.authenticate(Some(&bearer("tok-sidecar"))).unwrap();
    assert!(
        matches!(&p, Principal::Credential { name, role: Role::Sidecar, .. } if &**name == "acme-host")
    );
    assert!(creds.authenticate(Some(b"bearer tok-admin")).is_ok());
    for bad in [
        None,
        Some(&b"Bearer "[..]),
        Some(b"Bearer tok-sidecarx"),
        Some(b"Basic tok-admin"),
        Some(b"tok-admin"),
    ] {
        assert_eq!(creds.authenticate(bad), Err(AuthError::Unauthenticated));
    }
    assert_eq!(
        Credentials::default().authenticate(None),
        Ok(Principal::Anonymous)
    );
}

#[test]
fn roles_allow_their_calls_only() {
    let creds = credentials();
    let who = |t| creds.authenticate(Some(&bearer(t))).unwrap();
    let (sidecar, admin, viewer) = (who("tok-sidecar"), who("tok-admin"), who("tok-viewer"));
    for (p, route, read, write) in [
        (&sidecar, true, false, false),
        (&admin, false, true, true),
        (&viewer, false, true, false),
        (&Principal::Anonymous, true, true, true),
    ] {
        assert_eq!(p.allow(Need::Route).is_ok(), route, "{p:?}");
        assert_eq!(p.allow(Need::Read).is_ok(), read, "{p:?}");
        assert_eq!(p.allow(Need::Write).is_ok(), write, "{p:?}");
        assert!(p.allow(Need::Catalog).is_ok());
    }
    let e = viewer.allow(Need::Write).unwrap_err();
    assert!(e.to_string().contains("`dash`") && e.to_string().contains("admin"));
}

#[test]
fn a_sidecar_acts_for_its_own_tenant_only() {
    let creds = credentials();
    let sidecar = creds.authenticate(Some(&bearer("tok-sidecar"))).unwrap();
    assert_eq!(sidecar.tenant(""), Ok("acme"));
    assert_eq!(sidecar.tenant("acme"), Ok("acme"));
    assert!(matches!(
        sidecar.tenant("globex"),
        Err(AuthError::Forbidden(_))
    ));
    let admin = creds.authenticate(Some(&bearer("tok-admin"))).unwrap();
    assert_eq!(admin.tenant("globex"), Ok("globex"));
    assert_eq!(admin.tenant(""), Ok(keel::DEFAULT_TENANT));
}

#[test]
fn http_checks_the_authorization_header() {
    let creds = credentials();
    let mut headers = HeaderMap::new();
    assert_eq!(
        creds
            .check_http(&headers, Need::Read)
            .unwrap_err()
            .http_status(),
        http::StatusCode::UNAUTHORIZED
    );
    headers.insert("authorization", "Bearer tok-sidecar".parse().unwrap());
    assert_eq!(
        creds
            .check_http(&headers, Need::Read)
            .unwrap_err()
            .http_status(),
        http::StatusCode::FORBIDDEN
    );
    headers.insert("authorization", "Bearer tok-viewer".parse().unwrap());
    assert!(creds.check_http(&headers, Need::Read).is_ok());
}

#[test]
fn the_hex_helper_matches_sha256sum() {
    // printf %s secret | sha256sum
    assert_eq!(
        token_sha256_hex("secret"),
        "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
    );
}
