//! The HTTP trigger end to end on an ephemeral port: routing, `spin-*` headers, key-value,
//! variables, and per-instance limits.

mod support;

use std::time::Duration;

use nanohost::{HostOptions, Limits, RunningHost};

async fn start(limits: Limits) -> RunningHost {
    RunningHost::start_with_limits(
        HostOptions {
            manifest: support::manifest("probe.toml"),
            runtime_config: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            variables: Vec::new(),
        },
        limits,
    )
    .await
    .expect("host starts")
}

async fn get(host: &RunningHost, path: &str) -> (u16, String) {
    let url = format!("{}{path}", support::base(host.http_addr().unwrap()));
    let resp = reqwest::get(&url).await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

fn header_line<'a>(body: &'a str, name: &str) -> &'a str {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_and_spin_headers() {
    let host = start(Limits::default()).await;
    let addr = host.http_addr().unwrap();

    let (status, body) = get(&host, "/echo").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header_line(&body, "spin-matched-route"), "/echo");
    assert_eq!(header_line(&body, "spin-raw-component-route"), "/echo");
    assert_eq!(header_line(&body, "spin-component-route"), "/echo");
    assert_eq!(header_line(&body, "spin-path-info"), "");
    assert_eq!(header_line(&body, "spin-base-path"), "/");
    assert_eq!(
        header_line(&body, "spin-full-url"),
        format!("http://{addr}/echo")
    );
    assert!(header_line(&body, "spin-client-addr").starts_with("127.0.0.1:"));

    // The exact route wins for /echo; the wildcard takes everything below it.
    let (status, body) = get(&host, "/echo/a/b?x=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header_line(&body, "spin-matched-route"), "/echo/...");
    assert_eq!(header_line(&body, "spin-raw-component-route"), "/echo/...");
    assert_eq!(header_line(&body, "spin-component-route"), "/echo");
    assert_eq!(header_line(&body, "spin-path-info"), "/a/b");
    assert_eq!(
        header_line(&body, "spin-full-url"),
        format!("http://{addr}/echo/a/b?x=1")
    );

    let (status, _) = get(&host, "/nothing/here").await;
    assert_eq!(status, 404);
    let (status, body) = get(&host, "/p/unknown").await;
    assert_eq!((status, body.as_str()), (404, "probe: no such route"));

    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_key_value_store_and_its_permissions() {
    let host = start(Limits::default()).await;
    assert_eq!(
        get(&host, "/p/kv?store=default&op=set&key=a&value=1").await,
        (200, "ok".into())
    );
    assert_eq!(
        get(&host, "/p/kv?store=default&op=get&key=a").await,
        (200, "1".into())
    );
    assert_eq!(get(&host, "/p/kv?store=default&op=get&key=zz").await.0, 404);
    assert_eq!(
        get(&host, "/p/kv?store=default&op=keys").await,
        (200, "a".into())
    );

    // `locked` does not list `default` in key_value_stores.
    let (status, body) = get(&host, "/nokv/kv?store=default&op=get&key=a").await;
    assert_eq!(status, 500);
    assert!(body.contains("AccessDenied"), "{body}");
    // No runtime config defines `nope`.
    let (status, body) = get(&host, "/p/kv?store=nope&op=get&key=a").await;
    assert_eq!(status, 500);
    assert!(body.contains("NoSuchStore"), "{body}");
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn variables_from_defaults_and_templates() {
    let host = start(Limits::default()).await;
    assert_eq!(
        get(&host, "/p/var/greeting").await,
        (200, "hello, world".into())
    );
    assert_eq!(get(&host, "/p/var/token").await, (200, "s3cret".into()));
    let (status, body) = get(&host, "/p/var/not_declared").await;
    assert_eq!(status, 500);
    assert!(body.contains("Undefined"), "{body}");
    let (status, body) = get(&host, "/p/var/Bad-Name").await;
    assert_eq!(status, 500);
    assert!(body.contains("InvalidName"), "{body}");
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
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

#[tokio::test(flavor = "multi_thread")]
async fn runaway_guests_fail_alone() {
    let host = start(Limits {
        timeout: Duration::from_secs(2),
        max_memory_bytes: 32 << 20,
        ..Limits::default()
    })
    .await;

    // A guest that loops forever hits the time limit; others keep being served meanwhile.
    let url = format!("{}/p/spin", support::base(host.http_addr().unwrap()));
    let looping = tokio::spawn(async move { reqwest::get(&url).await.unwrap().status().as_u16() });
    assert_eq!(get(&host, "/echo").await.0, 200);
    assert_eq!(looping.await.unwrap(), 500);
    assert_eq!(get(&host, "/echo").await.0, 200);

    // A guest that allocates without bound hits the memory limit.
    assert_eq!(get(&host, "/p/grow").await.0, 500);
    assert_eq!(
        get(&host, "/p/var/greeting").await,
        (200, "hello, world".into())
    );
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn service_chaining_to_another_component() {
    let host = start(Limits::default()).await;
    // `probe` may call `locked` in-process; `locked` answers with the headers it got.
    let (status, body) = get(&host, "/p/http?url=http://locked.spin.internal/echo").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("200 "), "{body}");
    assert!(body.contains("spin-matched-route: /..."), "{body}");
    assert!(body.contains("spin-path-info: /echo"), "{body}");
    // ... but not `probe` itself: that host is not in its allowed_outbound_hosts.
    let (status, body) = get(&host, "/p/http?url=http://probe.spin.internal/echo").await;
    assert_eq!(status, 500);
    assert!(body.contains("HttpRequestDenied"), "{body}");
    host.shutdown().await.unwrap();
}
