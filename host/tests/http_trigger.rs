//! The HTTP trigger end to end with the probe fixture (`manifests/probe.toml`): routing, `spin-*`
//! headers, key-value, variables and service chaining on nanohost and on real Spin 3.6.3 (one
//! table, the host a parameter); per-instance limits and start errors on nanohost alone.

mod support;

use std::time::Duration;

use nanohost::{HostOptions, Limits, RunningHost};
use support::harness::{self, case, nanohost_only, shared, Case, HostKind};
use support::host::{App, AppDir, AppSpec};
use support::http::get_text;

struct Probe {
    app: App,
    base: String,
}

impl Probe {
    async fn start(host: HostKind) -> Probe {
        let dir = AppDir::new(&format!("{}-probe", host.name()));
        let app = App::start(host, &AppSpec::new(support::manifest("probe.toml")), &dir).await;
        Probe {
            base: app.base(),
            app,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        get_text(&self.base, path).await
    }

    async fn answers(&self, path: &str, want: &str) {
        assert_eq!(self.get(path).await, (200, want.into()), "{path}");
    }

    /// `path` makes an outbound request that the target answers with 200; what it answered.
    async fn chained_ok(&self, path: &str) -> String {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("200 "), "{body}");
        body
    }

    /// `path` fails with 500 and a body naming `error` (the variant of Spin's error type).
    async fn fails_with(&self, path: &str, error: &str) {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 500, "{path}: {body}");
        assert!(body.contains(error), "{path}: {body}");
    }
}

fn header_line<'a>(body: &'a str, name: &str) -> &'a str {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

async fn routes_and_spin_headers(probe: &Probe) {
    let addr = probe.app.addr();

    // The exact route wins for /echo; the wildcard takes everything below it.
    for (path, matched, info) in [
        ("/echo", "/echo", ""),
        ("/echo/a/b?x=1", "/echo/...", "/a/b"),
    ] {
        let (status, body) = probe.get(path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(header_line(&body, "spin-matched-route"), matched);
        assert_eq!(header_line(&body, "spin-raw-component-route"), matched);
        assert_eq!(header_line(&body, "spin-component-route"), "/echo");
        assert_eq!(header_line(&body, "spin-path-info"), info);
        assert_eq!(header_line(&body, "spin-base-path"), "/");
        let full_url = format!("http://{addr}{path}");
        assert_eq!(header_line(&body, "spin-full-url"), full_url);
        assert!(header_line(&body, "spin-client-addr").starts_with("127.0.0.1:"));
    }

    let (status, _) = probe.get("/nothing/here").await;
    assert_eq!(status, 404);
    let (status, body) = probe.get("/p/unknown").await;
    assert_eq!((status, body.as_str()), (404, "probe: no such route"));
}

async fn embedded_key_value_store_and_its_permissions(probe: &Probe) {
    probe
        .answers("/p/kv?store=default&op=set&key=a&value=1", "ok")
        .await;
    probe.answers("/p/kv?store=default&op=get&key=a", "1").await;
    assert_eq!(probe.get("/p/kv?store=default&op=get&key=zz").await.0, 404);
    probe.answers("/p/kv?store=default&op=keys", "a").await;

    // `locked` does not list `default` in key_value_stores.
    probe
        .fails_with("/nokv/kv?store=default&op=get&key=a", "AccessDenied")
        .await;
    // `probe` does not list `nope` either (and no runtime config defines it): Spin checks the
    // component's list first.
    probe
        .fails_with("/p/kv?store=nope&op=get&key=a", "AccessDenied")
        .await;
}

async fn variables_from_defaults_and_templates(probe: &Probe) {
    probe.answers("/p/var/greeting", "hello, world").await;
    probe.answers("/p/var/token", "s3cret").await;
    probe.fails_with("/p/var/not_declared", "Undefined").await;
    probe.fails_with("/p/var/Bad-Name", "InvalidName").await;
}

async fn service_chaining_to_another_component(probe: &Probe) {
    // `probe` may call `locked` in-process; `locked` answers with the headers it got.
    let body = probe
        .chained_ok("/p/http?url=http://locked.spin.internal/echo")
        .await;
    assert!(body.contains("spin-matched-route: /..."), "{body}");
    assert!(body.contains("spin-path-info: /echo"), "{body}");
    // ... but not `probe` itself: that host is not in its allowed_outbound_hosts.
    let (status, body) = probe
        .get("/p/http?url=http://probe.spin.internal/echo")
        .await;
    assert_eq!(status, 500);
    assert!(body.contains("HttpRequestDenied"), "{body}");
}

/// `http://*.spin.internal` allows the app's own components and no other name under
/// `spin.internal` (Spin expands it to one host per component id).
async fn wildcard_service_chaining_is_the_apps_components(probe: &Probe) {
    probe
        .chained_ok("/chain/http?url=http://locked.spin.internal/echo")
        .await;
    for host in ["nothere.spin.internal", "a.locked.spin.internal"] {
        probe
            .fails_with(
                &format!("/chain/http?url=http://{host}/echo"),
                "HttpRequestDenied",
            )
            .await;
    }
}

/// A chained request, its host allowed, to a component of the app that no HTTP route serves:
/// the calling guest traps ("unknown routing destination"), so its request gets the host's
/// answer to a trap (Spin: an empty 500; nanohost: its JSON error, see the difference table).
async fn chaining_to_a_component_without_a_route_traps_the_caller(probe: &Probe) {
    let (status, body) = probe
        .get("/chain/http?url=http://unrouted.spin.internal/echo")
        .await;
    assert_eq!(status, 500, "{body}");
    let trap = match probe.app.kind {
        HostKind::Spin | HostKind::Spin4 | HostKind::Spin41 => "",
        HostKind::Nanohost => r#"{"error":"the component failed"}"#,
    };
    assert_eq!(body, trap);
    // Spin's log names the reason (nanohost in process has no log of its own); the line may
    // land just after the answer.
    if let Some(log) = &probe.app.log {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let tail = support::host::tail(log, 200);
            if tail.contains("unknown routing destination 'unrouted'") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{tail}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[allow(clippy::needless_update)]
/// What a chained request looks like to the component it reaches: Spin 3.6.3 builds the URL on
/// `localhost` and reports no client address.
async fn service_chaining_headers_are_spins(probe: &Probe) {
    let (status, body) = probe
        .get("/p/http?url=http://locked.spin.internal/echo")
        .await;
    assert_eq!(status, 200, "{body}");
    let body = body.strip_prefix("200 ").unwrap_or(&body);
    assert_eq!(header_line(body, "spin-full-url"), "http://localhost/echo");
    assert_eq!(header_line(body, "spin-client-addr"), "0.0.0.0:0");
    assert_eq!(header_line(body, "spin-component-route"), "");
    assert_eq!(header_line(body, "spin-raw-component-route"), "/...");
    assert_eq!(header_line(body, "spin-base-path"), "/");
}

/// No route matches: the host answers 404 with an empty body (Spin: `content-length: 0`, no
/// content type).
async fn an_unknown_route_is_an_empty_404(probe: &Probe) {
    for path in ["/nothing/here", "/ECHO", "/echox"] {
        let response = reqwest::get(format!("{}{path}", probe.base)).await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            response.headers().get("content-type"),
            None,
            "{path}: {:?}",
            response.headers()
        );
        assert_eq!(response.text().await.unwrap(), "", "{path}");
    }
    // A trailing slash still matches the exact route.
    let (status, body) = probe.get("/echo/").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header_line(&body, "spin-matched-route"), "/echo");
    assert_eq!(header_line(&body, "spin-path-info"), "");
}

async fn start_with_limits(limits: Limits) -> RunningHost {
    RunningHost::start_with_limits(
        HostOptions {
            manifest: support::manifest("probe.toml"),
            runtime_config: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            variables: Vec::new(),
            ..HostOptions::default()
        },
        limits,
    )
    .await
    .expect("host starts")
}

#[allow(clippy::needless_update)]
async fn required_variable_missing_is_a_clear_start_error() {
    let dir = support::TempDir::new("required");
    let manifest = dir.file(
        "spin.toml",
        &format!(
            r#"spin_manifest_version = 2
[application]
name = "req"
[variables]
nanohost_test_unset_token = {{ required = true }}
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "{}"
variables = {{ token = "{{{{ nanohost_test_unset_token }}}}" }}
"#,
            support::probe_source()
        ),
    );
    let err = RunningHost::start(HostOptions {
        manifest,
        runtime_config: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        variables: Vec::new(),
        ..HostOptions::default()
    })
    .await
    .err()
    .expect("start fails");
    let msg = format!("{err:#}");
    assert!(msg.contains("required variable"), "{msg}");
    assert!(
        msg.contains("SPIN_VARIABLE_NANOHOST_TEST_UNSET_TOKEN"),
        "{msg}"
    );
}

/// Issue 18, item 9: `spin up` serves through a child `spin trigger http`; a stop must end both
/// (and nanohost's binary), not the parent alone. The app's process group is looked up in /proc.
async fn a_stopped_app_leaves_no_process(host: HostKind) {
    let dir = AppDir::new(&format!("{}-left-running", host.name()));
    let spec = AppSpec::new(support::manifest("probe.toml")).nanohost_binary();
    let app = App::start(host, &spec, &dir).await;
    let group = app.process_group().expect("a child host");
    let running = test_brokers::process::group_members(group);
    let serving = match host {
        HostKind::Spin | HostKind::Spin4 | HostKind::Spin41 => 2,
        HostKind::Nanohost => 1,
    };
    assert_eq!(
        running.len(),
        serving,
        "processes of {}'s group while it serves: {running:?}",
        host.name()
    );
    app.stop().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left = test_brokers::process::group_members(group);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = test_brokers::process::group_members(group);
    }
    eprintln!(
        "{}: {} process(es) served, {} left after the stop",
        host.name(),
        running.len(),
        left.len()
    );
    assert_eq!(left, Vec::<u32>::new(), "still running after the stop");
}

async fn runaway_guests_fail_alone() {
    let host = start_with_limits(Limits {
        timeout: Duration::from_secs(2),
        max_memory_bytes: 32 << 20,
        ..Limits::default()
    })
    .await;
    let base = support::base(host.http_addr().unwrap());

    // A guest that loops forever hits the time limit; others keep being served meanwhile.
    let url = format!("{base}/p/spin");
    let looping = tokio::spawn(async move { reqwest::get(&url).await.unwrap().status().as_u16() });
    assert_eq!(get_text(&base, "/echo").await.0, 200);
    assert_eq!(looping.await.unwrap(), 500);
    assert_eq!(get_text(&base, "/echo").await.0, 200);

    // A guest that allocates without bound hits the memory limit.
    assert_eq!(get_text(&base, "/p/grow").await.0, 500);
    assert_eq!(
        get_text(&base, "/p/var/greeting").await,
        (200, "hello, world".into())
    );
    host.shutdown().await.unwrap();
}

// No known difference today: the chained request's headers were the last one, fixed in nanohost.
macro_rules! on_shared_probe {
    ($cases:ident, $host:expr, [$($case:ident),* $(,)?]) => {$({
        let host = $host;
        $cases.push(
            case(host, stringify!($case), move || async move {
                let probe = shared(host.name(), || Probe::start(host)).await;
                $case(&probe).await;
            })
            .skip_if(harness::none_known(host, (), stringify!($case))),
        );
    })*};
}

fn main() {
    let mut cases: Vec<Case> = Vec::new();
    for host in HostKind::ALL {
        on_shared_probe!(
            cases,
            host,
            [
                routes_and_spin_headers,
                embedded_key_value_store_and_its_permissions,
                variables_from_defaults_and_templates,
                service_chaining_to_another_component,
                service_chaining_headers_are_spins,
                wildcard_service_chaining_is_the_apps_components,
                chaining_to_a_component_without_a_route_traps_the_caller,
                an_unknown_route_is_an_empty_404,
            ]
        );
    }
    for host in HostKind::ALL {
        cases.push(case(host, "a_stopped_app_leaves_no_process", move || {
            a_stopped_app_leaves_no_process(host)
        }));
    }
    cases.push(nanohost_only(
        "required_variable_missing_is_a_clear_start_error",
        required_variable_missing_is_a_clear_start_error,
    ));
    cases.push(nanohost_only(
        "runaway_guests_fail_alone",
        runaway_guests_fail_alone,
    ));
    harness::run(cases)
}
