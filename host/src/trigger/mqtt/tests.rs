//! The MQTT trigger's own side: its options from the plan (no broker), and its subscription and
//! loop against a real mosquitto (test-brokers) with a recording sink in place of the app. The
//! shared delivery to handlers is tested in `trigger::delivery`; the whole app in host/tests.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, QoS};
use test_brokers::{free_port, Mosquitto};

use super::{listen, MqttPlan, MqttTopic, Subscription, MAX_INCOMING_PACKET};
use crate::secret::Secret;
use crate::trigger::delivery::testing::{self, Listening};

/// The plan of an app with `settings` under `[application.trigger.mqtt]` and `triggers`.
fn plan_of(settings: &str, triggers: &str) -> anyhow::Result<Option<MqttPlan>> {
    let settings = format!("[application.trigger.mqtt]\n{settings}");
    let (manifest, resolver) = testing::app(
        &[("broker", "mqtt://broker.example:1884"), ("user", "orders")],
        &settings,
        triggers,
    )?;
    MqttPlan::configure(&manifest, &resolver)
}

fn trigger(topic: &str, qos: Option<&str>) -> String {
    let qos = qos.map(|q| format!("qos = {q:?}\n")).unwrap_or_default();
    format!("[[trigger.mqtt]]\ntopic = {topic:?}\n{qos}component = \"c\"\n")
}

#[test]
fn the_plan_reads_the_broker_the_credentials_and_each_topic() {
    let settings = "address = \"{{ broker }}\"\nusername = \"{{ user }}\"\n\
                    password = \"pw\"\nkeep_alive_interval = \"5\"";
    let triggers = [
        trigger("orders/placed", Some("0")),
        trigger("orders/+", None),
        trigger("orders/#", Some("2")),
    ];
    let plan = plan_of(settings, &triggers.concat()).unwrap().unwrap();
    let topics: Vec<_> = plan.topics.iter().map(|t| (&t.topic[..], t.qos)).collect();
    assert_eq!(
        topics,
        [
            ("orders/placed", QoS::AtMostOnce),
            ("orders/+", QoS::AtLeastOnce),
            ("orders/#", QoS::ExactlyOnce),
        ]
    );
    let opts = plan.options().unwrap();
    assert_eq!(opts.broker_address(), ("broker.example".into(), 1884));
    let login = opts.credentials().expect("credentials");
    assert_eq!((&login.username[..], &login.password[..]), ("orders", "pw"));
    assert_eq!(opts.keep_alive(), Duration::from_secs(5));
    assert_eq!(opts.max_packet_size(), MAX_INCOMING_PACKET);
    // Like spin-trigger-mqtt, the trigger makes up its client id; two clients never share one
    // (a broker would disconnect the first).
    let other = plan.options().unwrap();
    assert!(opts.client_id().starts_with("nanohost-trigger-"));
    assert_ne!(opts.client_id(), other.client_id());
}

#[test]
fn without_settings_the_plan_takes_the_plugins_defaults() {
    let plan = plan_of("address = \"mqtt://[::1]\"", &trigger("t", None));
    let opts = plan.unwrap().unwrap().options().unwrap();
    assert_eq!(opts.broker_address(), ("::1".into(), 1883));
    assert_eq!(opts.keep_alive(), Duration::from_secs(30));
    assert!(opts.credentials().is_none(), "no username: anonymous");
    // No `[[trigger.mqtt]]`: nothing to start.
    assert!(plan_of("address = \"mqtt://b\"", "").unwrap().is_none());
}

/// `(settings, triggers' topic and qos, what the error says)`.
const REFUSED: &[(&str, &str, Option<&str>, &str)] = &[
    (
        "address = \"https://b:1\"",
        "t",
        None,
        "must start with mqtt://",
    ),
    (
        "address = \"mqtts://b:1\"",
        "t",
        None,
        "TLS is not supported",
    ),
    ("address = \"b:1883\"", "t", None, "MQTT address \"b:1883\""),
    (
        "address = \"broker\"",
        "t",
        None,
        "invalid MQTT address \"broker\"",
    ),
    (
        "address = \"{{ nope }}\"",
        "t",
        None,
        "[application.trigger.mqtt] address",
    ),
    (
        "address = \"mqtt://b\"\nkeep_alive_interval = \"soon\"",
        "t",
        None,
        "keep_alive_interval soon is not a number of seconds",
    ),
    (
        "address = \"mqtt://b\"",
        "t",
        Some("3"),
        "qos \"3\" is not one of 0, 1, 2",
    ),
    (
        "address = \"mqtt://b\"",
        "orders/#/x",
        None,
        "is not a valid MQTT topic filter",
    ),
    (
        "address = \"mqtt://b\"",
        "orders/a+",
        None,
        "is not a valid MQTT topic filter",
    ),
];

#[test]
fn bad_options_are_refused_with_the_setting_named() {
    for (settings, topic, qos, want) in REFUSED {
        let err = plan_of(settings, &trigger(topic, *qos)).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains(want), "{settings} {topic:?}: {err}");
    }
}

const TOPIC: &str = "orders/placed";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A plan for `broker` with `topics`.
fn plan_for(port: u16, topics: &[(&str, QoS)]) -> MqttPlan {
    let topics = topics.iter().map(|(topic, qos)| MqttTopic {
        component: "c".into(),
        topic: topic.to_string(),
        qos: *qos,
    });
    MqttPlan {
        address: format!("mqtt://127.0.0.1:{port}"),
        username: String::new(),
        password: Secret::default(),
        keep_alive: Duration::from_secs(30),
        topics: topics.collect(),
    }
}

/// The trigger's loop on `topics` of the broker on `port`.
async fn running(port: u16, topics: &[(&str, QoS)]) -> Listening {
    let subscription = Subscription::open(&plan_for(port, topics)).await.unwrap();
    Listening::spawn(|sink, shutdown| listen(subscription, sink, shutdown))
}

/// A client that may publish more than the trigger reads, as any broker client may.
async fn publisher(port: u16) -> AsyncClient {
    let mut opts = MqttOptions::new(format!("test-publisher-{port}"), "127.0.0.1", port);
    opts.set_max_packet_size(64 << 20, 64 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
}

async fn publish(client: &AsyncClient, topic: &str, payload: &[u8]) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
        .await
        .unwrap();
}

/// Waits until the broker has logged `count` subscriptions to `topic`.
async fn subscribed(broker: &Mosquitto, topic: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while broker.subscriptions(topic) < count {
        assert!(
            Instant::now() < deadline,
            "{count} subscriptions expected:\n{}",
            broker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The QoS levels the broker logged for subscriptions to `topic` ("<client> <qos> <topic>").
fn logged_qos(broker: &Mosquitto, topic: &str) -> Vec<String> {
    let log = broker.log_text();
    let words = log
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>());
    let subscriptions = words.filter(|w| w.len() >= 2 && w[w.len() - 1] == topic);
    subscriptions.map(|w| w[w.len() - 2].to_string()).collect()
}

#[test]
fn start_subscribes_to_every_topic_with_its_qos() {
    let broker = Mosquitto::start();
    runtime().block_on(async {
        let topics = [(TOPIC, QoS::AtMostOnce), ("orders/+/x", QoS::ExactlyOnce)];
        let run = running(broker.port, &topics).await;
        // Subscription::open waits for the broker's SUBACKs: the log has them now.
        assert_eq!(logged_qos(&broker, TOPIC), ["0"], "{}", broker.log_text());
        assert_eq!(logged_qos(&broker, "orders/+/x"), ["2"]);
        run.stop().await;
    });
}

#[test]
fn an_unreachable_broker_is_a_start_up_error() {
    let port = free_port();
    let err = runtime()
        .block_on(Subscription::open(&plan_for(
            port,
            &[(TOPIC, QoS::AtLeastOnce)],
        )))
        .err()
        .expect("nothing listens");
    let err = format!("{err:#}");
    assert!(
        err.contains(&format!(
            "cannot connect to MQTT broker at 127.0.0.1:{port}"
        )),
        "{err}"
    );
}

#[test]
fn messages_reach_the_sink_in_order_with_their_topic() {
    let broker = Mosquitto::start();
    runtime().block_on(async {
        let mut run = running(broker.port, &[("orders/+", QoS::AtLeastOnce)]).await;
        let client = publisher(broker.port).await;
        let sent = [("orders/placed", "1"), ("orders/paid", "2"), ("other", "x")];
        for (topic, payload) in sent.iter().chain(&[("orders/placed", "3")]) {
            publish(&client, topic, payload.as_bytes()).await;
        }
        for (topic, payload) in [
            ("orders/placed", "1"),
            ("orders/paid", "2"),
            ("orders/placed", "3"),
        ] {
            assert_eq!(
                run.next().await,
                (topic.to_string(), payload.as_bytes().to_vec())
            );
        }
        run.stop().await;
    });
}

/// The one reconnection: a message too large to read (the 17 MiB) is dropped with its
/// connection; the trigger connects and subscribes again and delivers the messages after it.
#[test]
fn after_an_oversized_message_the_trigger_resubscribes_and_delivers_later_ones() {
    let broker = Mosquitto::start();
    runtime().block_on(async {
        let mut run = running(broker.port, &[(TOPIC, QoS::AtLeastOnce)]).await;
        let client = publisher(broker.port).await;
        publish(&client, TOPIC, b"before").await;
        let oversized = 17 << 20;
        assert!(oversized > MAX_INCOMING_PACKET);
        publish(&client, TOPIC, &vec![b'x'; oversized]).await;
        assert_eq!(run.next().await.1, b"before");
        // Published before the trigger has subscribed again, "after" would be lost like any
        // message sent in that gap (the order app's sweep announces those again).
        subscribed(&broker, TOPIC, 2).await;
        publish(&client, TOPIC, b"after").await;
        assert_eq!(run.next().await.1, b"after");
        publish(&client, TOPIC, b"later").await;
        assert_eq!(run.next().await.1, b"later");
    });
}

/// A lost broker ends the loop with the reason, and the app with it: like spin-trigger-mqtt,
/// the trigger does not reconnect (a restart of the host does, as its process manager makes
/// it: then the restarted broker's messages reach it again).
#[test]
fn a_broker_restart_ends_the_loop_and_a_restarted_trigger_hears_again() {
    let broker = Mosquitto::start();
    let port = broker.port;
    runtime().block_on(async {
        let run = running(port, &[(TOPIC, QoS::AtLeastOnce)]).await;
        drop(broker);
        let err = format!("{:#}", run.ended().await.expect_err("no message can come"));
        let address = format!("127.0.0.1:{port}");
        assert!(
            err.contains("lost its broker connection") && err.contains(&address),
            "{err}"
        );
        let broker = Mosquitto::start_on(port);
        let mut run = running(port, &[(TOPIC, QoS::AtLeastOnce)]).await;
        publish(&publisher(port).await, TOPIC, b"after the restart").await;
        assert_eq!(run.next().await.1, b"after the restart");
        drop(broker);
    });
}
