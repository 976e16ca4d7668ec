//! The Redis trigger's own side: its subscriptions from the plan (no broker), and its connection
//! and loop against a real redis-server (test-brokers) with a recording sink in place of the
//! app. The shared delivery to handlers is tested in `trigger::delivery`; the whole app in
//! host/tests.

use test_brokers::{free_port, Redis};

use super::{listen, subscribe, RedisPlan};
use crate::trigger::delivery::testing::{self, Listening};

/// The plan of an app with `application` lines (`[application.trigger.redis]`) and `triggers`.
fn plan_of(application: &str, triggers: &str) -> anyhow::Result<RedisPlan> {
    let (manifest, resolver) = testing::app(
        &[("redis", "redis://cache:6380"), ("topic", "orders")],
        application,
        triggers,
    )?;
    RedisPlan::configure(&manifest, &resolver)
}

fn trigger(channel: &str, address: Option<&str>) -> String {
    let address = address
        .map(|a| format!("address = {a:?}\n"))
        .unwrap_or_default();
    format!("[[trigger.redis]]\nchannel = {channel:?}\n{address}component = \"c\"\n")
}

#[test]
fn each_subscription_takes_the_apps_address_unless_it_names_its_own() {
    let application = "[application.trigger.redis]\naddress = \"{{ redis }}\"";
    let triggers = [
        trigger("{{ topic }}.placed", None),
        trigger("audit", Some("redis://:pw@audit:6379")),
    ];
    let plan = plan_of(application, &triggers.concat()).unwrap();
    let got: Vec<_> = plan
        .subscriptions
        .iter()
        .map(|s| (&s.component[..], &s.address[..], &s.channel[..]))
        .collect();
    assert_eq!(
        got,
        [
            ("c", "redis://cache:6380", "orders.placed"),
            ("c", "redis://:pw@audit:6379", "audit"),
        ]
    );
}

/// `(application lines, trigger's address, what the error says)`.
const REFUSED: &[(&str, Option<&str>, &str)] = &[
    (
        "",
        None,
        "channel \"c\" has no address: set [application.trigger.redis] address",
    ),
    (
        "",
        Some("nats://x:1"),
        "invalid Redis address \"nats://x:1\"",
    ),
    (
        "[application.trigger.redis]\naddress = \"{{ nope }}\"",
        None,
        "[application.trigger.redis] address",
    ),
    // A password is never shown.
    (
        "",
        Some("http://:hunter2-pw@x"),
        "invalid Redis address \"http://:***@x",
    ),
];

#[test]
fn bad_addresses_are_refused_with_the_setting_named() {
    for (application, address, want) in REFUSED {
        let err = plan_of(application, &trigger("c", *address)).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains(want), "{address:?}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn channels(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// `subscribe(address, names)`, with `check` run while the subscription is alive.
fn subscribed<T>(address: &str, names: &[&str], check: impl FnOnce() -> T) -> anyhow::Result<T> {
    runtime().block_on(async {
        let _pubsub = subscribe(address, &channels(names)).await?;
        Ok(check())
    })
}

#[test]
fn start_subscribes_to_every_channel_it_is_given() {
    let redis = Redis::start();
    let counts = subscribed(&redis.url(), &["orders.placed", "other"], || {
        (
            redis.subscribers("orders.placed"),
            redis.subscribers("other"),
        )
    })
    .unwrap();
    assert_eq!(counts, (1, 1));
}

#[test]
fn a_redis_that_wants_a_password_is_reached_only_with_it() {
    let redis = Redis::start_with(free_port(), &["--requirepass", "s3cret-pw"]);
    let with = redis.url().replace("redis://", "redis://:s3cret-pw@");
    let count = subscribed(&with, &["c"], || redis.subscribers("c")).unwrap();
    assert_eq!(count, 1);
    // Without it, redis-rs alone would report a subscription that does not exist.
    let err = format!("{:#}", subscribed(&redis.url(), &["c"], || ()).unwrap_err());
    assert!(
        err.contains("NOAUTH") && err.contains(&redis.url()),
        "{err}"
    );
    let wrong = redis.url().replace("redis://", "redis://:wrong-s3cret@");
    let err = format!("{:#}", subscribed(&wrong, &["c"], || ()).unwrap_err());
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("s3cret"), "a password in the error: {err}");
}

#[test]
fn nothing_listening_or_a_bad_address_is_a_start_up_error() {
    let port = free_port();
    let err = format!(
        "{:#}",
        subscribed(&format!("redis://127.0.0.1:{port}"), &["c"], || ()).unwrap_err()
    );
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    let err = format!("{:#}", subscribed("nats://x:1", &["c"], || ()).unwrap_err());
    assert!(err.contains("invalid Redis address"), "{err}");
}

/// The trigger's loop on `names`.
async fn running(redis: &Redis, names: &[&str]) -> Listening {
    let pubsub = subscribe(&redis.url(), &channels(names)).await.unwrap();
    Listening::spawn(|sink, shutdown| listen(redis.url(), pubsub, sink, shutdown))
}

fn publish(redis: &Redis, channel: &str, payload: &str) {
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(receivers, 1, "{channel}");
}

#[test]
fn messages_reach_the_sink_in_order_with_their_channel() {
    let redis = Redis::start();
    runtime().block_on(async {
        let mut run = running(&redis, &["orders.placed", "audit"]).await;
        let sent = [
            ("orders.placed", "1"),
            ("audit", "2"),
            ("orders.placed", "3"),
        ];
        for (channel, payload) in sent {
            publish(&redis, channel, payload);
        }
        for (channel, payload) in sent {
            assert_eq!(run.next().await, (channel.into(), payload.into()));
        }
        run.stop().await;
    });
}

/// A lost connection ends the loop with Spin's reason, and the app with it: the trigger does
/// not resubscribe (a restart of the host does, as its process manager makes it: then the
/// restarted Redis's messages reach it again).
#[test]
fn a_redis_restart_ends_the_loop_and_a_restarted_trigger_hears_again() {
    let redis = Redis::start();
    let (port, url) = (redis.port, redis.url());
    runtime().block_on(async {
        let run = running(&redis, &["c"]).await;
        drop(redis);
        let err = format!("{:#}", run.ended().await.expect_err("no message can come"));
        assert_eq!(err, format!("Redis trigger disconnected from {url}"));
        let redis = Redis::start_on(port);
        let mut run = running(&redis, &["c"]).await;
        publish(&redis, "c", "after the restart");
        assert_eq!(run.next().await.1, b"after the restart");
    });
}
