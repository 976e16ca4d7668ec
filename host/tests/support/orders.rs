//! What the suites that drive the order apps share: the transports of the networked shapes, a
//! bounded load of concurrent `POST /order`s, and the wait until orders are fulfilled.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use super::harness::HostKind;
use super::host::App;
use super::Mosquitto;

/// How a networked shape carries "order placed" to its fulfilment app.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Transport {
    Mqtt,
    Redis,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Mqtt => "mqtt",
            Transport::Redis => "redis",
        }
    }

    /// Why the shape cannot run on `host` here, beyond a missing host: Spin runs
    /// `[[trigger.mqtt]]` only with the trigger plugin installed.
    pub fn unavailable_on(self, host: HostKind) -> Option<String> {
        if !host.is_spin() || self != Transport::Mqtt || host.unavailable().is_some() {
            return None;
        }
        host.mqtt_trigger_plugin().err()
    }
}

/// `POST /order` of `{"details": details}` to the order app at `base`.
pub fn place_request(http: &Client, base: &str, details: &str) -> RequestBuilder {
    http.post(format!("{base}/order"))
        .header("content-type", "application/json")
        .body(json!({ "details": details }).to_string())
}

/// The `status` of the order `id` on the order app at `base`; the look-up must answer 200.
pub async fn status_at(http: &Client, base: &str, id: &str) -> String {
    let response = http.get(format!("{base}/order/{id}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["status"].as_str().unwrap().to_string()
}

/// `count` orders (`{"details": "order <n>"}`) from `clients` concurrent clients on their own
/// connections; every reply's status and body text, in no particular order.
pub async fn post_orders(
    http: &Client,
    base: &str,
    count: usize,
    clients: usize,
) -> Vec<(StatusCode, String)> {
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (base, http) = (base.to_string(), http.clone());
        tasks.spawn(async move {
            let mut replies = Vec::new();
            for n in (client..count).step_by(clients) {
                let response = place_request(&http, &base, &format!("order {n}"))
                    .send()
                    .await
                    .unwrap();
                replies.push((response.status(), response.text().await.unwrap()));
            }
            replies
        });
    }
    let mut replies = Vec::with_capacity(count);
    while let Some(client) = tasks.join_next().await {
        replies.extend(client.unwrap());
    }
    replies
}

/// Whatever can tell an order's status (the `status` field of `GET /order/{id}`).
pub trait OrderStatus {
    async fn status_of(&mut self, id: &str) -> String;
}

/// Asks `app` for each order until every one is `fulfilled` or `deadline` has passed; returns
/// those that never were.
pub async fn unfulfilled_after(
    deadline: Duration,
    ids: &HashSet<String>,
    app: &mut impl OrderStatus,
) -> Vec<String> {
    let deadline = Instant::now() + deadline;
    let mut pending: Vec<String> = ids.iter().cloned().collect();
    loop {
        let mut still = Vec::new();
        for id in pending {
            if app.status_of(&id).await != "fulfilled" {
                still.push(id);
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            return pending;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the fulfilment app listens for "order placed": its subscription on `mosquitto`
/// when the shape runs on MQTT, else on Redis, whose subscriber count `redis_subscribers` reads
/// (with whatever credentials that Redis needs).
pub async fn wait_until_subscribed(
    fulfilment_app: &mut App,
    mosquitto: Option<&Mosquitto>,
    redis_subscribers: impl Fn(&str) -> i64,
) {
    match mosquitto {
        Some(broker) => {
            let subscribed = || broker.subscriptions("orders/placed") >= 1;
            fulfilment_app
                .wait_for("the MQTT subscription", subscribed)
                .await
        }
        None => {
            let subscribed = || redis_subscribers("orders.placed") >= 1;
            fulfilment_app
                .wait_for("the Redis subscription", subscribed)
                .await
        }
    }
}
