//! Instance reuse, as Spin 4 does it: a WASIp3 handler (`fixtures/probe-p3`, answering with its
//! instance's id and request count) serves many requests per instance within the reuse flags,
//! and nothing of one request reaches the next; a WASIp2 component (`fixtures/probe`) gets a
//! fresh instance per request whatever the flags say. One table, run on nanohost and on each
//! real Spin; the WASIp3 cases need WASI 0.3.0 (Spin 4.1.0-pre0), older Spins skip them.

mod support;

use std::time::Duration;

use support::harness::{self, case, Case, HostKind};
use support::host::{serves_wasip3, App, AppDir, AppSpec};

/// What the fixture said about one request.
#[derive(Debug)]
struct Answer {
    instance: String,
    served: u64,
    text: String,
}

impl Answer {
    fn line(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }
}

struct Reuse {
    app: App,
    base: String,
}

impl Reuse {
    /// The WASIp3 probe (`reuse.toml`) on `host` with these flags of `spin up`.
    async fn start(host: HostKind, label: &str, args: &[&str]) -> Reuse {
        Reuse::start_manifest(host, label, "reuse.toml", args).await
    }

    async fn start_manifest(host: HostKind, label: &str, manifest: &str, args: &[&str]) -> Reuse {
        let dir = AppDir::new(&format!("{}-{label}", host.name()));
        let mut spec = AppSpec::new(support::manifest(manifest));
        for arg in args {
            spec = spec.arg(*arg);
        }
        let app = App::start(host, &spec, &dir).await;
        Reuse {
            base: app.base(),
            app,
        }
    }

    async fn send(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in {text}"))
                .to_string()
        };
        Answer {
            instance: field("instance"),
            served: field("served").parse().expect("a count"),
            text,
        }
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

/// Two requests in a row on one instance: the second sees its own path, headers and body, and
/// none of the first's.
async fn serial_requests_share_an_instance_and_nothing_else(host: HostKind) {
    let app = Reuse::start(host, "serial", &[]).await;
    let first = app
        .send("/p3/first", &[("x-secret", "secret-one")], "body-one")
        .await;
    // The fixture shows what it got: else the checks below would prove nothing.
    assert_eq!(
        first.line("header x-secret"),
        Some("secret-one"),
        "{first:?}"
    );
    assert_eq!(first.line("body"), Some("body-one"), "{first:?}");

    let second = app.send("/p3/second", &[], "body-two").await;
    assert_eq!(second.instance, first.instance, "reused: {second:?}");
    assert_eq!(second.served, first.served + 1, "{second:?}");
    assert_eq!(second.line("body"), Some("body-two"), "{second:?}");
    assert_eq!(second.line("header spin-path-info"), Some("/second"));
    for leak in ["secret-one", "x-secret", "body-one", "/first"] {
        assert!(!second.text.contains(leak), "{leak} leaked: {second:?}");
    }
    app.stop().await;
}

/// `--max-instance-reuse-count 2`: the third request gets a new instance.
async fn the_reuse_count_ends_an_instance(host: HostKind) {
    let app = Reuse::start(host, "reuse-count", &["--max-instance-reuse-count", "2"]).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(app.send("/p3/count", &[], "").await);
    }
    assert_eq!(answers[1].instance, answers[0].instance, "{answers:?}");
    assert_ne!(answers[2].instance, answers[0].instance, "{answers:?}");
    assert_eq!(answers[2].served, 1, "{answers:?}");
    app.stop().await;
}

/// `--idle-instance-timeout 100ms`: an instance idle for longer is gone.
async fn an_idle_instance_goes_after_the_idle_timeout(host: HostKind) {
    let app = Reuse::start(host, "idle", &["--idle-instance-timeout", "100ms"]).await;
    let first = app.send("/p3/idle", &[], "").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = app.send("/p3/idle", &[], "").await;
    assert_ne!(second.instance, first.instance, "{first:?} {second:?}");
    assert_eq!(second.served, 1, "{second:?}");
    app.stop().await;
}

/// A request that arrives while another waits in the guest joins its instance (up to
/// `--max-instance-concurrent-reuse-count`, 16 by default); with a limit of 1 it gets another.
async fn concurrent_requests_share_an_instance_up_to_the_limit(host: HostKind, limit: usize) {
    let limit_text = limit.to_string();
    let args: &[&str] = if limit == 16 {
        &[]
    } else {
        &["--max-instance-concurrent-reuse-count", &limit_text]
    };
    let app = Reuse::start(host, &format!("concurrent-{limit}"), args).await;
    let (first, second) = tokio::join!(app.send("/p3/hold?ms=1500", &[], "held"), async {
        // The first request is in the guest's wait by then.
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.send("/p3/hold?ms=0", &[], "").await
    });
    if limit > 1 {
        assert_eq!(second.instance, first.instance, "{first:?} {second:?}");
    } else {
        assert_ne!(second.instance, first.instance, "{first:?} {second:?}");
    }
    app.stop().await;
}

/// The Spin variables interface in both versions a WASIp3 component may import: Spin 3's
/// `fermyon:spin/variables@2.0.0` (synchronous) and Spin 4's `spin:variables@3.0.0` (async).
async fn spin_variables_in_both_versions(host: HostKind) {
    let app = Reuse::start(host, "variables", &[]).await;
    for version in ["var2", "var3"] {
        let found = app.send(&format!("/p3/{version}/greeting"), &[], "").await;
        assert_eq!(
            found.line("variable"),
            Some(r#"Ok("hello from p3")"#),
            "{found:?}"
        );
        let missing = app.send(&format!("/p3/{version}/nope"), &[], "").await;
        let said = missing.line("variable").unwrap_or_default();
        assert!(
            said.starts_with("Err(") && said.contains("Undefined"),
            "{missing:?}"
        );
    }
    app.stop().await;
}

/// A WASIp3 guest stuck in a loop is stopped at nanohost's time limit (`--timeout-ms`) with a
/// JSON 503, and its instance with it; the next request gets a new instance. (Spin has no
/// request time limit by default: nanohost alone.)
async fn a_stuck_instance_is_stopped_at_the_time_limit() {
    let app = Reuse::start(HostKind::Nanohost, "stuck", &["--timeout-ms", "1000"]).await;
    let before = app.send("/p3/before", &[], "").await;
    let response = reqwest::get(format!("{}/p3/loop", app.base))
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 503);
    let body = response.text().await.unwrap();
    assert!(body.contains("ran out of time"), "{body}");
    let after = app.send("/p3/after", &[], "").await;
    assert_ne!(after.instance, before.instance, "{before:?} {after:?}");
    app.stop().await;
}

/// WASIp2: a fresh instance per request, even when the reuse flags allow more (as in Spin).
async fn wasip2_instances_are_never_reused(host: HostKind) {
    let app = Reuse::start_manifest(
        host,
        "wasip2",
        "probe.toml",
        &["--max-instance-reuse-count", "64"],
    )
    .await;
    for _ in 0..3 {
        let (status, body) = support::http::get_text(&app.base, "/p/served").await;
        assert_eq!((status, body.as_str()), (200, "served: 1"));
    }
    app.stop().await;
}

type Pinned = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The WASIp3 cases: `(name, body)`.
type CaseBody = fn(HostKind) -> Pinned;

const WASIP3: [(&str, CaseBody); 6] = [
    ("serial_requests_share_an_instance_and_nothing_else", |h| {
        Box::pin(serial_requests_share_an_instance_and_nothing_else(h))
    }),
    ("the_reuse_count_ends_an_instance", |h| {
        Box::pin(the_reuse_count_ends_an_instance(h))
    }),
    ("an_idle_instance_goes_after_the_idle_timeout", |h| {
        Box::pin(an_idle_instance_goes_after_the_idle_timeout(h))
    }),
    ("concurrent_requests_share_an_instance", |h| {
        Box::pin(concurrent_requests_share_an_instance_up_to_the_limit(h, 16))
    }),
    ("a_concurrent_limit_of_1_takes_another_instance", |h| {
        Box::pin(concurrent_requests_share_an_instance_up_to_the_limit(h, 1))
    }),
    ("spin_variables_in_both_versions", |h| {
        Box::pin(spin_variables_in_both_versions(h))
    }),
];

fn main() {
    let mut cases: Vec<Case> = Vec::new();
    for host in HostKind::ALL {
        for (name, body) in WASIP3 {
            cases.push(
                case(host, format!("wasip3::{name}"), move || body(host))
                    .skip_if(serves_wasip3(host)),
            );
        }
        cases.push(case(
            host,
            "wasip2::instances_are_never_reused",
            move || wasip2_instances_are_never_reused(host),
        ));
    }
    cases.push(harness::nanohost_only(
        "wasip3::a_stuck_instance_is_stopped_at_the_time_limit",
        a_stuck_instance_is_stopped_at_the_time_limit,
    ));
    harness::run(cases);
}
