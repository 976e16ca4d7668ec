//! The networked shapes end to end (issue 4): the order app publishes "order placed" to a real
//! Mosquitto or Redis, a second app on the same host process is started by the MQTT or Redis
//! trigger and fulfils it, and both share one Redis-backed key-value store.

mod support;

use nanohost::{HostOptions, RunningHost};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{Mosquitto, Redis, TempDir};

/// Long enough for a slow CI machine; a healthy run needs a fraction of it.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Mqtt,
    Redis,
}

struct Shape {
    order_app: RunningHost,
    fulfilment_app: RunningHost,
    base: String,
    client: Client,
    redis: Redis,
    mosquitto: Option<Mosquitto>,
    _dir: TempDir,
}

fn manifest(app: &str) -> PathBuf {
    let root = support::workspace_root();
    let wasm = root.join(format!("target/composed/{app}.wasm"));
    assert!(
        wasm.is_file(),
        "{} is missing: run `cargo xtask build` first",
        wasm.display()
    );
    root.join(format!("apps/{app}/spin.toml"))
}

impl Shape {
    /// Starts the fulfilment app first, so that it is subscribed before any order is published.
    async fn start(transport: Transport) -> Shape {
        Shape::start_with_broker(transport, None).await
    }

    /// `broker_override` points the order app at another broker address (e.g. one that is down).
    async fn start_with_broker(transport: Transport, broker_override: Option<String>) -> Shape {
        let redis = Redis::start();
        let mosquitto = (transport == Transport::Mqtt).then(Mosquitto::start);
        let dir = TempDir::new("networked");
        let runtime_config = redis.runtime_config(&dir);
        let (name, variables) = match &mosquitto {
            Some(broker) => ("mqtt", vec![("mqtt_address", broker.url())]),
            None => ("redis", vec![("redis_address", redis.url())]),
        };
        let variables: Vec<(String, String)> = variables
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let options = |app: &str, variables: Vec<(String, String)>| HostOptions {
            manifest: manifest(app),
            runtime_config: Some(runtime_config.clone()),
            listen: "127.0.0.1:0".parse().unwrap(),
            variables,
        };

        let fulfilment_app =
            RunningHost::start(options(&format!("fulfilment-{name}"), variables.clone()))
                .await
                .expect("the fulfilment app starts");
        let order_variables = match broker_override {
            Some(address) => vec![(variables[0].0.clone(), address)],
            None => variables,
        };
        let order_app = RunningHost::start(options(&format!("order-app-{name}"), order_variables))
            .await
            .expect("the order app starts");
        let base = format!("http://{}", order_app.http_addr().unwrap());
        Shape {
            order_app,
            fulfilment_app,
            base,
            client: Client::new(),
            redis,
            mosquitto,
            _dir: dir,
        }
    }

    async fn place(&self, details: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/order", self.base))
            .header("content-type", "application/json")
            .body(json!({ "details": details }).to_string())
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn status(&self, id: &str) -> String {
        let response = self
            .client
            .get(format!("{}/order/{id}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["status"].as_str().unwrap().to_string()
    }

    /// Polls every 10 ms until the order shows `fulfilled`; panics at the deadline.
    async fn wait_fulfilled(&self, id: &str) {
        let deadline = Instant::now() + DELIVERY_DEADLINE;
        while self.status(id).await != "fulfilled" {
            assert!(Instant::now() < deadline, "order {id} was never fulfilled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn stored_orders(&self) -> usize {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*order:*")
            .query(&mut self.redis.connection())
            .unwrap();
        keys.len()
    }

    /// Puts raw bytes on the orders topic/channel, as a foreign or broken publisher would.
    async fn publish_raw(&self, payload: &[u8]) {
        match &self.mosquitto {
            Some(broker) => {
                let mut options =
                    rumqttc::MqttOptions::new("junk-publisher", "127.0.0.1", broker.port);
                options.set_keep_alive(Duration::from_secs(5));
                let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
                client
                    .publish(
                        "orders/placed",
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        payload.to_vec(),
                    )
                    .await
                    .unwrap();
                // Drive the connection until the broker acknowledged the publish.
                loop {
                    match eventloop.poll().await.unwrap() {
                        rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) => break,
                        _ => continue,
                    }
                }
                client.disconnect().await.unwrap();
            }
            None => {
                let mut connection = self.redis.connection();
                let receivers: i64 = redis::cmd("PUBLISH")
                    .arg("orders.placed")
                    .arg(payload)
                    .query(&mut connection)
                    .unwrap();
                assert_eq!(receivers, 1, "the fulfilment app is subscribed");
            }
        }
    }

    async fn stop(self) {
        self.order_app.shutdown().await.unwrap();
        self.fulfilment_app.shutdown().await.unwrap();
    }
}

async fn an_order_travels_to_fulfilment(transport: Transport) {
    let shape = Shape::start(transport).await;
    let (status, body) = shape.place("sent over the wire").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["task"]["status"], "accepted");
    shape
        .wait_fulfilled(body["task"]["id"].as_str().unwrap())
        .await;
    shape.stop().await;
}

/// 1,000 orders from 32 concurrent clients: every one is accepted, stored once and fulfilled.
async fn a_thousand_orders_are_all_fulfilled_once(transport: Transport) {
    let shape = std::sync::Arc::new(Shape::start(transport).await);
    let mut clients = Vec::new();
    for client in 0..32 {
        let shape = shape.clone();
        clients.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (client..1000).step_by(32) {
                let (status, body) = shape.place(&format!("order {n}")).await;
                assert_eq!(status, StatusCode::ACCEPTED, "{body}");
                ids.push(body["task"]["id"].as_str().unwrap().to_string());
            }
            ids
        }));
    }
    let mut ids = HashSet::new();
    for client in clients {
        for id in client.await.unwrap() {
            assert!(ids.insert(id), "an id was handed out twice");
        }
    }
    assert_eq!(ids.len(), 1000);
    for id in &ids {
        shape.wait_fulfilled(id).await;
    }
    assert_eq!(
        shape.stored_orders(),
        1000,
        "an order was lost or stored twice"
    );
    let shape = std::sync::Arc::into_inner(shape).unwrap();
    shape.stop().await;
}

async fn junk_messages_do_not_stop_the_listener(transport: Transport) {
    let shape = Shape::start(transport).await;
    for junk in [
        &b"not json at all"[..],
        b"",
        br#"{"v": 99, "kind": "order-placed", "order": {}}"#,
        br#"{"v": 1, "kind": "order-placed", "order": {"id": "6f1d2c3b-4a59-4e68-b7a6-958473625140", "details": "ghost", "placed_at": 1}}"#,
    ] {
        shape.publish_raw(junk).await;
    }
    let (status, body) = shape.place("after the junk").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    shape
        .wait_fulfilled(body["task"]["id"].as_str().unwrap())
        .await;
    assert_eq!(shape.stored_orders(), 1, "junk created no orders");
    shape.stop().await;
}

/// With the broker unreachable the client gets a 503 and the order is withdrawn: nothing stays
/// behind that no one will ever fulfil.
async fn a_broker_that_is_down_gives_503_and_stores_nothing(transport: Transport) {
    let dead = format!(
        "{}://127.0.0.1:{}",
        if transport == Transport::Mqtt {
            "mqtt"
        } else {
            "redis"
        },
        support::free_port()
    );
    let shape = Shape::start_with_broker(transport, Some(dead)).await;
    let (status, body) = shape.place("nowhere to go").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("fulfilment"),
        "{body}"
    );
    assert_eq!(shape.stored_orders(), 0);
    shape.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_an_order_travels_to_fulfilment() {
    an_order_travels_to_fulfilment(Transport::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_an_order_travels_to_fulfilment() {
    an_order_travels_to_fulfilment(Transport::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_a_thousand_orders_are_all_fulfilled_once() {
    a_thousand_orders_are_all_fulfilled_once(Transport::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_thousand_orders_are_all_fulfilled_once() {
    a_thousand_orders_are_all_fulfilled_once(Transport::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_junk_messages_do_not_stop_the_listener() {
    junk_messages_do_not_stop_the_listener(Transport::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_junk_messages_do_not_stop_the_listener() {
    junk_messages_do_not_stop_the_listener(Transport::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_a_broker_that_is_down_gives_503_and_stores_nothing() {
    a_broker_that_is_down_gives_503_and_stores_nothing(Transport::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_broker_that_is_down_gives_503_and_stores_nothing() {
    a_broker_that_is_down_gives_503_and_stores_nothing(Transport::Redis).await;
}
