//! The activity index: newest first, moved on each write, paged by cursor,
//! filtered, and dropped with its session.

use std::time::Duration;

use super::{ListBy, SessionKey, SessionStore, SledStore};

const HOUR_MS: u64 = 3_600_000;

fn touch(store: &SledStore, tenant: &str, id: &str, now: u64, model: &str) {
    store
        .update(&SessionKey::new(tenant, id), now, &mut |cur| {
            let mut s = cur.cloned().unwrap_or_default();
            s.turns += 1;
            s.last_seen_ms = now;
            s.profile = "AGENT".into();
            s.pinned_model = Some(model.to_owned());
            s
        })
        .unwrap();
}

fn ids(store: &SledStore, keep: &dyn Fn(&super::ConversationSummary) -> bool) -> Vec<String> {
    let page = store
        .list_conversations(Default::default(), keep, None, 100, 10_000)
        .unwrap();
    page.items.into_iter().map(|s| s.conversation_id).collect()
}

#[tokio::test]
async fn conversations_are_listed_newest_first_and_move_when_active_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20, Duration::from_millis(HOUR_MS)).unwrap();
    touch(&store, "t", "a", 1_000, "small");
    touch(&store, "t", "b", 2_000, "strong");
    touch(&store, "u", "c", 3_000, "small");
    store.flush().await.unwrap();
    assert_eq!(ids(&store, &|_| true), ["c", "b", "a"]);

    // `a` is active again: it moves to the top, listed once.
    touch(&store, "t", "a", 4_000, "small");
    store.flush().await.unwrap();
    assert_eq!(ids(&store, &|_| true), ["a", "c", "b"]);
    let page = store
        .list_conversations(Default::default(), &|_| true, None, 1, 10_000)
        .unwrap();
    let a = &page.items[0];
    assert_eq!(
        (a.tenant.as_str(), a.turns, a.last_seen_ms),
        ("t", 2, 4_000)
    );
    assert_eq!(a.pinned_model.as_deref(), Some("small"));

    // Pages go on from their cursor without repeating or skipping.
    let next = page.next.expect("more");
    let page = store
        .list_conversations(Default::default(), &|_| true, Some(&next), 1, 10_000)
        .unwrap();
    assert_eq!(page.items[0].conversation_id, "c");
    let page = store
        .list_conversations(
            Default::default(),
            &|_| true,
            page.next.as_deref(),
            5,
            10_000,
        )
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next.is_none());

    // Filters see the summary.
    assert_eq!(
        ids(&store, &|s| s.pinned_model.as_deref() == Some("small")),
        ["a", "c"]
    );
    assert_eq!(ids(&store, &|s| s.tenant == "t"), ["a", "b"]);

    // A degraded turn marks the conversation from its next write on, and
    // the mark stays as the entry moves.
    store.mark_degraded(&SessionKey::new("t", "b"));
    touch(&store, "t", "b", 5_000, "strong");
    store.flush().await.unwrap();
    touch(&store, "t", "b", 6_000, "strong");
    store.flush().await.unwrap();
    assert_eq!(ids(&store, &|s| s.degraded), ["b"]);
}

#[tokio::test]
async fn idle_conversations_are_not_listed_and_leave_the_index_when_swept() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20, Duration::from_millis(HOUR_MS)).unwrap();
    touch(&store, "t", "old", 1_000, "small");
    touch(&store, "t", "new", HOUR_MS + 500, "small");
    store.flush().await.unwrap();
    let now = HOUR_MS + 1_500;
    let page = store
        .list_conversations(Default::default(), &|_| true, None, 10, now)
        .unwrap();
    let listed: Vec<_> = page.items.iter().map(|s| &s.conversation_id).collect();
    assert_eq!(listed, ["new"]);
    assert_eq!(store.sweep(now).unwrap(), 1);
    assert_eq!(store.activity_tree().len(), 1);
    // By tenant, profile and model: the live one's three entries.
    assert_eq!(store.activity_by_tree().len(), 3);
}

#[tokio::test]
async fn a_store_without_the_index_is_indexed_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), 8 << 20, Duration::from_millis(HOUR_MS)).unwrap();
        touch(&store, "t", "a", 1_000, "small");
        touch(&store, "t", "b", 2_000, "small");
        store.flush().await.unwrap();
        store.activity_tree().clear().unwrap();
        store.sled().flush().unwrap();
    }
    let store = super::tests::reopen(dir.path());
    assert_eq!(ids(&store, &|_| true), ["b", "a"]);
}

#[tokio::test]
async fn a_store_without_the_index_by_field_is_indexed_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), 8 << 20, Duration::from_millis(HOUR_MS)).unwrap();
        touch(&store, "t", "a", 1_000, "small");
        touch(&store, "u", "b", 2_000, "strong");
        store.flush().await.unwrap();
        store.activity_by_tree().clear().unwrap();
        store.sled().flush().unwrap();
    }
    let store = super::tests::reopen(dir.path());
    assert_eq!(store.activity_by_tree().len(), 6);
    let by = ListBy {
        model: Some("small"),
        ..ListBy::default()
    };
    let page = store
        .list_conversations(by, &|_| true, None, 10, 10_000)
        .unwrap();
    let listed: Vec<_> = page.items.iter().map(|s| &s.conversation_id).collect();
    assert_eq!(listed, ["a"]);
    assert!(page.next.is_none());
}

#[tokio::test]
async fn a_filtered_list_is_newest_first_by_minute_and_entries_move_only_across_minutes() {
    const MIN: u64 = super::activity_by::MINUTE_MS;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20, Duration::from_millis(HOUR_MS)).unwrap();
    touch(&store, "t", "a", MIN + 1_000, "small");
    touch(&store, "t", "b", 2 * MIN + 1_000, "small");
    touch(&store, "t", "c", 3 * MIN + 1_000, "small");
    store.flush().await.unwrap();
    let by = ListBy {
        tenant: Some("t"),
        ..ListBy::default()
    };
    let pages = |store: &SledStore| {
        let (mut got, mut cursor) = (Vec::new(), None::<Vec<u8>>);
        loop {
            let page = store
                .list_conversations(by, &|_| true, cursor.as_deref(), 1, 4 * MIN)
                .unwrap();
            got.extend(page.items.into_iter().map(|s| (s.conversation_id, s.turns)));
            match page.next {
                Some(next) => cursor = Some(next),
                None => return got,
            }
        }
    };
    let t = |id: &str, turns| (id.to_owned(), turns);
    assert_eq!(pages(&store), [t("c", 1), t("b", 1), t("a", 1)]);

    // A turn in the same minute leaves the entries by field where they are
    // (only the summary changes); one in a later minute moves them.
    let keys = |store: &SledStore| -> Vec<_> {
        store
            .activity_by_tree()
            .iter()
            .keys()
            .map(Result::unwrap)
            .collect()
    };
    let before = keys(&store);
    touch(&store, "t", "a", MIN + 50_000, "small");
    store.flush().await.unwrap();
    assert_eq!(keys(&store), before);
    assert_eq!(pages(&store), [t("c", 1), t("b", 1), t("a", 2)]);
    touch(&store, "t", "a", 3 * MIN + 2_000, "small");
    store.flush().await.unwrap();
    assert_ne!(keys(&store), before);
    assert_eq!(keys(&store).len(), before.len());
    assert_eq!(pages(&store), [t("a", 3), t("c", 1), t("b", 1)]);
}

#[tokio::test]
async fn the_index_by_exact_time_of_an_earlier_version_is_replaced_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), 8 << 20, Duration::from_millis(HOUR_MS)).unwrap();
        touch(&store, "t", "a", 1_000, "small");
        store.flush().await.unwrap();
        let old = store
            .sled()
            .open_tree(super::activity_by::OLD_TREE)
            .unwrap();
        old.insert(b"m\x00\x05small-stale", &[]).unwrap();
        store.sled().flush().unwrap();
    }
    let store = super::tests::reopen(dir.path());
    let names = store.sled().tree_names();
    assert!(!names.iter().any(|n| n == super::activity_by::OLD_TREE));
    assert_eq!(store.activity_by_tree().len(), 3);
}

#[tokio::test]
async fn an_entry_left_at_another_minute_does_not_list_its_session_twice() {
    use super::activity_by::{MINUTE_MS, TENANT, field_prefix, minute};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20, Duration::from_millis(HOUR_MS)).unwrap();
    touch(&store, "t", "a", 3 * MINUTE_MS + 1_000, "small");
    store.flush().await.unwrap();
    // What a crash between writing the session and moving its entries
    // leaves: an entry at the minute before.
    let session_key = SessionKey::new("t", "a");
    let mut stale = field_prefix(TENANT, b"t").unwrap();
    stale.extend_from_slice(&(!minute(2 * MINUTE_MS + 5)).to_be_bytes());
    stale.extend_from_slice(session_key.as_bytes());
    store.activity_by_tree().insert(stale, &[]).unwrap();
    let by = ListBy {
        tenant: Some("t"),
        ..ListBy::default()
    };
    let page = store
        .list_conversations(by, &|_| true, None, 10, 4 * MINUTE_MS)
        .unwrap();
    let listed: Vec<_> = page.items.iter().map(|s| &s.conversation_id).collect();
    assert_eq!(listed, ["a"]);
}

#[tokio::test]
async fn entries_by_field_move_even_when_the_activity_entry_is_missing() {
    const MIN: u64 = super::activity_by::MINUTE_MS;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20, Duration::from_millis(HOUR_MS)).unwrap();
    touch(&store, "t", "a", MIN + 1_000, "small");
    store.flush().await.unwrap();
    // An activity index out of step with its sessions: the old record
    // still says where the entries by field are.
    store.activity_tree().clear().unwrap();
    touch(&store, "t", "a", 3 * MIN + 1_000, "small");
    store.flush().await.unwrap();
    assert_eq!(store.activity_by_tree().len(), 3);
    assert_eq!(store.activity_tree().len(), 1);
}
