//! The networked shapes end to end (issue 4), on nanohost and on real Spin 3.6.3: the order app
//! publishes "order placed" to a real Mosquitto or Redis, the fulfilment app (a second host,
//! started by the MQTT or Redis trigger) fulfils it, and both share one Redis-backed key-value
//! store. One table of cases; the host and the transport are parameters.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::Value;
use support::harness::{self, case, Case, HostKind};
use support::host::{App, AppDir};
use support::orders::{self, Transport};
use support::{Mosquitto, Redis};

/// Long enough for a slow CI machine; a healthy run needs a fraction of it.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);

/// Two apps and their brokers. Fields drop in order: the apps stop before the brokers.
struct Shape {
    _order_app: App,
    _fulfilment_app: App,
    base: String,
    client: Client,
    redis: Redis,
    mosquitto: Option<Mosquitto>,
}

impl Shape {
    /// Starts the fulfilment app first and waits until it is subscribed, so that no order is
    /// published before anyone listens. `broker_override` points the order app at another broker
    /// address (e.g. one that is down).
    async fn start(
        host: HostKind,
        transport: Transport,
        label: &str,
        broker_override: Option<String>,
    ) -> Shape {
        let redis = Redis::start();
        let mosquitto = (transport == Transport::Mqtt).then(Mosquitto::start);
        let fulfilment_dir = AppDir::new(&format!("{label}-fulfilment"));
        let order_dir = AppDir::new(&format!("{label}-order-app"));
        let runtime_config = support::redis_runtime_config(&redis.url(), &fulfilment_dir.path);
        let (variable, address) = match &mosquitto {
            Some(broker) => ("mqtt_address", broker.url()),
            None => ("redis_address", redis.url()),
        };
        let spec = |app: String| support::networked_app(&app, &runtime_config);
        let name = transport.name();

        let mut fulfilment_app = App::start(
            host,
            &spec(format!("fulfilment-{name}")).variable(variable, &address),
            &fulfilment_dir,
        )
        .await;
        orders::wait_until_subscribed(&mut fulfilment_app, mosquitto.as_ref(), |channel| {
            redis.subscribers(channel)
        })
        .await;
        let order_app = App::start(
            host,
            &spec(format!("order-app-{name}"))
                .variable(variable, broker_override.unwrap_or(address)),
            &order_dir,
        )
        .await;
        Shape {
            base: order_app.base(),
            _order_app: order_app,
            _fulfilment_app: fulfilment_app,
            client: Client::new(),
            redis,
            mosquitto,
        }
    }

    async fn place(&self, details: &str) -> (StatusCode, Value) {
        let response = orders::place_request(&self.client, &self.base, details)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn status(&self, id: &str) -> String {
        orders::status_at(&self.client, &self.base, id).await
    }

    /// The orders that are not `fulfilled` by the delivery deadline.
    async fn unfulfilled_after_deadline(&self, ids: &HashSet<String>) -> Vec<String> {
        orders::unfulfilled_after(DELIVERY_DEADLINE, ids, &mut &*self).await
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
                support::mqtt_publish(broker.port, "orders/placed", payload.to_vec()).await;
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
}

async fn an_order_travels_to_fulfilment(shape: &Shape) {
    let (status, body) = shape.place("sent over the wire").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["task"]["status"], "accepted");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    let never = shape.unfulfilled_after_deadline(&HashSet::from([id])).await;
    assert!(never.is_empty(), "order {never:?} was never fulfilled");
}

/// 1,000 orders from 32 concurrent clients: every one is accepted, stored once and fulfilled.
async fn a_thousand_orders_are_all_fulfilled_once(shape: &Shape) {
    const ORDERS: usize = 1000;
    const CLIENTS: usize = 32;
    let stored_before = shape.stored_orders();
    let mut ids = HashSet::new();
    let mut handed_out_twice = 0;
    let mut refused: HashMap<String, usize> = HashMap::new();
    for (status, body) in orders::post_orders(&shape.client, &shape.base, ORDERS, CLIENTS).await {
        if status == StatusCode::ACCEPTED {
            let body: Value = serde_json::from_str(&body).unwrap();
            if !ids.insert(body["task"]["id"].as_str().unwrap().to_string()) {
                handed_out_twice += 1;
            }
        } else {
            *refused.entry(format!("{status} {body}")).or_default() += 1;
        }
    }
    let lost = shape.unfulfilled_after_deadline(&ids).await.len();
    let stored = shape.stored_orders() - stored_before;
    let duplicated = stored.saturating_sub(ids.len()) + handed_out_twice;
    harness::loud(&format!(
        "{} orders: {} accepted, {} fulfilled, {lost} lost, {duplicated} duplicated, {} refused {refused:?}",
        ORDERS,
        ids.len(),
        ids.len() - lost,
        ORDERS - ids.len() - handed_out_twice,
    ));
    assert!(refused.is_empty(), "orders were refused: {refused:?}");
    assert_eq!((lost, duplicated), (0, 0), "orders lost, duplicated");
    assert_eq!(stored, ORDERS, "an order was lost or stored twice");
}

async fn junk_messages_do_not_stop_the_listener(shape: &Shape) {
    let stored_before = shape.stored_orders();
    for junk in [
        &b"not json at all"[..],
        b"",
        br#"{"v": 99, "kind": "order-placed", "order": {}}"#,
        br#"{"v": 1, "kind": "order-placed", "order": {"id": "6f1d2c3b-4a59-4e68-b7a6-958473625140", "details": "ghost", "placed_at": 1}}"#,
    ] {
        shape.publish_raw(junk).await;
    }
    let (status, body) = shape.place("after the junk").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    let never = shape.unfulfilled_after_deadline(&HashSet::from([id])).await;
    assert!(never.is_empty(), "order {never:?} was never fulfilled");
    assert_eq!(
        shape.stored_orders() - stored_before,
        1,
        "junk created no orders"
    );
}

/// With the broker unreachable the order is still accepted: it is stored, stays `accepted`, and
/// the sweeper announces it again later (no withdraw after a stored order). Never a 202 for an
/// order that is then gone.
async fn a_broker_that_is_down_loses_no_accepted_order(host: HostKind, transport: Transport) {
    let dead = format!("{}://127.0.0.1:{}", transport.name(), support::free_port());
    let label = format!("{}-{}-broker-down", host.name(), transport.name());
    let shape = Shape::start(host, transport, &label, Some(dead)).await;
    let (status, body) = shape.place("nowhere to go").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["task"]["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(shape.status(id).await, "accepted", "{body}");
}

impl orders::OrderStatus for &Shape {
    async fn status_of(&mut self, id: &str) -> String {
        self.status(id).await
    }
}

fn shape_unavailable(host: HostKind, transport: Transport, _case: &str) -> Option<String> {
    transport.unavailable_on(host)
}

fn main() {
    let mut cases: Vec<Case> = Vec::new();
    for host in HostKind::ALL {
        for transport in [Transport::Redis, Transport::Mqtt] {
            crate::on_shared!(
                cases,
                host,
                transport,
                |host, transport, key| Shape::start(host, transport, key, None),
                shape_unavailable,
                [
                    an_order_travels_to_fulfilment,
                    junk_messages_do_not_stop_the_listener,
                    a_thousand_orders_are_all_fulfilled_once,
                ]
            );
            cases.push(
                case(
                    host,
                    format!(
                        "{}::a_broker_that_is_down_loses_no_accepted_order",
                        transport.name()
                    ),
                    move || a_broker_that_is_down_loses_no_accepted_order(host, transport),
                )
                .skip_if(shape_unavailable(
                    host,
                    transport,
                    "a_broker_that_is_down_loses_no_accepted_order",
                )),
            );
        }
    }
    harness::run(cases)
}
