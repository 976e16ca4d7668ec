//! Every path the documentation names exists. A README that points at a moved folder is how a
//! newcomer gets lost, so a rename that forgets the docs fails here.
//!
//! Checked: relative link targets (resolved from the document's folder) and code spans that look
//! like a path in this repository (no spaces, a `/`, and a first segment that is a top-level folder).
//! `<name>` and `*` are wildcards and `{a,b}` alternatives; each must match at least one path.

use pulldown_cmark::{Event, Parser, Tag};
use std::path::{Path, PathBuf};

const DOCS: &[&str] = &[
    "README.md",
    "docs",
    "host/README.md",
    "deploy/README.md",
    "bench/README.md",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = Vec::new();
    for entry in DOCS {
        let path = root.join(entry);
        if path.is_dir() {
            for file in std::fs::read_dir(&path).unwrap() {
                let file = file.unwrap().path();
                if file.extension().is_some_and(|e| e == "md") {
                    docs.push(file);
                }
            }
        } else if path.exists() {
            docs.push(path);
        }
    }
    docs
}

/// Top-level folders a code span may start with (build output and hidden folders are not docs' business).
fn top_level_folders(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            (e.path().is_dir() && !name.starts_with('.') && name != "target").then_some(name)
        })
        .collect()
}

/// `a/{b,c}/d` -> `a/b/d`, `a/c/d` (nested braces are not used in the docs).
fn expand_braces(pattern: &str) -> Vec<String> {
    match (pattern.find('{'), pattern.find('}')) {
        (Some(open), Some(close)) if open < close => pattern[open + 1..close]
            .split(',')
            .flat_map(|alt| {
                expand_braces(&format!(
                    "{}{alt}{}",
                    &pattern[..open],
                    &pattern[close + 1..]
                ))
            })
            .collect(),
        _ => vec![pattern.to_string()],
    }
}

fn wildcards(pattern: &str) -> String {
    let mut out = String::new();
    let mut in_name = false;
    for c in pattern.chars() {
        match c {
            '<' => {
                in_name = true;
                out.push('*');
            }
            '>' => in_name = false,
            _ if in_name => {}
            _ => out.push(c),
        }
    }
    out
}

fn matches_something(base: &Path, pattern: &str) -> bool {
    expand_braces(pattern).iter().all(|p| {
        let full = base.join(wildcards(p));
        glob::glob(&full.to_string_lossy())
            .map(|mut paths| paths.next().is_some())
            .unwrap_or(false)
    })
}

/// A code span names a repository path when it has no spaces, contains `/` and starts with a
/// top-level folder (so `POST /order` or `wasi:http/...` are not paths).
fn repo_path(span: &str, folders: &[String]) -> Option<String> {
    let span = span.trim_end_matches([':', ',', '.']);
    if span.contains(char::is_whitespace) || !span.contains('/') || span.contains("://") {
        return None;
    }
    let first = span.split('/').next()?;
    folders.iter().any(|f| f == first).then(|| span.to_string())
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = root();
    let folders = top_level_folders(&root);
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in documents(&root) {
        let text = std::fs::read_to_string(&doc).unwrap();
        let here = doc.parent().unwrap();
        let name = doc.strip_prefix(&root).unwrap().display().to_string();
        for event in Parser::new(&text) {
            let (base, target) = match event {
                Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                    let url = dest_url.to_string();
                    if url.contains("://") || url.starts_with('#') || url.starts_with("mailto:") {
                        continue;
                    }
                    let path = url.split('#').next().unwrap().to_string();
                    (here.to_path_buf(), path)
                }
                Event::Code(span) => match repo_path(&span, &folders) {
                    Some(path) => (root.clone(), path),
                    None => continue,
                },
                _ => continue,
            };
            checked += 1;
            if !matches_something(&base, &target) {
                missing.push(format!("{name}: {target}"));
            }
        }
    }
    println!("{checked} paths checked");
    assert!(
        checked > 50,
        "too few paths found ({checked}): is the parser reading the docs?"
    );
    assert!(
        missing.is_empty(),
        "paths named in the docs that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_path_rules_catch_what_they_should() {
    let folders = vec!["host".to_string(), "components".to_string()];
    assert_eq!(
        repo_path("host/src/app.rs", &folders).as_deref(),
        Some("host/src/app.rs")
    );
    assert_eq!(repo_path("POST /order", &folders), None);
    assert_eq!(repo_path("wasi:http/incoming-handler", &folders), None);
    assert_eq!(repo_path("redis://host/0", &folders), None);
    assert_eq!(
        expand_braces("a/{b,c}/d"),
        vec!["a/b/d".to_string(), "a/c/d".to_string()]
    );
    assert_eq!(wildcards("apps/<app>/spin.toml"), "apps/*/spin.toml");
    let root = root();
    assert!(matches_something(&root, "apps/<app>/spin.toml"));
    assert!(!matches_something(&root, "components/http-reply"));
}
