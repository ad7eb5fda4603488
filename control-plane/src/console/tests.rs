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
    assert!(authorize(&h).is_ok());
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
