use std::collections::HashMap;

use super::*;
use crate::config::parse;

fn capacity(keys: &str, load: &str) -> Capacity {
    let c = parse(&format!(
        r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
{load}
[[providers]]
name = "alpha"
api = "openai"
base_url = "http://127.0.0.1:9/v1"
keys = [{keys}]
"#
    ))
    .unwrap();
    Capacity::new(&c.catalog, c.load)
}

fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn in_flight_counts_up_and_down_and_heals_when_reports_are_lost() {
    let c = capacity(
        r#"{ ref = "a", max_in_flight = 5 }"#,
        "[load]\nin_flight_timeout = \"1s\"\n",
    );
    let t0 = Instant::now();
    for _ in 0..3 {
        c.started(0, 0, t0);
    }
    assert_eq!(c.snapshot(0, 0, t0).in_flight, 3);
    c.finished(0, 0);
    assert_eq!(c.snapshot(0, 0, t0).in_flight, 2);
    // Never negative.
    for _ in 0..5 {
        c.finished(0, 0);
    }
    assert_eq!(c.snapshot(0, 0, t0).in_flight, 0);
    // Reports lost: the entries expire.
    c.started(0, 0, t0);
    c.started(0, 0, t0);
    assert_eq!(c.snapshot(0, 0, t0 + Duration::from_secs(2)).in_flight, 0);
}

#[test]
fn pressure_follows_the_in_flight_limit_and_the_reserve() {
    // Limit 5, reserve 0.2: busy at 4, full at 5.
    let c = capacity(r#"{ ref = "a", max_in_flight = 5 }"#, "");
    let now = Instant::now();
    for n in 1..=5 {
        c.started(0, 0, now);
        let p = c.snapshot(0, 0, now).pressure;
        let want = match n {
            0..=3 => Pressure::Free,
            4 => Pressure::Busy,
            _ => Pressure::Full,
        };
        assert_eq!(p, want, "at {n} in flight");
    }
    assert!(Pressure::Full.admits(0));
    assert!(!Pressure::Full.admits(1));
    assert!(Pressure::Busy.admits(1));
    assert!(!Pressure::Busy.admits(2));
    assert!(Pressure::Free.admits(2));
}

#[test]
fn headroom_comes_from_rpm_tpm_and_reported_headers() {
    let c = capacity(r#"{ ref = "a", rpm = 10, tpm = 1000 }, { ref = "b" }"#, "");
    let now = Instant::now();
    assert_eq!(c.snapshot(0, 0, now).headroom, Some(1.0));
    assert_eq!(c.snapshot(0, 1, now).headroom, None, "no limits known");
    for _ in 0..5 {
        c.started(0, 0, now);
    }
    let h = c.snapshot(0, 0, now).headroom.unwrap();
    assert!((0.45..=0.55).contains(&h), "5 of 10 rpm used: {h}");
    c.observe(0, 0, 900, &HashMap::new(), false, now);
    let s = c.snapshot(0, 0, now);
    assert!(s.headroom.unwrap() <= 0.11, "900 of 1000 tpm used");
    assert_eq!(s.pressure, Pressure::Busy);

    // The provider's own headers, either API's names.
    c.observe(
        0,
        1,
        0,
        &headers(&[
            ("x-ratelimit-remaining-requests", "30"),
            ("x-ratelimit-limit-requests", "100"),
        ]),
        false,
        now,
    );
    assert_eq!(c.snapshot(0, 1, now).headroom, Some(0.3));
    c.observe(
        0,
        1,
        0,
        &headers(&[("anthropic-ratelimit-tokens-remaining", "0")]),
        true,
        now,
    );
    let s = c.snapshot(0, 1, now);
    assert_eq!(s.headroom, Some(0.0));
    assert_eq!(s.pressure, Pressure::Full);
    assert_eq!(s.rate_limited, 1);
    // Reported headroom is forgotten after a minute.
    assert_eq!(
        c.snapshot(0, 1, now + Duration::from_secs(61)).headroom,
        None
    );
}

#[test]
fn reported_share_takes_the_lowest_and_falls_back_to_configured_limits() {
    let h = headers(&[
        ("x-ratelimit-remaining-requests", "90"),
        ("x-ratelimit-remaining-tokens", "100"),
        ("x-ratelimit-limit-tokens", "1000"),
    ]);
    assert_eq!(reported_share(&h, Some(100), None), Some(0.1));
    assert_eq!(
        reported_share(&headers(&[("retry-after", "3")]), None, None),
        None
    );
    assert_eq!(
        reported_share(
            &headers(&[("x-ratelimit-remaining-requests", "90")]),
            None,
            None
        ),
        None,
        "no limit known: a positive remaining says nothing"
    );
}
