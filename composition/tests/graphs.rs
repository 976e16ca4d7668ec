//! Data-driven composition tests, in the manner of wac's own `tests/graphs/<case>/`:
//! - every real composition (`composition/*.wac`) must compose, and what it imports and exports
//!   must match `tests/golden/<name>.txt`;
//! - every case folder under `tests/graphs/` holds a `composition.wac` that must fail with the
//!   message in its `error.txt`.
//!
//! `BLESS=1 cargo test -p composition` rewrites the expected files after a deliberate change.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built components staged under their wac names, once per test run.
fn deps_dir() -> &'static Path {
    static DEPS: OnceLock<PathBuf> = OnceLock::new();
    DEPS.get_or_init(|| {
        let target = crate_dir().join("../target");
        let deps = target.join("wac-deps-tests");
        composition::stage_packages(&target.join("wasm32-wasip2/release"), &deps)
            .expect("the wasm components are built (run `cargo xtask build` first)");
        deps
    })
}

fn check_or_bless(expected_file: &Path, actual: &str) {
    if std::env::var_os("BLESS").is_some() {
        fs::write(expected_file, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(expected_file)
        .unwrap_or_else(|_| panic!("{} is missing; run with BLESS=1", expected_file.display()));
    assert_eq!(expected, actual, "differs from {}", expected_file.display());
}

#[test]
fn real_compositions_match_their_golden_files() {
    let files = composition::wac_files(crate_dir()).unwrap();
    assert!(!files.is_empty());
    for wac in files {
        let bytes = composition::compose(&wac, deps_dir())
            .unwrap_or_else(|e| panic!("{} does not compose: {e:#}", wac.display()));
        let name = wac.file_stem().unwrap().to_string_lossy();
        let golden = crate_dir().join(format!("tests/golden/{name}.txt"));
        check_or_bless(&golden, &composition::describe(&bytes).unwrap());
    }
}

#[test]
fn broken_compositions_fail_with_their_expected_errors() {
    let mut cases: Vec<_> = fs::read_dir(crate_dir().join("tests/graphs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 4);
    for case in cases {
        let wac = case.join("composition.wac");
        let error = match composition::compose(&wac, deps_dir()) {
            Ok(_) => panic!("{} composed, but it must fail", case.display()),
            Err(e) => format!("{e:#}\n"),
        };
        // Paths differ between machines; the message must not.
        let error = error.replace(&deps_dir().display().to_string(), "<deps>");
        let error = error.replace(&case.display().to_string(), "<case>");
        check_or_bless(&case.join("error.txt"), &error);
    }
}

#[test]
fn a_component_importing_our_interfaces_is_refused_by_name() {
    let receiver = fs::read(deps_dir().join("nano/receiver.wasm")).unwrap();
    let message = format!("{:#}", composition::check_imports(&receiver).unwrap_err());
    assert!(message.contains("nano:orders/store@0.1.0"), "{message}");
    assert!(message.contains("nano:orders/events@0.1.0"), "{message}");
    assert!(
        !message.contains("wasi:io"),
        "host interfaces are fine: {message}"
    );
}
