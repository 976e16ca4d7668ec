//! Runs the route table in `spin_cases.toml`: every case, reporting every mismatch at once.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::manifest::HttpRoute;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    case: Vec<Case>,
    route_check: Vec<RouteCheck>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    from: String,
    name: String,
    routes: Vec<(String, HttpRoute)>,
    #[serde(default)]
    error: bool,
    count: Option<usize>,
    order: Option<Vec<String>>,
    duplicates: Option<Vec<String>>,
    reserved: Option<bool>,
    #[serde(default)]
    request: Vec<Request>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    path: String,
    component: Option<String>,
    #[serde(default)]
    not_found: bool,
    path_info: Option<String>,
    matched_route: Option<String>,
    raw_route: Option<String>,
    component_route: Option<String>,
    params: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteCheck {
    route: String,
    valid: bool,
}

fn table() -> Table {
    toml::from_str(include_str!("spin_cases.toml")).expect("spin_cases.toml parses")
}

/// What the HTTP trigger does with its `[[trigger.http]]` entries.
fn build(routes: &[(String, HttpRoute)]) -> Result<Router<String>> {
    let mut routable = Vec::new();
    for (component, route) in routes {
        if let Some(path) = route.path()? {
            routable.push((path.to_string(), component.clone()));
        }
    }
    Router::new(routable)
}

fn check_case(case: &Case, failures: &mut Vec<String>) {
    let mut fail = |what: String| failures.push(format!("[{}] {}: {what}", case.from, case.name));
    let router = match (build(&case.routes), case.error) {
        (Err(_), true) => return,
        (Ok(_), true) => return fail("built, but should have been refused".into()),
        (Err(e), false) => return fail(format!("refused: {e:#}")),
        (Ok(r), false) => r,
    };
    if let Some(count) = case.count {
        let got = router.routes().count();
        if got != count {
            fail(format!("{got} routes, expected {count}"));
        }
    }
    if let Some(order) = &case.order {
        let got: Vec<&str> = router.routes().map(|(_, t)| t.as_str()).collect();
        if got != *order {
            fail(format!("order {got:?}, expected {order:?}"));
        }
    }
    if let Some(duplicates) = &case.duplicates {
        if router.duplicates() != duplicates.as_slice() {
            fail(format!(
                "duplicates {:?}, expected {duplicates:?}",
                router.duplicates()
            ));
        }
    }
    if let Some(reserved) = case.reserved {
        if router.contains_reserved_route() != reserved {
            fail(format!("reserved should be {reserved}"));
        }
    }
    for req in &case.request {
        check_request(&router, req, &mut fail);
    }
}

/// Where `router` sends one request of a case, against what the case expects.
fn check_request(router: &Router<String>, req: &Request, fail: &mut impl FnMut(String)) {
    let path = &req.path;
    let m = match (router.route(path), req.not_found) {
        (None, true) => return,
        (Some(m), true) => {
            fail(format!(
                "{path}: routed to {:?}, expected no match",
                m.target
            ));
            return;
        }
        (None, false) => {
            fail(format!("{path}: no match"));
            return;
        }
        (Some(m), false) => m,
    };
    let params: BTreeMap<String, String> = m
        .params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let expected = [
        ("component", req.component.as_deref(), m.target.as_str()),
        ("path_info", req.path_info.as_deref(), &m.path_info),
        (
            "matched_route",
            req.matched_route.as_deref(),
            m.matched_route,
        ),
        ("raw_route", req.raw_route.as_deref(), m.raw_route),
        (
            "component_route",
            req.component_route.as_deref(),
            m.component_route(),
        ),
    ];
    for (what, want, got) in expected {
        if want.is_some_and(|w| w != got) {
            fail(format!("{path}: {what} {got:?}, expected {want:?}"));
        }
    }
    if req.component.is_none() {
        fail(format!("{path}: the case names no component"));
    }
    if req.params.as_ref().is_some_and(|p| *p != params) {
        fail(format!(
            "{path}: params {params:?}, expected {:?}",
            req.params
        ));
    }
}

#[test]
fn table_of_cases() {
    let table = table();
    assert!(
        table.case.iter().filter(|c| c.from == "spin").count() >= 20,
        "the Spin cases are missing from spin_cases.toml"
    );
    let mut failures = Vec::new();
    for case in &table.case {
        assert!(
            matches!(case.from.as_str(), "spin" | "nanohost"),
            "{}: from = {:?}",
            case.name,
            case.from
        );
        check_case(case, &mut failures);
    }
    for check in &table.route_check {
        if validate_route(&check.route).is_ok() != check.valid {
            failures.push(format!(
                "route {:?} should be {}",
                check.route,
                if check.valid { "valid" } else { "refused" }
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn param_headers_are_spins() {
    assert_eq!(param_header("id"), "spin-path-match-id");
    assert_eq!(param_header("Order_Id"), "spin-path-match-order-id");
}
