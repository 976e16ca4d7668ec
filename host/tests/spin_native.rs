//! Spin's native forms of the project's two ideas, on nanohost and on real Spin.
//!
//! Placement from one manifest (`apps/placements/spin.toml`): `-c` keeps some components and
//! their triggers; the composed app, and the order side and the fulfilment side of the HTTP shape
//! as two hosts over a shared Redis store, each run from the same file.
//!
//! Load-time composition: `[component.x.dependencies]` that Spin refuses, or runs in its own way: one folder per case under `tests/dependencies/`, a manifest and `expect.toml`, which
//! says for each host either the part of its error output that refuses the start
//! (`<host>.refused = "..."`) or that it serves, with the statuses of a `POST /order` and of the
//! `GET` of that order (`<host>.serves = { post = 202, get = 503 }`). A host without an
//! expectation in a case is reported skipped with that reason. The accepted manifest itself
//! (`apps/order-app-deps/spin.toml`) runs the wire contract in `order_app` and a fault in `faults`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Client;
use serde_json::json;
use support::harness::{self, case, Case, HostKind};
use support::host::{App, AppDir, AppSpec};

/// Long enough for `spin up` to compose and fail on a slow machine.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum Expect {
    Refused(String),
    Serves { post: u16, get: u16 },
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dependencies")
}

async fn run_case(host: HostKind, name: String, expect: Expect) {
    let manifest = cases_dir().join(&name).join("spin.toml");
    let dir = AppDir::new(&format!("{}-{name}", host.name()));
    let spec = AppSpec::new(manifest).nanohost_binary();
    match expect {
        Expect::Refused(said) => {
            let (status, log) = App::start_refused(host, &spec, &dir, REFUSAL_DEADLINE).await;
            assert!(!status.success(), "{} exited with {status}", host.name());
            assert!(
                log.contains(&said),
                "{} refused without saying {said:?}:\n{log}",
                host.name()
            );
        }
        Expect::Serves { post, get } => {
            let app = App::start(host, &spec, &dir).await;
            let client = Client::new();
            let placed = client
                .post(format!("{}/order", app.base()))
                .header("content-type", "application/json")
                .body(json!({ "details": "1 x water" }).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(placed.status().as_u16(), post);
            let body: serde_json::Value = placed.json().await.unwrap();
            let href = body["task"]["href"]
                .as_str()
                .expect("a task href")
                .to_string();
            let got = client
                .get(format!("{}{href}", app.base()))
                .send()
                .await
                .unwrap();
            assert_eq!(got.status().as_u16(), get, "{}", got.text().await.unwrap());
            app.stop().await;
        }
    }
}

fn placements() -> AppSpec {
    for part in [
        "order-app",
        "sweeper",
        "order-app-http",
        "sweeper-http",
        "fulfilment-http",
    ] {
        support::composed(part);
    }
    AppSpec::new(support::workspace_root().join("apps/placements/spin.toml"))
        .variable("message_key", support::MESSAGE_KEY)
}

async fn place(client: &Client, base: &str) -> String {
    let placed = support::orders::place_request(client, base, "3 x lemonade")
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status().as_u16(), 202);
    let body: serde_json::Value = placed.json().await.unwrap();
    body["task"]["href"].as_str().unwrap().to_string()
}

/// The order's status, polled until it is `fulfilled` or 10 s have passed.
async fn settled_status(client: &Client, base: &str, href: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: serde_json::Value = client
            .get(format!("{base}{href}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = got["status"].as_str().unwrap_or_default().to_string();
        if status == "fulfilled" || std::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An order placed on the app at `base` is fulfilled there.
async fn assert_fulfilled_on(client: &Client, base: &str) {
    let href = place(client, base).await;
    assert_eq!(settled_status(client, base, &href).await, "fulfilled");
}

/// Each of `urls` is a route of a component this placement leaves out: 404.
async fn assert_not_served(client: &Client, urls: &[String]) {
    for url in urls {
        let status = client.post(url).send().await.unwrap().status().as_u16();
        assert_eq!(status, 404, "{url}");
    }
}

/// `-c order-app -c sweeper`: the composed app; the fulfilment side's route is not served.
async fn composed_placement(host: HostKind) {
    let dir = AppDir::new(&format!("{}-placement-composed", host.name()));
    let spec = placements().component("order-app").component("sweeper");
    let app = App::start(host, &spec, &dir).await;
    let client = Client::new();
    assert_fulfilled_on(&client, &app.base()).await;
    assert_not_served(&client, &[format!("{}/fulfil", app.base())]).await;
    app.stop().await;
}

/// `-c fulfilment-http` on one host, `-c order-http -c sweeper-http` on another, one Redis store:
/// the HTTP shape from the same manifest. Each side serves only its own routes.
async fn apart_placement(host: HostKind) {
    let redis = support::Redis::start();
    let fulfilment_dir = AppDir::new(&format!("{}-placement-fulfilment", host.name()));
    let order_dir = AppDir::new(&format!("{}-placement-order", host.name()));
    let fulfilment_spec = placements()
        .component("fulfilment-http")
        .runtime_config(Some(support::redis_runtime_config(
            &redis.url(),
            &fulfilment_dir.path,
        )));
    let fulfilment = App::start(host, &fulfilment_spec, &fulfilment_dir).await;
    let order_spec = placements()
        .component("order-http")
        .component("sweeper-http")
        .variable("fulfilment_origin", fulfilment.base())
        .runtime_config(Some(support::redis_runtime_config(
            &redis.url(),
            &order_dir.path,
        )));
    let order = App::start(host, &order_spec, &order_dir).await;
    let client = Client::new();
    assert_fulfilled_on(&client, &order.base()).await;
    let elsewhere = [
        format!("{}/fulfil", order.base()),
        format!("{}/order", fulfilment.base()),
    ];
    assert_not_served(&client, &elsewhere).await;
    order.stop().await;
    fulfilment.stop().await;
}

/// A component id the manifest does not have stops the start, naming it.
async fn unknown_component_is_refused(host: HostKind) {
    let dir = AppDir::new(&format!("{}-placement-unknown", host.name()));
    let spec = placements().component("fulfilment").nanohost_binary();
    let (status, log) = App::start_refused(host, &spec, &dir, REFUSAL_DEADLINE).await;
    assert!(!status.success());
    assert!(
        log.contains("\"fulfilment\" not found in application"),
        "{} refused without naming the component:\n{log}",
        host.name()
    );
}

fn main() {
    support::composed("order-services");
    let mut names: Vec<String> = std::fs::read_dir(cases_dir())
        .expect("tests/dependencies")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut cases: Vec<Case> = Vec::new();
    for name in names {
        let text = std::fs::read_to_string(cases_dir().join(&name).join("expect.toml"))
            .unwrap_or_else(|e| panic!("{name}/expect.toml: {e}"));
        let table: toml::Table = toml::from_str(&text).unwrap();
        for host in HostKind::ALL {
            let expect: Option<Expect> = table.get(host.name()).map(|v| {
                v.clone()
                    .try_into()
                    .unwrap_or_else(|e| panic!("{name}/expect.toml, {}: {e}", host.name()))
            });
            let missing = expect
                .is_none()
                .then(|| format!("{name}/expect.toml records nothing for {}", host.name()));
            let case_name = name.clone();
            cases.push(
                case(host, format!("dependencies::{name}"), move || {
                    run_case(host, case_name, expect.expect("skipped otherwise"))
                })
                .skip_if(missing)
                .skip_if(harness::none_known(host, (), &name)),
            );
        }
    }
    for host in HostKind::ALL {
        cases.push(
            case(host, "placement::composed", move || {
                composed_placement(host)
            })
            .skip_if(harness::none_known(host, (), "placement::composed")),
        );
        cases.push(
            case(host, "placement::apart", move || apart_placement(host))
                .skip_if(harness::none_known(host, (), "placement::apart")),
        );
        cases.push(
            case(host, "placement::unknown_component", move || {
                unknown_component_is_refused(host)
            })
            .skip_if(harness::none_known(
                host,
                (),
                "placement::unknown_component",
            )),
        );
    }
    harness::run(cases)
}
