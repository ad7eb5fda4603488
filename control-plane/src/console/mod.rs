//! The operator console under `/ui/` on the control plane's HTTP port:
//! server-rendered HTML (maud), charts as inline SVG, no script beyond a
//! copy button. Pages: conversations (list.rs), one conversation
//! (conversation.rs), models and providers (health.rs), spend (spend.rs).
//!
//! Every `/ui/` request goes through [`authorize`] first. A person logs in
//! once through `/ui/login`, which keeps the token in an HTTP-only cookie;
//! scripts send `Authorization: Bearer` instead.

mod chart;
mod conversation;
mod health;
mod list;
mod spend;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, body::Incoming};
use maud::{DOCTYPE, Markup, html};

use crate::{
    auth::{AuthError, Credentials, Need},
    router::RouterState,
};

/// Cookie that carries the console token of a logged-in browser.
pub const COOKIE: &str = "keel_console";

/// Largest form body read (the login form).
const MAX_FORM_BYTES: usize = 4096;

type Reply = Response<Full<Bytes>>;

/// Serves one `/ui/` request.
pub async fn handle(
    req: Request<Incoming>,
    state: &RouterState,
    credentials: &Credentials,
) -> Reply {
    let path = req.uri().path().trim_end_matches('/');
    // The login form is reachable without a token, or nobody could log in.
    if path != "/ui/login"
        && let Err(denied) = authorize(req.headers(), credentials)
    {
        return denied;
    }
    let query = query(req.uri().query());
    match (req.method(), path) {
        (&Method::GET, "/ui" | "/ui/conversations") => list::page(state, &query),
        (&Method::GET, "/ui/conversation") => conversation::page(state, &query).await,
        (&Method::GET, "/ui/health") => health::page(state),
        (&Method::GET, "/ui/spend") => spend::page(state),
        (&Method::GET, "/ui/login") => login_form(None),
        (&Method::POST, "/ui/login") => login(req).await,
        _ => not_found("no such page"),
    }
}

/// The one gate of the console: every `/ui/` request but the login form
/// passes here before any page runs. With credentials configured, the
/// [`presented_token`] (header or login cookie) must be a `viewer`'s or an
/// `admin`'s; without one a browser is sent to the login form, a token of
/// another role gets 403.
#[allow(clippy::result_large_err)]
pub fn authorize(headers: &HeaderMap, credentials: &Credentials) -> Result<(), Reply> {
    if credentials.is_open() {
        return Ok(());
    }
    let authorization = presented_token(headers).map(|t| format!("Bearer {t}"));
    let checked = credentials
        .authenticate(authorization.as_deref().map(str::as_bytes))
        .and_then(|p| p.allow(Need::Read));
    match checked {
        Ok(()) => Ok(()),
        Err(AuthError::Unauthenticated) => Err(redirect("/ui/login")),
        Err(e @ AuthError::Forbidden(_)) => Err(html_page(
            StatusCode::FORBIDDEN,
            "Forbidden",
            html! { h1 { "Forbidden" } p { (e.to_string()) } p { a href="/ui/login" { "Log in with another token" } } },
        )),
    }
}

/// The token a request presents: `Authorization: Bearer …`, else the
/// login cookie.
pub fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
    })
}

fn login_form(error: Option<&str>) -> Reply {
    html_page(
        StatusCode::OK,
        "Log in",
        html! {
            h1 { "Log in" }
            @if let Some(e) = error { p.error { (e) } }
            form method="post" action="/ui/login" {
                label { "Token " input type="password" name="token" autocomplete="current-password"; }
                " " button type="submit" { "Log in" }
            }
            p.muted { "Scripts can send " code { "Authorization: Bearer <token>" } " instead." }
        },
    )
}

/// Keeps the posted token in an HTTP-only cookie and goes to the list.
async fn login(req: Request<Incoming>) -> Reply {
    let Ok(body) = Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
    else {
        return login_form(Some("the form is too large"));
    };
    let body = body.to_bytes();
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    // A cookie value may not hold these; tokens never do.
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
        return login_form(Some("enter a token"));
    }
    let cookie = format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict");
    let mut r = redirect("/ui/");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Decoded query parameters, in order.
pub(super) type Query = Vec<(String, String)>;

fn query(raw: Option<&str>) -> Query {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The first value of `key`, if not empty.
pub(super) fn param<'a>(q: &'a Query, key: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// `/ui/…?k=v&…`, encoded.
pub(super) fn link(path: &str, params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        s.append_pair(k, v);
    }
    let q = s.finish();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{q}")
    }
}

fn redirect(to: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub(super) fn not_found(what: &str) -> Reply {
    html_page(
        StatusCode::NOT_FOUND,
        "Not found",
        html! { h1 { "Not found" } p { (what) } },
    )
}

pub(super) fn internal(e: impl std::fmt::Display) -> Reply {
    tracing::error!(error = %e, "console page failed");
    html_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Error",
        html! { h1 { "Error" } p { "the session store is unavailable" } },
    )
}

/// A whole page: navigation, then `body`.
pub(super) fn html_page(status: StatusCode, title: &str, body: Markup) -> Reply {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Keel" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                nav {
                    strong { "Keel" }
                    a href="/ui/" { "Conversations" }
                    a href="/ui/health" { "Models & providers" }
                    a href="/ui/spend" { "Spend" }
                }
                main { (body) }
            }
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(page.into_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; form-action 'self'",
        ),
    );
    r
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub(super) fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    format!("{} {h:02}:{m:02}:{s:02}", date(secs / 86_400))
}

/// A UTC day number (days since the epoch) as `YYYY-MM-DD`.
pub(super) fn date(day: u64) -> String {
    // Civil from days (H. Hinnant's algorithm).
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

pub(super) fn usd(v: f64) -> String {
    format!("${v:.4}")
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
nav{display:flex;gap:18px;align-items:center;padding:10px 20px;background:#1d2330;color:#fff}
nav a{color:#cfd6e4;text-decoration:none}nav a:hover{color:#fff}
main{padding:16px 20px;max-width:1280px}
h1{font-size:20px;margin:6px 0 12px}h2{font-size:16px;margin:18px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e6ec;vertical-align:top}
th{background:#eef0f4;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.switch td{background:#fff6e0}tr.nudged td{background:#fdecec}
.badge{display:inline-block;padding:0 6px;border-radius:8px;background:#e3e6ec;font-size:12px}
.badge.warn{background:#f9d9a8}.badge.bad{background:#f3b5b5}.badge.ok{background:#c9ecd0}
.muted{color:#6b7385}.error{color:#a11}
form.filters{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin-bottom:12px}
input,select,button{font:inherit;padding:3px 6px}
pre{background:#fff;border:1px solid #e3e6ec;padding:8px;overflow:auto}
svg{background:#fff;border:1px solid #e3e6ec}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px}dt{color:#6b7385}dd{margin:0}
"#;

#[cfg(test)]
mod tests;
