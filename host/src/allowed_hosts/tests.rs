//! Runs the table in `spin_cases.toml`: every case, reporting every mismatch at once.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::manifest::VariableDecl;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    vars: BTreeMap<String, String>,
    entry: Vec<Entry>,
    list: Vec<List>,
    check: Vec<Check>,
    expand: Vec<Expand>,
    url: Vec<UrlCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    from: String,
    name: String,
    entry: String,
    parses_as: Option<String>,
    #[serde(default)]
    error: bool,
    error_lacks: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct List {
    from: String,
    name: String,
    entries: Vec<String>,
    error: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    from: String,
    name: String,
    entries: Vec<String>,
    /// The app's components, for `*.spin.internal`.
    #[serde(default)]
    component_ids: Vec<String>,
    #[serde(default)]
    allow: Vec<Target>,
    #[serde(default)]
    deny: Vec<Target>,
}

/// A list as parsed for an app with `component_ids`: every entry it becomes, in order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expand {
    from: String,
    name: String,
    entries: Vec<String>,
    component_ids: Vec<String>,
    parses_as: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Target {
    Url(String),
    WithScheme(String, String),
}

impl Target {
    fn url_and_scheme(&self) -> (&str, String) {
        match self {
            Target::Url(u) => (u, u.split_once("://").map(|(s, _)| s).unwrap_or("").into()),
            Target::WithScheme(u, s) => (u, s.clone()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlCase {
    from: String,
    name: String,
    url: String,
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn table() -> Table {
    toml::from_str(include_str!("spin_cases.toml")).expect("spin_cases.toml parses")
}

fn resolver(vars: &BTreeMap<String, String>) -> Resolver {
    let decls = vars
        .iter()
        .map(|(k, v)| {
            let decl = VariableDecl {
                default: Some(v.clone()),
                required: false,
                secret: false,
                description: None,
            };
            (k.clone(), decl)
        })
        .collect();
    Resolver::new(&decls, |_| None).unwrap()
}

/// `<scheme>://<host>:<port>`, each part as parsed: what Spin's tests compare field by field.
fn describe(h: &AllowedHost) -> String {
    let scheme = h.scheme.as_deref().unwrap_or("*");
    let host = match &h.host {
        HostPattern::Any => "*".to_string(),
        HostPattern::AnySubdomain(suffix) => format!("*{suffix}"),
        HostPattern::ToSelf => "self".to_string(),
        HostPattern::Literal(host) => host.to_string(),
        HostPattern::Cidr(net) => net.to_string(),
    };
    let port = match &h.port {
        PortPattern::Any => "*".to_string(),
        PortPattern::Port(p) => p.to_string(),
        PortPattern::Range(a, b) => format!("{a}..{b}"),
    };
    format!("{scheme}://{host}:{port}")
}

fn check_origin(from: &str, name: &str) {
    assert!(
        matches!(from, "spin" | "nanohost"),
        "{name}: from = {from:?}"
    );
}

#[test]
fn table_of_cases() {
    let table = table();
    let vars = resolver(&table.vars);
    let spin_cases = table.entry.iter().filter(|c| c.from == "spin").count()
        + table.list.iter().filter(|c| c.from == "spin").count()
        + table.check.iter().filter(|c| c.from == "spin").count()
        + table.expand.iter().filter(|c| c.from == "spin").count()
        + table.url.iter().filter(|c| c.from == "spin").count();
    assert!(
        spin_cases >= 40,
        "the Spin cases are missing from spin_cases.toml"
    );
    let mut failures = Vec::new();
    entry_cases(&table, &vars, &mut failures);
    list_cases(&table, &vars, &mut failures);
    check_cases(&table, &vars, &mut failures);
    expand_cases(&table, &vars, &mut failures);
    url_cases(&table, &mut failures);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// One entry each: parsed as described, or refused (without showing a secret).
fn entry_cases(table: &Table, vars: &Resolver, failures: &mut Vec<String>) {
    for case in &table.entry {
        check_origin(&case.from, &case.name);
        let mut fail = |what: String| {
            failures.push(format!(
                "[{}] {} ({:?}): {what}",
                case.from, case.name, case.entry
            ))
        };
        match (
            AllowedHosts::parse(std::slice::from_ref(&case.entry), vars, &[]),
            case.error,
        ) {
            (Ok(h), true) => fail(format!(
                "parsed as {}, expected an error",
                describe(&h.hosts[0])
            )),
            (Err(e), true) => {
                let message = format!("{e:#}");
                if let Some(secret) = case.error_lacks.as_deref() {
                    if message.contains(secret) {
                        fail(format!("the error shows {secret:?}: {message}"));
                    }
                }
            }
            (Err(e), false) => fail(format!("refused: {e:#}")),
            (Ok(h), false) => {
                let got = describe(&h.hosts[0]);
                match &case.parses_as {
                    Some(want) if *want == got => {}
                    want => fail(format!("parsed as {got}, expected {want:?}")),
                }
            }
        }
    }
}

/// Whole lists: refused or not.
fn list_cases(table: &Table, vars: &Resolver, failures: &mut Vec<String>) {
    for case in &table.list {
        check_origin(&case.from, &case.name);
        if AllowedHosts::parse(&case.entries, vars, &[]).is_err() != case.error {
            failures.push(format!(
                "[{}] {}: error should be {}",
                case.from, case.name, case.error
            ));
        }
    }
}

/// Lists against the URLs they allow and deny.
fn check_cases(table: &Table, vars: &Resolver, failures: &mut Vec<String>) {
    for case in &table.check {
        check_origin(&case.from, &case.name);
        let hosts = match AllowedHosts::parse(&case.entries, vars, &case.component_ids) {
            Ok(h) => h,
            Err(e) => {
                failures.push(format!("[{}] {}: refused: {e:#}", case.from, case.name));
                continue;
            }
        };
        if case.allow.is_empty() && case.deny.is_empty() {
            failures.push(format!("[{}] {}: checks nothing", case.from, case.name));
        }
        let expected = case
            .allow
            .iter()
            .map(|t| (t, true))
            .chain(case.deny.iter().map(|t| (t, false)));
        for (target, allowed) in expected {
            let (url, scheme) = target.url_and_scheme();
            if hosts.allows_url(url, &scheme) != allowed {
                failures.push(format!(
                    "[{}] {}: {url:?} (default scheme {scheme:?}) should be {}",
                    case.from,
                    case.name,
                    if allowed { "allowed" } else { "denied" }
                ));
            }
        }
    }
}

/// Lists with `*.spin.internal`, expanded to the app's components.
fn expand_cases(table: &Table, vars: &Resolver, failures: &mut Vec<String>) {
    for case in &table.expand {
        check_origin(&case.from, &case.name);
        match AllowedHosts::parse(&case.entries, vars, &case.component_ids) {
            Ok(h) => {
                let got: Vec<String> = h.hosts.iter().map(describe).collect();
                if got != case.parses_as {
                    failures.push(format!(
                        "[{}] {}: parsed as {got:?}, expected {:?}",
                        case.from, case.name, case.parses_as
                    ));
                }
            }
            Err(e) => failures.push(format!("[{}] {}: refused: {e:#}", case.from, case.name)),
        }
    }
}

/// URLs a component connects to: the host and port read from them.
fn url_cases(table: &Table, failures: &mut Vec<String>) {
    for case in &table.url {
        check_origin(&case.from, &case.name);
        match OutboundUrl::parse(&case.url, &case.scheme) {
            Ok(u) if u.host == case.host && case.port.is_none_or(|p| u.port == Some(p)) => {}
            other => failures.push(format!(
                "[{}] {}: {other:?}, expected host {:?} port {:?}",
                case.from, case.name, case.host, case.port
            )),
        }
    }
}

#[test]
fn a_bad_url_with_a_password_is_denied_and_its_error_hides_the_password() {
    let hosts = AllowedHosts::parse(
        &["redis://cache:6379".to_string()],
        &Resolver::default(),
        &[],
    )
    .unwrap();
    for url in [
        "redis://:hunter2@",
        "redis://:hunter2@cache:port",
        "redis://:hunter2@cache:6379:1",
        "redis://:hunter2@[cache]:6379",
    ] {
        assert!(!hosts.allows_url(url, "redis"), "{url}");
        if let Err(e) = OutboundUrl::parse(url, "redis") {
            assert!(!format!("{e:#}").contains("hunter2"), "{url}: {e:#}");
        }
    }
}

#[test]
fn a_bare_ipv6_address_is_taken_as_a_host() {
    let hosts =
        AllowedHosts::parse(&["http://[::1]:80".to_string()], &Resolver::default(), &[]).unwrap();
    assert!(hosts.allows("http", "::1", Some(80)));
    assert!(hosts.allows("http", "[::1]", None));
    assert!(!hosts.allows("http", "::2", Some(80)));
}
