//! "Order placed" between the two apps of a networked shape (issue 18, items 1, 2 and 7), on the
//! MQTT, Redis and HTTP shapes, on nanohost and on real Spin 3.6.3:
//! - every order the API accepts reaches `fulfilled` whatever its details: the largest valid
//!   details and the most escaped ones (a message that carried them went past rumqttc's 10 KiB
//!   packet limit, which Spin's outbound MQTT cannot change: accepted, never fulfilled);
//! - a message the order app did not sign (v1, unsigned; another key; a signature moved to
//!   another order) fulfils nothing, and the HTTP listener says why in a JSON 4xx;
//! - a sweep announces its orders on one broker connection, not one per order.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_messages::{MessageKey, PlacedOrder};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use support::harness::{self, Case, HostKind};
use support::host::{App, AppDir};
use support::orders::{self, Transport};
use support::{Mosquitto, Redis};
use tokio::net::{TcpListener, TcpStream};

/// Long enough for a slow machine; a healthy run needs a fraction of it.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);

/// The receiver's limit on `details` (components/business/receiver: `MAX_DETAILS_BYTES`).
const MAX_DETAILS_BYTES: usize = 16 * 1024;
/// The gateway's limit on a request body (components/adapters/http-gateway: `MAX_BODY_BYTES`).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// A control character is six bytes in JSON (`\u0001`): as many as fit in one request body
/// (`{"details":"..."}`), which is fewer than the details limit allows.
const MOST_CONTROL_CHARACTERS: usize = (MAX_BODY_BYTES - r#"{"details":""}"#.len()) / 6;

const SWEEP_TOKEN: &str = "messages-test-sweep-token";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Carrier {
    Mqtt,
    Redis,
    Http,
}

impl Carrier {
    fn name(self) -> &'static str {
        match self {
            Carrier::Mqtt => "mqtt",
            Carrier::Redis => "redis",
            Carrier::Http => "http",
        }
    }

    fn unavailable_on(self, host: HostKind, _case: &str) -> Option<String> {
        match self {
            Carrier::Mqtt => Transport::Mqtt.unavailable_on(host),
            Carrier::Redis | Carrier::Http => None,
        }
    }
}

/// Where the order app sends "order placed".
#[derive(Clone, Copy, PartialEq)]
enum Announce {
    /// To the fulfilment app: the normal shape.
    ToFulfilment,
    /// Where no one listens (another topic or channel on the same broker; for HTTP, a port
    /// nothing serves): every order stays `accepted` until the test sends a message itself.
    Elsewhere,
}

/// The two apps, the store's Redis (the Redis shape's pub/sub too) and the broker. Fields drop
/// in order: apps before brokers.
struct Apps {
    carrier: Carrier,
    _order_app: App,
    fulfilment_app: App,
    base: String,
    client: Client,
    /// Between the order app's publisher and its broker (MQTT and Redis shapes).
    publisher_proxy: Option<CountingProxy>,
    redis: Redis,
    mosquitto: Option<Mosquitto>,
}

/// A TCP proxy on a free loopback port in front of `upstream` that counts the connections it
/// takes: what a broker's logs would tell, on both brokers alike.
struct CountingProxy {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    async fn start(upstream: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        CountingProxy {
            port,
            accepted,
            task,
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Apps {
    async fn start(host: HostKind, carrier: Carrier, label: &str, announce: Announce) -> Apps {
        let redis = Redis::start();
        let mosquitto = (carrier == Carrier::Mqtt).then(Mosquitto::start);
        let fulfilment_dir = AppDir::new(&format!("{label}-fulfilment"));
        let order_dir = AppDir::new(&format!("{label}-order-app"));
        let runtime_config = support::redis_runtime_config(&redis.url(), &fulfilment_dir.path);
        let spec = |app: String| support::networked_app(&app, &runtime_config);
        let name = carrier.name();
        let broker = match carrier {
            Carrier::Mqtt => Some(("mqtt_address", mosquitto.as_ref().unwrap().port)),
            Carrier::Redis => Some(("redis_address", redis.port)),
            Carrier::Http => None,
        };
        let address = |port: u16| format!("{name}://127.0.0.1:{port}");
        let mut fulfilment_spec = spec(format!("fulfilment-{name}"));
        if let Some((variable, port)) = broker {
            fulfilment_spec = fulfilment_spec.variable(variable, address(port));
        }
        let mut fulfilment_app = App::start(host, &fulfilment_spec, &fulfilment_dir).await;
        if carrier != Carrier::Http {
            orders::wait_until_subscribed(&mut fulfilment_app, mosquitto.as_ref(), |channel| {
                redis.subscribers(channel)
            })
            .await;
        }
        let mut order_spec = spec(format!("order-app-{name}"))
            .variable("sweep_grace_ms", "0")
            .variable("sweep_token", SWEEP_TOKEN);
        let mut publisher_proxy = None;
        if let Some((variable, port)) = broker {
            let proxy = CountingProxy::start(port).await;
            order_spec = order_spec.variable(variable, address(proxy.port));
            publisher_proxy = Some(proxy);
        }
        order_spec = match (carrier, announce) {
            (Carrier::Http, Announce::ToFulfilment) => {
                order_spec.variable("fulfilment_origin", fulfilment_app.base())
            }
            (Carrier::Http, Announce::Elsewhere) => order_spec.variable(
                "fulfilment_origin",
                format!("http://127.0.0.1:{}", support::free_port()),
            ),
            (_, Announce::ToFulfilment) => order_spec,
            (Carrier::Mqtt, Announce::Elsewhere) => {
                order_spec.variable("orders_topic", "orders/elsewhere")
            }
            (Carrier::Redis, Announce::Elsewhere) => {
                order_spec.variable("orders_channel", "orders.elsewhere")
            }
        };
        let order_app = App::start(host, &order_spec, &order_dir).await;
        Apps {
            carrier,
            base: order_app.base(),
            _order_app: order_app,
            fulfilment_app,
            client: Client::new(),
            publisher_proxy,
            redis,
            mosquitto,
        }
    }

    /// Places an order with `details`; its id, once the answer is 202.
    async fn place(&self, details: &str) -> Result<String, String> {
        let response = orders::place_request(&self.client, &self.base, details)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        if status != StatusCode::ACCEPTED {
            return Err(format!("{status} {text}"));
        }
        let body: Value = serde_json::from_str(&text).unwrap();
        Ok(body["task"]["id"].as_str().unwrap().to_string())
    }

    async fn status(&self, id: &str) -> String {
        orders::status_at(&self.client, &self.base, id).await
    }

    /// Puts `payload` where the fulfilment app listens, as any client of the broker (or of the
    /// fulfilment app's HTTP route) can. For HTTP, the answer's status and JSON body.
    async fn send_raw(&self, payload: &[u8]) -> Option<(StatusCode, Value)> {
        if self.carrier == Carrier::Mqtt {
            let port = self.mosquitto.as_ref().unwrap().port;
            support::mqtt_publish(port, "orders/placed", payload.to_vec()).await;
            return None;
        }
        if self.carrier == Carrier::Redis {
            let receivers: i64 = redis::cmd("PUBLISH")
                .arg("orders.placed")
                .arg(payload)
                .query(&mut self.redis.connection())
                .unwrap();
            assert_eq!(receivers, 1, "the fulfilment app is subscribed");
            return None;
        }
        let response = self
            .client
            .post(format!("{}/fulfil", self.fulfilment_app.base()))
            .header("content-type", "application/json")
            .body(payload.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("/fulfil answered {status} with no JSON ({e}): {text}"));
        Some((status, body))
    }

    async fn sweep(&self) -> Value {
        let response = self
            .client
            .post(format!("{}/sweep", self.base))
            .bearer_auth(SWEEP_TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Connections the order app's publisher has opened to its broker so far.
    fn publisher_connections(&self) -> usize {
        let proxy = self.publisher_proxy.as_ref().expect("a broker");
        proxy.accepted.load(Ordering::SeqCst)
    }
}

impl orders::OrderStatus for &Apps {
    async fn status_of(&mut self, id: &str) -> String {
        self.status(id).await
    }
}

/// Details at the limits of what the API accepts: each is answered 202 and fulfilled.
async fn the_largest_and_the_most_escaped_details_are_fulfilled(apps: &Apps) {
    let table = [
        ("16 KiB of letters", "x".repeat(MAX_DETAILS_BYTES)),
        ("16 KiB of quotes", "\"".repeat(MAX_DETAILS_BYTES)),
        (
            "control characters, as many as a request carries",
            "\u{1}".repeat(MOST_CONTROL_CHARACTERS),
        ),
    ];
    let mut ids = HashSet::new();
    let mut refused = Vec::new();
    for (what, details) in &table {
        match apps.place(details).await {
            Ok(id) => {
                ids.insert(id);
            }
            Err(answer) => refused.push(format!("{what}: {answer}")),
        }
    }
    let never = orders::unfulfilled_after(DELIVERY_DEADLINE, &ids, &mut &*apps).await;
    harness::loud(&format!(
        "{} orders at the limits: {} accepted, {} fulfilled, {} accepted but never fulfilled, {} refused",
        table.len(),
        ids.len(),
        ids.len() - never.len(),
        never.len(),
        refused.len()
    ));
    assert!(refused.is_empty(), "valid orders were refused: {refused:?}");
    assert!(never.is_empty(), "accepted, never fulfilled: {never:?}");
}

/// Messages that a client of the broker could make without the key, each for an order that is
/// `accepted`: none fulfils it. A signed message for a second order, sent after them, is fulfilled:
/// the listener was there and read them.
async fn forged_messages_fulfil_nothing(host: HostKind, carrier: Carrier) {
    let label = format!("{}-{}-forged", host.name(), carrier.name());
    let apps = Apps::start(host, carrier, &label, Announce::Elsewhere).await;
    let target = apps.place("a stuck order").await.unwrap();
    let witness = apps.place("the witness").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        apps.status(&target).await,
        "accepted",
        "nothing announced it"
    );

    let key = MessageKey::new(support::MESSAGE_KEY).unwrap();
    let placed = |id: &str| PlacedOrder {
        id: id.to_string(),
        placed_at: 1,
    };
    let signed_for_witness: Value =
        serde_json::from_slice(&order_messages::encode(&placed(&witness), &key)).unwrap();
    let mut moved = signed_for_witness.clone();
    moved["order"]["id"] = target.clone().into();
    let mut unsigned = signed_for_witness.clone();
    unsigned.as_object_mut().unwrap().remove("sig");
    unsigned["order"]["id"] = target.clone().into();
    let other_key = MessageKey::new("not the apps' key").unwrap();
    let forgeries: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        (
            "v1, unsigned",
            json!({"v": 1, "kind": "order-placed",
                   "order": {"id": target, "details": "forged", "placed_at": 1}})
            .to_string()
            .into_bytes(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "v2 without a signature",
            unsigned.to_string().into_bytes(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "signed with another key",
            order_messages::encode(&placed(&target), &other_key),
            StatusCode::FORBIDDEN,
        ),
        (
            "the witness's signature on this order",
            moved.to_string().into_bytes(),
            StatusCode::FORBIDDEN,
        ),
        ("not JSON", b"fulfil it".to_vec(), StatusCode::BAD_REQUEST),
    ];
    for (what, payload, expected) in &forgeries {
        if let Some((status, body)) = apps.send_raw(payload).await {
            assert_eq!(status, *expected, "{what}: {body}");
            assert!(body["error"].is_string(), "{what}: {body}");
        }
    }
    let genuine = apps
        .send_raw(signed_for_witness.to_string().as_bytes())
        .await;
    if let Some((status, body)) = genuine {
        assert_eq!(status, StatusCode::OK, "the signed message: {body}");
    }
    let witness_never = orders::unfulfilled_after(
        DELIVERY_DEADLINE,
        &HashSet::from([witness.clone()]),
        &mut &apps,
    )
    .await;
    // The forgeries went first, on the same topic or channel; give a slow listener a moment more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let target_status = apps.status(&target).await;
    harness::loud(&format!(
        "{} forged messages: {} fulfilled their order; 1 signed message: {} fulfilled",
        forgeries.len(),
        usize::from(target_status == "fulfilled"),
        1 - witness_never.len()
    ));
    assert!(
        witness_never.is_empty(),
        "the signed message was not fulfilled"
    );
    assert_eq!(
        target_status, "accepted",
        "a forged message fulfilled an order"
    );
}

/// A sweep that announces many orders opens one broker connection for all of them.
async fn a_sweep_announces_on_one_connection(host: HostKind, carrier: Carrier) {
    const ORDERS: usize = 60;
    let label = format!("{}-{}-sweep-connections", host.name(), carrier.name());
    let apps = Apps::start(host, carrier, &label, Announce::Elsewhere).await;
    for n in 0..ORDERS {
        apps.place(&format!("order {n}")).await.unwrap();
    }
    // The placements' own connections are logged by now (each publish waited for its ack).
    let before = apps.publisher_connections();
    let started = Instant::now();
    let report = apps.sweep().await;
    let took = started.elapsed();
    let opened = apps.publisher_connections() - before;
    harness::loud(&format!(
        "a sweep of {ORDERS} accepted orders: {} announced, {} failed, {opened} broker connection(s), {took:?}",
        report["announced"], report["failed"]
    ));
    assert_eq!(report["announced"], ORDERS, "{report}");
    // nanohost pools Redis connections per address (host/README.md), so there a sweep may open
    // none; Spin opens one per `open`.
    assert!(
        opened <= 1,
        "{opened} broker connections opened by one sweep"
    );
}

fn main() {
    let mut cases: Vec<Case> = Vec::new();
    for host in HostKind::ALL {
        for carrier in [Carrier::Mqtt, Carrier::Redis, Carrier::Http] {
            crate::on_shared!(
                cases,
                host,
                carrier,
                |host, carrier, key| Apps::start(host, carrier, key, Announce::ToFulfilment),
                skip_for,
                [the_largest_and_the_most_escaped_details_are_fulfilled]
            );
            let skip = |tag| carrier.unavailable_on(host, tag);
            crate::on_host!(
                cases,
                host,
                format!("{}::", carrier.name()),
                [forged_messages_fulfil_nothing(host, carrier).skip_if(skip("forged"))]
            );
            if carrier != Carrier::Http {
                crate::on_host!(
                    cases,
                    host,
                    format!("{}::", carrier.name()),
                    [a_sweep_announces_on_one_connection(host, carrier).skip_if(skip("sweep"))]
                );
            }
        }
    }
    harness::run(cases)
}

fn skip_for(host: HostKind, carrier: Carrier, case: &str) -> Option<String> {
    carrier.unavailable_on(host, case)
}
