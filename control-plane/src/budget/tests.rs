use super::*;

fn caps(usd: Option<f64>, turns: Option<u32>, tenant: Option<f64>) -> Caps {
    Caps {
        per_conversation_usd: usd,
        per_conversation_turns: turns,
        per_tenant_usd_per_day: tenant,
    }
}

fn used(turns: u32, spent: f64, tenant: f64) -> Usage {
    Usage {
        conversation: Some((turns, spent)),
        tenant_usd_today: tenant,
    }
}

#[test]
fn a_turn_fits_until_the_cap_is_reached() {
    let c = caps(Some(1.0), Some(3), None);
    assert!(check(&c, used(2, 0.5, 0.0)).is_ok());
    let e = check(&c, used(3, 0.5, 0.0)).unwrap_err();
    assert_eq!(e.cap, Cap::ConversationTurns);
    assert_eq!(e.remaining_turns, Some(0));
    assert_eq!(e.remaining_usd, Some(0.5));
    let e = check(&c, used(1, 1.2, 0.0)).unwrap_err();
    assert_eq!(e.cap, Cap::ConversationUsd);
    assert_eq!(e.remaining_usd, Some(0.0));
    assert_eq!(e.remaining_turns, Some(2));
}

#[test]
fn the_tenant_cap_applies_with_and_without_a_conversation() {
    let c = caps(Some(5.0), None, Some(10.0));
    let e = check(
        &c,
        Usage {
            conversation: None,
            tenant_usd_today: 10.0,
        },
    )
    .unwrap_err();
    assert_eq!(e.cap, Cap::TenantUsdPerDay);
    // The tighter USD cap gives the remaining amount.
    let e = check(&c, used(0, 4.0, 10.5)).unwrap_err();
    assert_eq!(e.cap, Cap::TenantUsdPerDay);
    assert_eq!(e.remaining_usd, Some(0.0));
    assert!(check(&caps(None, None, None), used(1_000, 1e9, 1e9)).is_ok());
}

#[test]
fn the_most_specific_cap_wins_and_run_time_beats_config() {
    let b = Budgets::new(caps(Some(1.0), Some(10), None), Overrides::default());
    let agent = caps(None, Some(50), None);
    assert_eq!(b.effective("AGENT", agent), caps(Some(1.0), Some(50), None));
    // Run time, every profile: beats `[budgets]`, not the profile's config.
    b.set("", caps(Some(3.0), Some(20), None), false);
    assert_eq!(b.effective("AGENT", agent), caps(Some(3.0), Some(50), None));
    assert_eq!(
        b.effective("CHAT", Caps::default()),
        caps(Some(3.0), Some(20), None)
    );
    // Run time for the profile beats everything; 0 removes the cap.
    b.set("AGENT", caps(Some(0.0), Some(60), None), false);
    assert_eq!(b.effective("AGENT", agent), caps(None, Some(60), None));
    // Reset drops the scope's run-time caps.
    let o = b.set("AGENT", Caps::default(), true);
    assert!(!o.profiles.contains_key("AGENT"));
    assert_eq!(b.effective("AGENT", agent), caps(Some(3.0), Some(50), None));
}

#[test]
fn tenant_spend_is_kept_per_day_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::SledStore::open(
        &dir.path().join("db"),
        1 << 20,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let spend = TenantSpend::default();
    spend.add(&store, "acme", 100, 0.25, 1).unwrap();
    spend.add(&store, "acme", 100, 0.5, 1).unwrap();
    assert_eq!(spend.today(&store, "acme", 100).unwrap().usd, 0.75);
    assert_eq!(
        spend.today(&store, "acme", 101).unwrap().usd,
        0.0,
        "a new day"
    );
    assert_eq!(spend.today(&store, "other", 100).unwrap().usd, 0.0);
    let fresh = TenantSpend::default();
    let day = fresh.today(&store, "acme", 100).unwrap();
    assert_eq!((day.usd, day.turns), (0.75, 2));
}
