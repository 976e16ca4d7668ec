//! Everything that needs a real broker, on nanohost and on real Spin 3.6.3 (one table, the host
//! a parameter): the Redis key-value backend, outbound Redis/MQTT/HTTP with
//! `allowed_outbound_hosts`, and the Redis and MQTT triggers. Each case starts its own
//! `redis-server` / `mosquitto` on a free loopback port and its own app.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::harness::{self, Case, HostKind};
use support::host::{App, AppDir, AppSpec};
use support::http::get_text;
use support::{Mosquitto, Redis, TempDir};

async fn start(
    host: HostKind,
    label: &str,
    manifest: PathBuf,
    runtime_config: Option<PathBuf>,
) -> App {
    let dir = AppDir::new(&format!("{}-{label}", host.name()));
    App::start(
        host,
        &AppSpec::new(manifest).runtime_config(runtime_config),
        &dir,
    )
    .await
}

async fn get(app: &App, path: &str) -> (u16, String) {
    get_text(&app.base(), path).await
}

/// `path` answers 200 with `want`.
async fn answers(app: &App, path: &str, want: &str) {
    assert_eq!(get(app, path).await, (200, want.into()), "{path}");
}

/// Polls until `path` answers 200 with `want`; the deadline only bounds a broken run.
async fn eventually(app: &App, path: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(app, path).await;
        if status == 200 && body == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {want:?}; last: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The probe with outbound access to exactly one Redis and one MQTT broker (by port), and
/// optional trigger sections.
fn app(dir: &TempDir, redis_port: u16, mqtt_port: u16, triggers: &str) -> PathBuf {
    let manifest = support::probe_toml("brokers")
        .application(triggers)
        .variable("redis_port", &format!(r#"{{ default = "{redis_port}" }}"#))
        .field(&format!(
            r#"allowed_outbound_hosts = ["redis://127.0.0.1:{{{{ redis_port }}}}", "mqtt://127.0.0.1:{mqtt_port}", "http://127.0.0.1:*"]"#
        ));
    dir.file("brokers.toml", &manifest.to_string())
}

async fn key_value_on_a_real_redis(kind: HostKind) {
    let redis = Redis::start();
    let dir = TempDir::new("kv-redis");
    let rc = support::redis_runtime_config(&redis.url(), &dir.path);
    let host = start(kind, "kv-redis", app(&dir, 1, 1, ""), Some(rc)).await;
    answers(&host, "/p/kv?store=default&op=set&key=k1&value=v1", "ok").await;
    answers(&host, "/p/kv?store=default&op=get&key=k1", "v1").await;

    // It really is in Redis.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let v: Option<String> = redis::AsyncCommands::get(&mut conn, "k1").await.unwrap();
    assert_eq!(v.as_deref(), Some("v1"));
    let _: () = redis::AsyncCommands::set(&mut conn, "k2", "from-outside")
        .await
        .unwrap();
    answers(&host, "/p/kv?store=default&op=get&key=k2", "from-outside").await;
    answers(&host, "/p/kv?store=default&op=delete&key=k1", "ok").await;
    assert_eq!(get(&host, "/p/kv?store=default&op=get&key=k1").await.0, 404);
    host.stop().await;
}

async fn outbound_hosts_are_enforced(kind: HostKind) {
    let redis = Redis::start();
    let mqtt = Mosquitto::start();
    let dir = TempDir::new("outbound");
    let host = start(kind, "outbound", app(&dir, redis.port, mqtt.port, ""), None).await;
    let other = support::free_port();

    // Allowed Redis works.
    let addr = redis.url();
    answers(
        &host,
        &format!("/p/redis?addr={addr}&op=set&key=a&value=b"),
        "ok",
    )
    .await;
    answers(&host, &format!("/p/redis?addr={addr}&op=get&key=a"), "b").await;
    answers(&host, &format!("/p/redis?addr={addr}&op=incr&key=n"), "1").await;
    // Another port is refused with Spin's error, before any connection is tried.
    let (status, body) = get(
        &host,
        &format!("/p/redis?addr=redis://127.0.0.1:{other}&op=get&key=a"),
    )
    .await;
    assert_eq!(status, 500);
    assert!(body.contains("InvalidAddress"), "{body}");

    // MQTT: allowed broker publishes; anything else is `connection-failed(... not permitted)`.
    let (status, body) = get(
        &host,
        &format!(
            "/p/mqtt?addr={}%3Fclient_id%3Dprobe-allowed&topic=t&payload=x",
            mqtt.url()
        ),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = get(
        &host,
        &format!(
            "/p/mqtt?addr=mqtt://127.0.0.1:{other}%3Fclient_id%3Dprobe-other&topic=t&payload=x"
        ),
    )
    .await;
    assert_eq!(status, 500);
    assert!(
        body.contains("ConnectionFailed") && body.contains("is not permitted"),
        "{body}"
    );

    // HTTP: 127.0.0.1 on any port is allowed (here: the host itself), localhost is not.
    let me = host.addr();
    let (status, body) = get(&host, &format!("/p/http?url=http://{me}/p/var/nope")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("500 "), "{body}");
    let (status, body) = get(
        &host,
        &format!("/p/http?url=http://localhost:{}/", me.port()),
    )
    .await;
    assert_eq!(status, 500);
    assert!(body.contains("HttpRequestDenied"), "{body}");
    host.stop().await;
}

async fn redis_and_mqtt_triggers_deliver_messages(kind: HostKind) {
    let redis = Redis::start();
    let mqtt = Mosquitto::start();
    let dir = TempDir::new("triggers");
    let triggers = format!(
        r#"
[application.trigger.redis]
address = "redis://127.0.0.1:{{{{ redis_port }}}}"
{mqtt}
[[trigger.redis]]
channel = "probe-in"
component = "probe"

[[trigger.mqtt]]
topic = "probe/#"
qos = "1"
component = "probe"
"#,
        mqtt = support::spin_toml::mqtt_trigger_settings(&mqtt.url())
    );
    let mut host = start(
        kind,
        "triggers",
        app(&dir, redis.port, mqtt.port, &triggers),
        None,
    )
    .await;
    host.wait_for("the Redis and MQTT subscriptions", || {
        redis.subscribers("probe-in") >= 1 && mqtt.subscriptions("probe/#") >= 1
    })
    .await;

    // A message published by an outside client reaches the Redis trigger's handler.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::AsyncCommands::publish(&mut conn, "probe-in", "hello redis")
        .await
        .unwrap();
    eventually(
        &host,
        "/p/kv?store=default&op=get&key=redis:last",
        "hello redis",
    )
    .await;

    // Published through the host's own outbound Redis, too.
    let path = format!(
        "/p/redis?addr={}&op=publish&channel=probe-in&value=again",
        redis.url()
    );
    answers(&host, &path, "ok").await;
    eventually(&host, "/p/kv?store=default&op=get&key=redis:last", "again").await;

    // MQTT: the component publishes via outbound MQTT; the trigger gets it with its topic.
    let path = format!(
        "/p/mqtt?addr={}%3Fclient_id%3Dprobe-publisher&topic=probe/orders&payload=hello%20mqtt",
        mqtt.url()
    );
    answers(&host, &path, "ok").await;
    eventually(
        &host,
        "/p/kv?store=default&op=get&key=mqtt:last",
        "probe/orders=hello mqtt",
    )
    .await;

    host.stop().await;
}

async fn mqtt_publish_fails_while_the_broker_is_gone(kind: HostKind) {
    let mqtt = Mosquitto::start();
    let dir = TempDir::new("mqtt-down");
    let host = start(kind, "mqtt-down", app(&dir, 1, mqtt.port, ""), None).await;
    let path = format!(
        "/p/mqtt?addr={}%3Fclient_id%3Dprobe-down&topic=t&payload=x",
        mqtt.url()
    );
    answers(&host, &path, "ok").await;
    drop(mqtt);
    // The pooled client notices the closed socket; publishing then fails instead of queueing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&host, &path).await;
        if status == 500 {
            assert!(body.contains("ConnectionFailed"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "publish kept succeeding: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.stop().await;
}

/// A Redis key-value store that is down when the host starts does not stop the start (Spin
/// connects on first use): routes that do not touch the store are served.
async fn a_redis_store_that_is_down_at_start_does_not_stop_the_host(kind: HostKind) {
    let dir = TempDir::new("kv-redis-down");
    let nobody = support::redis_runtime_config(
        &format!("redis://127.0.0.1:{}", support::free_port()),
        &dir.path,
    );
    let host = start(kind, "kv-redis-down", app(&dir, 1, 1, ""), Some(nobody)).await;
    assert_eq!(
        get(&host, "/p/no-store-here").await,
        (404, "probe: no such route".into())
    );
    host.stop().await;
}

/// Spin hands an outbound MQTT address to rumqttc's `MqttOptions::parse_url`, which wants a
/// `client_id`: without one, `open` is `invalid-address` even for an allowed broker.
async fn an_mqtt_address_without_client_id_is_refused(kind: HostKind) {
    let mqtt = Mosquitto::start();
    let dir = TempDir::new("mqtt-client-id");
    let host = start(kind, "mqtt-client-id", app(&dir, 1, mqtt.port, ""), None).await;
    let (status, body) = get(
        &host,
        &format!("/p/mqtt?addr={}&topic=t&payload=x", mqtt.url()),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("InvalidAddress"), "{body}");
    host.stop().await;
}

/// Spin runs `[[trigger.mqtt]]` only with the trigger plugin installed.
fn needs_mqtt_trigger(host: HostKind) -> Option<String> {
    if !host.is_spin() || host.unavailable().is_some() {
        return None;
    }
    host.mqtt_trigger_plugin().err()
}

fn main() {
    let mut cases: Vec<Case> = Vec::new();
    for host in HostKind::ALL {
        crate::on_host!(
            cases,
            host,
            "",
            [
                key_value_on_a_real_redis(host),
                a_redis_store_that_is_down_at_start_does_not_stop_the_host(host),
                outbound_hosts_are_enforced(host),
                redis_and_mqtt_triggers_deliver_messages(host).skip_if(needs_mqtt_trigger(host)),
                mqtt_publish_fails_while_the_broker_is_gone(host),
                an_mqtt_address_without_client_id_is_refused(host),
            ]
        );
    }
    harness::run(cases)
}
