//! The networked shapes end to end (issue 4), on nanohost and on real Spin: the order app
//! publishes "order placed" to a real Mosquitto or Redis, the fulfilment app (a second host,
//! started by the MQTT or Redis trigger) fulfils it, and both share one Redis-backed key-value
//! store. One table of cases; the host, the transport and the order app's build are parameters.
//!
//! The WASIp3 order apps (apps/order-app-mqtt-p3, apps/order-app-redis-p3; cases named
//! `mqtt_p3::`, `redis_p3::`) run the same cases on the hosts that serve WASI 0.3.0
//! (`support::host::serves_wasip3`), and two of their own: the 202 comes before the publish, and
//! an order whose instance died in between is published by the sweep. On the Spins that take
//! only a release candidate of WASI 0.3 (3.6.3, 4.0.2) one case of theirs runs:
//! `is_refused_at_start`.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::Value;
use support::harness::{self, case, Case, HostKind};
use support::host::{serves_wasip3, App, AppDir, AppSpec};
use support::orders::{self, Transport};
use support::{Mosquitto, Redis};

/// Long enough for a slow CI machine; a healthy run needs a fraction of it.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);

/// Which build of the order app: the WASIp2 one (apps/order-app-<transport>) publishes inside
/// `intake.place`, before its 202; the WASIp3 one (apps/order-app-<transport>-p3) after its 202,
/// in the same instance. The fulfilment app is the same WASIp2 app for both.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Build {
    Wasip2,
    Wasip3,
}

/// What a shape is started with: its transport and its order app's build.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Variant {
    transport: Transport,
    build: Build,
}

impl Variant {
    /// `mqtt`, `redis`, `mqtt_p3`, `redis_p3`: as shapes.toml names the shapes.
    fn name(self) -> String {
        match self.build {
            Build::Wasip2 => self.transport.name().to_string(),
            Build::Wasip3 => format!("{}_p3", self.transport.name()),
        }
    }

    /// The order app, `apps/<it>/spin.toml`, composed into `target/composed/<it>.wasm`.
    fn order_app(self) -> String {
        match self.build {
            Build::Wasip2 => format!("order-app-{}", self.transport.name()),
            Build::Wasip3 => format!("order-app-{}-p3", self.transport.name()),
        }
    }

    /// Why the shape cannot run on `host` here: a Spin without WASI 0.3.0 for the WASIp3 order
    /// app, a Spin without the MQTT trigger plugin for the fulfilment app.
    fn unavailable_on(self, host: HostKind) -> Option<String> {
        let unserved = match self.build {
            Build::Wasip2 => None,
            Build::Wasip3 => serves_wasip3(host),
        };
        unserved.or_else(|| self.transport.unavailable_on(host))
    }
}

/// Two apps and their brokers. Fields drop in order: the apps stop before the brokers.
struct Shape {
    order_app: Option<App>,
    _fulfilment_app: App,
    /// How the order app was started, before the case's own settings: to restart it.
    order_spec: AppSpec,
    order_dir: AppDir,
    base: String,
    client: Client,
    redis: Redis,
    mosquitto: Option<Mosquitto>,
}

impl Shape {
    /// Starts the fulfilment app first and waits until it is subscribed, so that no order is
    /// published before anyone listens. `broker_override` points the order app at another broker
    /// address (e.g. one that is down); `tune` adds the case's own settings to the order app.
    async fn start(
        host: HostKind,
        variant: Variant,
        label: &str,
        broker_override: Option<String>,
        tune: impl FnOnce(AppSpec) -> AppSpec,
    ) -> Shape {
        let transport = variant.transport;
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
        let order_spec =
            spec(variant.order_app()).variable(variable, broker_override.unwrap_or(address));
        let order_app = App::start(host, &tune(order_spec.clone()), &order_dir).await;
        Shape {
            base: order_app.base(),
            order_app: Some(order_app),
            _fulfilment_app: fulfilment_app,
            order_spec,
            order_dir,
            client: Client::new(),
            redis,
            mosquitto,
        }
    }

    /// Kills the order app's host (SIGKILL to its process group: it must run as a process),
    /// then starts it again in the same folder with `tune`'s settings.
    async fn kill_and_restart_order_app(&mut self, host: HostKind, tune: fn(AppSpec) -> AppSpec) {
        let app = self.order_app.take().expect("the order app runs");
        app.kill().await;
        let dir = AppDir {
            path: self.order_dir.path.clone(),
        };
        let app = App::start(host, &tune(self.order_spec.clone()), &dir).await;
        self.base = app.base();
        self.order_app = Some(app);
    }

    /// `GET /order/{id}`, which must answer 200.
    async fn order(&self, id: &str) -> Value {
        let response = self.client.get(format!("{}/order/{id}", self.base));
        let response = response.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// `POST /sweep` with the token the case gave the order app; the sweep's report.
    async fn sweep(&self) -> Value {
        let response = (self.client.post(format!("{}/sweep", self.base)))
            .bearer_auth(support::SWEEP_TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let report: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{report}");
        report
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
async fn a_broker_that_is_down_loses_no_accepted_order(host: HostKind, variant: Variant) {
    let transport = variant.transport;
    let dead = format!("{}://127.0.0.1:{}", transport.name(), support::free_port());
    let label = format!("{}-{}-broker-down", host.name(), variant.name());
    let shape = Shape::start(host, variant, &label, Some(dead), |spec| spec).await;
    let (status, body) = shape.place("nowhere to go").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["task"]["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(shape.status(id).await, "accepted", "{body}");
}

/// How long the WASIp3 order app waits between its 202 and the publish in the next case (the
/// test-only `fulfil_delay_ms`): long enough that a GET right after the 202 comes first.
const SLOWED_PUBLISH_MS: u64 = 1_500;

/// WASIp3: the 202 goes out once the order is stored, and the same instance publishes it after.
/// With the publish slowed, the 202 arrives well before the delay, a GET right after it finds
/// the order `accepted`, and the fulfilment app fulfils it (so it was published) no earlier than
/// the delay after it was placed, without anything else being sent.
async fn the_202_comes_before_the_publish(host: HostKind, variant: Variant) {
    let label = format!("{}-{}-202-first", host.name(), variant.name());
    let slowed = |spec: AppSpec| spec.variable("fulfil_delay_ms", SLOWED_PUBLISH_MS.to_string());
    let shape = Shape::start(host, variant, &label, None, slowed).await;
    let started = Instant::now();
    let (status, placed) = shape.place("answered first").await;
    let answered_after = started.elapsed();
    assert_eq!(status, StatusCode::ACCEPTED, "{placed}");
    assert_eq!(placed["task"]["status"], "accepted", "{placed}");
    assert!(
        answered_after < Duration::from_millis(SLOWED_PUBLISH_MS),
        "the 202 took {answered_after:?}: it waited for the publish"
    );
    let id = placed["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        shape.status(&id).await,
        "accepted",
        "a GET right after the 202"
    );
    let never = shape
        .unfulfilled_after_deadline(&HashSet::from([id.clone()]))
        .await;
    assert!(never.is_empty(), "order {never:?} was never fulfilled");
    let order = shape.order(&id).await;
    let waited = order["updated_at_ms"].as_u64().unwrap() - order["placed_at_ms"].as_u64().unwrap();
    assert!(
        waited >= SLOWED_PUBLISH_MS,
        "fulfilled {waited} ms after it was placed, before the slowed publish was due: {order}"
    );
}

/// The order app's settings for the next case: its own process (so that it can be killed), the
/// sweep open to the test's token and due at once.
fn swept(spec: AppSpec) -> AppSpec {
    spec.nanohost_binary()
        .variable("sweep_token", support::SWEEP_TOKEN)
        .variable("sweep_grace_ms", "1")
}

/// WASIp3: an instance that dies between its 202 and the publish (here its host is killed while
/// the publish waits) leaves the order `accepted` in the outbox, unpublished; after a restart
/// the sweep publishes it and the fulfilment app fulfils it: nothing answered 202 is lost.
async fn an_order_whose_instance_died_before_its_publish_is_published_by_the_sweep(
    host: HostKind,
    variant: Variant,
) {
    let label = format!("{}-{}-died-after-202", host.name(), variant.name());
    let dying = |spec| swept(spec).variable("fulfil_delay_ms", "600000");
    let mut shape = Shape::start(host, variant, &label, None, dying).await;
    let (status, placed) = shape.place("left by a dead instance").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{placed}");
    let id = placed["task"]["id"].as_str().unwrap().to_string();
    shape.kill_and_restart_order_app(host, swept).await;

    // Had anything published it, the fulfilment app would have fulfilled it by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        shape.status(&id).await,
        "accepted",
        "the killed instance had not published it"
    );
    let report = shape.sweep().await;
    assert!(report["announced"].as_u64().unwrap() >= 1, "{report}");
    let never = shape.unfulfilled_after_deadline(&HashSet::from([id])).await;
    assert!(
        never.is_empty(),
        "order {never:?} was not fulfilled after the sweep"
    );
}

/// WASIp3 on a Spin that takes only a release candidate of WASI 0.3 (3.6.3, 4.0.2): `spin up`
/// refuses the order app at start-up, naming the WASI 0.3.0 interface its linker lacks, and
/// exits; a Spin that started it would fail this case.
async fn is_refused_at_start(host: HostKind, variant: Variant) {
    let redis = Redis::start();
    let dir = AppDir::new(&format!("{}-{}-refused", host.name(), variant.name()));
    let runtime_config = support::redis_runtime_config(&redis.url(), &dir.path);
    let spec = support::networked_app(&variant.order_app(), &runtime_config);
    App::assert_wasip3_refused(host, &spec, &dir).await;
}

impl orders::OrderStatus for &Shape {
    async fn status_of(&mut self, id: &str) -> String {
        self.status(id).await
    }
}

fn shape_unavailable(host: HostKind, variant: Variant, _case: &str) -> Option<String> {
    variant.unavailable_on(host)
}

/// Pushes one case per `$case(host, variant)` onto `$cases`, named after the variant, skipped
/// where the shape cannot run.
macro_rules! on_own_shape {
    ($cases:ident, $host:expr, $variant:expr, [$($case:ident),* $(,)?]) => {$({
        let (host, variant) = ($host, $variant);
        $cases.push(
            case(host, format!("{}::{}", variant.name(), stringify!($case)), move || {
                $case(host, variant)
            })
            .skip_if(shape_unavailable(host, variant, stringify!($case))),
        );
    })*};
}

fn main() {
    let mut cases: Vec<Case> = Vec::new();
    for host in HostKind::ALL {
        for transport in [Transport::Redis, Transport::Mqtt] {
            for build in [Build::Wasip2, Build::Wasip3] {
                let variant = Variant { transport, build };
                crate::on_shared!(
                    cases,
                    host,
                    variant,
                    |host, variant, key| Shape::start(host, variant, key, None, |spec| spec),
                    shape_unavailable,
                    [
                        an_order_travels_to_fulfilment,
                        junk_messages_do_not_stop_the_listener,
                        a_thousand_orders_are_all_fulfilled_once,
                    ]
                );
                on_own_shape!(
                    cases,
                    host,
                    variant,
                    [a_broker_that_is_down_loses_no_accepted_order]
                );
                if build == Build::Wasip3 {
                    on_own_shape!(
                        cases,
                        host,
                        variant,
                        [
                            the_202_comes_before_the_publish,
                            an_order_whose_instance_died_before_its_publish_is_published_by_the_sweep,
                        ]
                    );
                }
                if build == Build::Wasip3 && serves_wasip3(host).is_some() {
                    // The one p3 case that runs where the build cannot: its refusal.
                    cases.push(case(
                        host,
                        format!("{}::is_refused_at_start", variant.name()),
                        move || is_refused_at_start(host, variant),
                    ));
                }
            }
        }
    }
    harness::run(cases)
}
