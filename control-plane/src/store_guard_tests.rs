use super::*;
use crate::{
    config::Config,
    server::{OpenStoreError, open_store},
};

fn config(path: &Path) -> Config {
    let mut c = crate::config::parse(
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    c.store.path = path.to_owned();
    c
}

/// `open_store`, again while sled still holds the lock of a handle just
/// dropped (it may, briefly: polled, not slept on).
fn open_when_unlocked(
    path: &Path,
    fresh: bool,
) -> Result<crate::server::OpenStore, OpenStoreError> {
    for _ in 0..100 {
        match open_store(&config(path), fresh) {
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
    panic!("{} stayed locked", path.display())
}

fn refusal(path: &Path) -> String {
    match open_when_unlocked(path, false) {
        Err(OpenStoreError::Damaged(d)) => d.to_string(),
        Err(e) => panic!("not a damage refusal: {e}"),
        Ok(_) => panic!("a damaged store at {} was opened", path.display()),
    }
}

fn open_and_close(path: &Path) {
    let (store, seal) = open_store(&config(path), false).unwrap();
    drop(store);
    seal.as_ref().expect("sled has a seal").close().unwrap();
}

#[test]
fn a_new_store_is_sealed_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    open_and_close(&path);
    let marker = std::fs::read_to_string(path.join(MARKER_FILE)).unwrap();
    assert_eq!(
        parse_marker(&marker),
        Some(2),
        "sealed at open and at close"
    );
    // sled may hold its lock briefly after drop: reopen until it lets go.
    let mut tries = 0;
    loop {
        match open_store(&config(&path), false) {
            Ok(_) => break,
            Err(OpenStoreError::Store(e)) if tries < 50 && e.to_string().contains("lock") => {}
            Err(e) => panic!("{e}"),
        }
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let marker = std::fs::read_to_string(path.join(MARKER_FILE)).unwrap();
    assert_eq!(parse_marker(&marker), Some(3));
}

#[test]
fn a_replaced_or_emptied_store_is_refused_with_the_path_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    open_and_close(&path);
    // The operator's "overwrite": sled's files replaced by a new empty store.
    for entry in std::fs::read_dir(&path).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap() != MARKER_FILE {
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
    let e = refusal(&path);
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("--fresh-store") && e.contains("backup"), "{e}");
    // --fresh-store moves it aside and starts empty.
    open_when_unlocked(&path, true).unwrap();
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("data.damaged-"));
    assert!(aside, "the damaged store was kept");
}

#[test]
fn garbage_and_foreign_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    open_and_close(&path);
    std::fs::write(path.join("db"), vec![0xA5u8; 64 * 1024]).unwrap();
    std::fs::write(path.join("conf"), b"not sled").unwrap();
    let e = refusal(&path);
    assert!(e.contains("damaged"), "{e}");

    let foreign = dir.path().join("home");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"hello").unwrap();
    assert!(refusal(&foreign).contains("holds no Keel store"));
}

#[test]
fn an_older_seal_than_the_marker_means_lost_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    open_and_close(&path);
    std::fs::write(path.join(MARKER_FILE), "keel-store 1\nseal 7\n").unwrap();
    assert!(refusal(&path).contains("lost writes"));
}

#[tokio::test]
async fn a_store_truncated_after_a_clean_stop_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let (store, seal) = open_store(&config(&path), false).unwrap();
    let now = crate::store::now_ms();
    for i in 0..2_000 {
        let key = crate::store::SessionKey::new("t", &format!("conversation-{i}"));
        store
            .update(&key, now, &mut |_| crate::store::Session {
                profile: "AGENT".into(),
                pinned_model: Some("strong".into()),
                turns: 3,
                created_ms: now,
                last_seen_ms: now,
                ..Default::default()
            })
            .unwrap();
    }
    store.flush().await.unwrap();
    drop(store);
    seal.as_ref().expect("sled has a seal").close().unwrap();
    drop(seal);
    let db = path.join("db");
    let len = std::fs::metadata(&db).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    let e = refusal(&path);
    assert!(e.contains("damaged"), "{e}");
}
