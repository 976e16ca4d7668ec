//! The capability alone: the backends behind both interfaces, without an engine.

use super::*;
use crate::block_on;

fn sqlite_memory() -> Store {
    Store::Sqlite(Arc::new(SqliteStore::open("default", None).unwrap()))
}

#[test]
fn sqlite_round_trip_and_keys() {
    block_on(async {
        let s = sqlite_memory();
        assert_eq!(s.get("a").await.unwrap(), None);
        s.set("a", b"1").await.unwrap();
        s.set("a", b"2").await.unwrap();
        s.set("b", b"3").await.unwrap();
        assert_eq!(s.get("a").await.unwrap().as_deref(), Some(&b"2"[..]));
        assert!(s.exists("b").await.unwrap());
        let mut keys = s.get_keys().await.unwrap();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        s.delete("a").await.unwrap();
        s.delete("a").await.unwrap();
        assert!(!s.exists("a").await.unwrap());
    });
}

#[test]
fn labels_in_one_file_do_not_see_each_other() {
    let dir = tempdir();
    let path = dir.join("kv.db");
    let a = SqliteStore::open("a", Some(&path)).unwrap();
    let b = SqliteStore::open("b", Some(&path)).unwrap();
    a.set("k", b"from a").unwrap();
    assert_eq!(b.get("k").unwrap(), None);
}

#[test]
fn sqlite_file_survives_a_reopen() {
    let dir = tempdir();
    let path = dir.join("nested/.spin/sqlite_key_value.db");
    SqliteStore::open("default", Some(&path))
        .unwrap()
        .set("order:1", b"kept")
        .unwrap();
    let again = SqliteStore::open("default", Some(&path)).unwrap();
    assert_eq!(again.get("order:1").unwrap().as_deref(), Some(&b"kept"[..]));
}

#[test]
fn increments_are_atomic_across_threads() {
    let store = Arc::new(SqliteStore::open("default", None).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| store.increment("claim:k", 1).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        (1..=400).collect::<Vec<_>>(),
        "every caller saw its own value"
    );
    // Spin's encoding: 8 little-endian bytes.
    assert_eq!(
        store.get("claim:k").unwrap(),
        Some(400i64.to_le_bytes().to_vec())
    );
}

#[test]
fn increment_of_a_non_counter_is_an_error_not_a_panic() {
    let store = SqliteStore::open("default", None).unwrap();
    store.set("k", b"text").unwrap();
    assert!(store.increment("k", 1).is_err());
}

#[test]
fn sqlite_swap_is_spin_s_swap() {
    let store = SqliteStore::open("default", None).unwrap();
    // Absent old value: an upsert, even when the key exists by now (Spin 3.6.3 does this).
    store.set("k", b"someone else").unwrap();
    assert!(store.swap_if("k", None, b"mine").unwrap());
    assert_eq!(store.get("k").unwrap().as_deref(), Some(&b"mine"[..]));
    // Present old value: only if unchanged.
    assert!(!store.swap_if("k", Some(b"stale"), b"x").unwrap());
    assert!(store.swap_if("k", Some(b"mine"), b"x").unwrap());
}

#[test]
fn default_store_is_a_file_under_the_state_dir_unless_configured() {
    let none = BTreeMap::new();
    let beside = Locations {
        runtime_config_dir: None,
        state_dir: Some("/app/.spin".into()),
    };
    assert_eq!(
        effective_configs(&none, &beside)["default"],
        StoreConfig::Spin {
            path: Some("/app/.spin/sqlite_key_value.db".into())
        }
    );
    let memory = Locations::default();
    assert_eq!(
        effective_configs(&none, &memory)["default"],
        StoreConfig::Spin { path: None }
    );
}

#[test]
fn a_component_opens_only_what_it_lists() {
    let configs = effective_configs(&BTreeMap::new(), &Locations::default());
    let app = KeyValueApp::new(&configs, ["default".to_string()]).unwrap();
    let instance = KeyValueInstance::new(app.component(&["default".into()]));
    assert!(instance.allowed_store("default").is_some());
    assert!(instance.allowed_store("other").is_none());
    let none = KeyValueInstance::new(app.component(&[]));
    assert!(none.allowed_store("default").is_none());
}

#[test]
fn an_undefined_label_fails_start_up_with_what_to_do() {
    let configs = effective_configs(&BTreeMap::new(), &Locations::default());
    let e = KeyValueApp::new(&configs, ["cache".to_string()])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("[key_value_store.cache]"), "{e}");
}

#[test]
fn redis_urls_are_checked_and_passwords_hidden() {
    let bad = StoreConfig::Redis {
        url: "http://u:hunter2@x".into(),
    };
    let e = bad.validate("default").unwrap_err().to_string();
    assert!(e.contains("redis://"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "nanohost-kv-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
