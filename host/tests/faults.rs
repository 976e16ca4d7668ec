//! Fault tests (issue 10, item 6), on nanohost and on real Spin 3.6.3, against real Redis and
//! Mosquitto on loopback: brokers killed and restarted under load, the fulfilment app down for a
//! while, a same-key race, hundreds of idle and slow clients, a host restart between two reads, a
//! guest stopped by its time limit between storing and announcing.
//!
//! What is counted comes from the store itself (Redis, or the SQLite file), not from what the app
//! says: every order answered 202 must be stored once and end `fulfilled`, and nothing stored may
//! stay `accepted`. Each case prints one line of counts. Where recovery needs a restart (a Redis
//! trigger ends its host when it loses Redis; nanohost's MQTT trigger does too, and Spin's does
//! not reconnect to a restarted broker: host/README.md), the test does what a process manager
//! would and says so.

mod support;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use support::faults::{self as faults, Census, StallProxy};
use support::harness::{self, case, Case, HostKind};
use support::host::{serves_wasip3, App, AppDir, AppSpec};
use support::orders::Transport;
use support::{Mosquitto, Redis, TempDir};

/// The apps' `sweep_grace_ms`: short, so that a sweep may re-announce soon after a fault.
const GRACE_MS: u64 = 500;
/// Long enough for a slow CI machine; a healthy run needs a few seconds.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// A client gives up on one request after this (no request of these tests should take it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The cases run one after the other: two loads at once on 2 cores would make the "answered
/// within a second" of the slow-clients case measure the other case.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, PartialEq, Debug)]
enum Shape {
    /// The root spin.toml: one composed component, fulfilment in process.
    Composed,
    /// apps/order-app-p3: the WASIp3 build of the composed app, fulfilment in process after the
    /// 202. On the hosts that serve WASI 0.3.0 only (`support::host::serves_wasip3`).
    ComposedP3,
    /// apps/order-app-deps/spin.toml: the same parts, linked by Spin's `dependencies` at load.
    Dependencies,
    Mqtt,
    Redis,
    /// The MQTT shape with the WASIp3 order app (apps/order-app-mqtt-p3): 202 first, then the
    /// publish in the same instance; the same fulfilment app. Where WASI 0.3.0 is served only.
    MqttP3,
    /// The Redis shape with the WASIp3 order app (apps/order-app-redis-p3), likewise.
    RedisP3,
}

impl Shape {
    /// Its name in shapes.toml.
    fn name(self) -> &'static str {
        match self {
            Shape::Composed => "composed",
            Shape::ComposedP3 => "composed_p3",
            Shape::Dependencies => "dependencies",
            Shape::Mqtt => "mqtt",
            Shape::Redis => "redis",
            Shape::MqttP3 => "mqtt_p3",
            Shape::RedisP3 => "redis_p3",
        }
    }

    /// How a networked shape carries "order placed" (its name is the scheme of the broker's
    /// address and the suffix of the fulfilment and sweeper apps); `None` for a composed one.
    fn transport(self) -> Option<Transport> {
        match self {
            Shape::Mqtt | Shape::MqttP3 => Some(Transport::Mqtt),
            Shape::Redis | Shape::RedisP3 => Some(Transport::Redis),
            Shape::Composed | Shape::ComposedP3 | Shape::Dependencies => None,
        }
    }

    /// Why `host` cannot serve the shape's order app, if it cannot: only the WASIp3 builds.
    fn unserved(self, host: HostKind) -> Option<String> {
        match self {
            Shape::ComposedP3 | Shape::MqttP3 | Shape::RedisP3 => serves_wasip3(host),
            Shape::Composed | Shape::Dependencies | Shape::Mqtt | Shape::Redis => None,
        }
    }

    /// One composed component, fulfilment in process: no broker, no fulfilment app (shapes.toml
    /// lists none for it).
    fn is_composed(self) -> bool {
        self.listed().app(shapes::Role::Fulfilment).is_none()
    }

    /// The shape as the one list (shapes.toml) has it.
    fn listed(self) -> &'static shapes::Shape {
        let listed = shapes::catalog().shape(self.name());
        listed.unwrap_or_else(|| panic!("shapes.toml: no shape {}", self.name()))
    }

    /// The manifest of a composed shape, after checking that its components are built.
    fn composed_manifest(self) -> PathBuf {
        support::composed("sweeper");
        support::composed(match self {
            Shape::Composed => "order-app",
            Shape::ComposedP3 => "order-app-p3",
            Shape::Dependencies => "order-services",
            _ => unreachable!("{self:?} is not composed"),
        });
        self.manifest(shapes::Role::Order)
    }

    /// The manifest of the shape's app of `role`, from the one list (shapes.toml).
    fn manifest(self, role: shapes::Role) -> PathBuf {
        let app = self.listed().app(role);
        let app = app.unwrap_or_else(|| panic!("shapes.toml: no {role:?} app in {}", self.name()));
        support::workspace_root().join(&app.manifest)
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Store {
    Embedded,
    Redis,
}

/// How the order app of a shape runs.
enum OrderHost {
    /// On the case's host, from its manifest (the normal way).
    Normal,
    /// nanohost in process with a time limit per request, its broker address pointing at a
    /// [`StallProxy`] in front of the shape's broker.
    TimeLimited { timeout: Duration },
}

/// An app or two and their brokers. Fields drop in order: the apps stop before the brokers.
struct Net {
    limited_order_app: Option<nanohost::RunningHost>,
    order_app: Option<App>,
    fulfilment: Option<App>,
    host: HostKind,
    shape: Shape,
    order_dir: PathBuf,
    fulfilment_dir: PathBuf,
    runtime_config: Option<PathBuf>,
    base: String,
    client: Client,
    redis: Option<Redis>,
    mosquitto: Option<Mosquitto>,
    redis_dir: TempDir,
    proxy: Option<StallProxy>,
    /// What the test did to recover, as a process manager would, for the report.
    actions: Vec<String>,
}

impl Net {
    async fn start(host: HostKind, shape: Shape, store: Store, label: &str) -> Net {
        Net::start_with(host, shape, store, label, OrderHost::Normal).await
    }

    /// Starts the fulfilment app first and waits until it is subscribed, so that no order is
    /// published before anyone listens.
    async fn start_with(
        host: HostKind,
        shape: Shape,
        store: Store,
        label: &str,
        order_host: OrderHost,
    ) -> Net {
        assert!(
            shape.is_composed() || store == Store::Redis,
            "the networked shapes share their store through Redis"
        );
        let redis_dir = TempDir::new(&format!("{label}-redis"));
        let redis = (store == Store::Redis)
            .then(|| faults::durable_redis(support::free_port(), &redis_dir.path));
        let mosquitto = (shape.transport() == Some(Transport::Mqtt)).then(Mosquitto::start);
        let order_dir = AppDir::new(&format!("{label}-order-app"));
        let fulfilment_dir = AppDir::new(&format!("{label}-fulfilment"));
        let runtime_config = redis
            .as_ref()
            .map(|r| support::redis_runtime_config(&r.url(), &order_dir.path));
        let mut net = Net {
            limited_order_app: None,
            order_app: None,
            fulfilment: None,
            host,
            shape,
            order_dir: order_dir.path.clone(),
            fulfilment_dir: fulfilment_dir.path.clone(),
            runtime_config,
            base: String::new(),
            client: Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap(),
            redis,
            mosquitto,
            redis_dir,
            proxy: None,
            actions: Vec::new(),
        };
        if !shape.is_composed() {
            net.start_fulfilment().await;
        }
        match order_host {
            OrderHost::Normal => {
                let app = App::start(host, &net.order_spec(), &order_dir).await;
                net.base = app.base();
                net.order_app = Some(app);
            }
            OrderHost::TimeLimited { timeout } => {
                let broker_port = match shape.transport() {
                    Some(Transport::Mqtt) => net.mosquitto.as_ref().unwrap().port,
                    _ => net.redis.as_ref().unwrap().port,
                };
                let proxy = StallProxy::start(broker_port).await;
                let broker_port = proxy.port;
                net.proxy = Some(proxy);
                let mut spec = net.order_spec();
                let (broker, _) = net.broker_variable().expect("a networked shape");
                spec.variables.retain(|(name, _)| name != broker);
                spec.variables.push((
                    broker.to_string(),
                    format!(
                        "{}://127.0.0.1:{broker_port}",
                        shape.transport().unwrap().name()
                    ),
                ));
                match host {
                    // `spin up` has no per-request time limit: the same app, behind the same
                    // proxy, simply waits for it.
                    HostKind::Spin | HostKind::Spin4 | HostKind::Spin41 => {
                        let app = App::start(host, &spec, &order_dir).await;
                        net.base = app.base();
                        net.order_app = Some(app);
                    }
                    HostKind::Nanohost => {
                        let running = nanohost::RunningHost::start_with_limits(
                            nanohost::HostOptions {
                                manifest: spec.manifest.clone(),
                                runtime_config: spec.runtime_config.clone(),
                                listen: "127.0.0.1:0".parse().unwrap(),
                                variables: spec.variables.clone(),
                                state_dir: nanohost::StateDir::InMemory,
                                ..nanohost::HostOptions::default()
                            },
                            nanohost::Limits {
                                timeout,
                                ..nanohost::Limits::default()
                            },
                        )
                        .await
                        .unwrap_or_else(|e| panic!("nanohost cannot start the order app: {e:#}"));
                        net.base = format!("http://{}", running.http_addr().unwrap());
                        net.limited_order_app = Some(running);
                    }
                }
            }
        }
        net
    }

    fn broker_variable(&self) -> Option<(&'static str, String)> {
        match self.shape.transport()? {
            Transport::Mqtt => Some(("mqtt_address", self.mosquitto.as_ref().unwrap().url())),
            Transport::Redis => Some(("redis_address", self.redis.as_ref().unwrap().url())),
        }
    }

    fn spec(&self, manifest: PathBuf) -> AppSpec {
        let mut spec = AppSpec::new(manifest).runtime_config(self.runtime_config.clone());
        if let Some((name, value)) = self.broker_variable() {
            spec = spec
                .variable(name, value)
                .variable("message_key", support::MESSAGE_KEY);
        }
        spec
    }

    fn order_spec(&self) -> AppSpec {
        let manifest = match self.shape {
            shape if shape.is_composed() => shape.composed_manifest(),
            shape => {
                let listed = shapes::catalog().shape(shape.name()).unwrap();
                support::composed(&listed.order_app().name);
                support::composed(&format!("sweeper-{}", shape.transport().unwrap().name()));
                shape.manifest(shapes::Role::Order)
            }
        };
        self.spec(manifest)
            .variable("sweep_grace_ms", GRACE_MS.to_string())
            .variable("sweep_token", support::SWEEP_TOKEN)
    }

    async fn start_fulfilment(&mut self) {
        let name = self.shape.transport().expect("a networked shape").name();
        support::composed(&format!("fulfilment-{name}"));
        let spec = self.spec(self.shape.manifest(shapes::Role::Fulfilment));
        // The same folder again: a restart, not a new app.
        let dir = AppDir {
            path: self.fulfilment_dir.clone(),
        };
        let subscribed_before = self
            .mosquitto
            .as_ref()
            .map(|b| b.subscriptions("orders/placed"))
            .unwrap_or(0);
        let mut app = App::start(self.host, &spec, &dir).await;
        match self.shape.transport() {
            Some(Transport::Mqtt) => {
                let broker = self.mosquitto.as_ref().unwrap();
                app.wait_for("the MQTT subscription", || {
                    broker.subscriptions("orders/placed") > subscribed_before
                })
                .await
            }
            Some(Transport::Redis) => {
                let redis = self.redis.as_ref().unwrap();
                app.wait_for("the Redis subscription", || {
                    redis.subscribers("orders.placed") >= 1
                })
                .await
            }
            None => unreachable!("the composed app fulfils in process"),
        }
        self.fulfilment = Some(app);
    }

    async fn stop_fulfilment(&mut self) {
        if let Some(app) = self.fulfilment.take() {
            app.stop().await;
        }
        if let (Some(Transport::Redis), Some(redis)) = (self.shape.transport(), &self.redis) {
            // Until Redis has seen the old subscriber go, a wait for "subscribed" would pass.
            let deadline = Instant::now() + Duration::from_secs(10);
            while redis.subscribers("orders.placed") > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// What a process manager does for a host that exited or a trigger that went deaf.
    async fn restart_fulfilment(&mut self, why: &str) {
        self.stop_fulfilment().await;
        self.start_fulfilment().await;
        self.actions
            .push(format!("restarted the fulfilment app ({why})"));
    }

    fn census(&self, tag: &str) -> Census {
        let census = match &self.redis {
            Some(redis) => Census::of_redis(redis),
            None => Census::of_sqlite(&faults::sqlite_db(&self.order_dir)),
        };
        census.tagged(tag)
    }

    /// The client and the order app's base URL, for a task of its own.
    fn poster(&self) -> (Client, String) {
        (self.client.clone(), self.base.clone())
    }

    async fn sweep(&self) -> (StatusCode, String) {
        let response = self
            .client
            .post(format!("{}/sweep", self.base))
            .bearer_auth(support::SWEEP_TOKEN)
            .send()
            .await
            .expect("POST /sweep");
        (response.status(), response.text().await.unwrap_or_default())
    }

    /// Sweeps every grace period while any of the case's orders is still `accepted`, until none
    /// is or the deadline passes. Returns the store's last census and how many sweeps ran.
    async fn settle(&self, tag: &str) -> (Census, usize) {
        let deadline = Instant::now() + SETTLE_DEADLINE;
        let mut sweeps = 0;
        // The first sweep waits a grace period: the normal deliveries are still on their way.
        let mut last_sweep = Instant::now();
        loop {
            let census = self.census(tag);
            if census.with_status("accepted") == 0 || Instant::now() >= deadline {
                return (census, sweeps);
            }
            if last_sweep.elapsed() >= Duration::from_millis(GRACE_MS) {
                let (status, body) = self.sweep().await;
                assert_eq!(status, StatusCode::OK, "POST /sweep: {body}");
                sweeps += 1;
                last_sweep = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn shutdown(mut self) {
        if let Some(host) = self.limited_order_app.take() {
            host.shutdown().await.unwrap();
        }
        if let Some(app) = self.order_app.take() {
            app.stop().await;
        }
        self.stop_fulfilment().await;
    }
}

/// An HTTP answer (status, body), or why there was none.
type Reply = Result<(StatusCode, String), String>;
/// Clients placing orders: each returns the details it sent and the answers it got.
type Load = tokio::task::JoinSet<Vec<(String, Reply)>>;

/// What the clients were told.
#[derive(Default)]
struct Replies {
    /// details -> id, for each 202.
    accepted: HashMap<String, String>,
    /// A 202 id given for two different orders.
    handed_out_twice: usize,
    /// "status body" -> how many, for each answer other than 202.
    refused: HashMap<String, usize>,
    /// Requests that got no HTTP answer at all (connection error, timeout).
    no_answer: usize,
}

impl Replies {
    fn refused_count(&self) -> usize {
        self.refused.values().sum()
    }

    fn record(&mut self, details: String, reply: Reply) {
        match reply {
            Ok((StatusCode::ACCEPTED, body)) => {
                let body: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("a 202 without JSON ({e}): {body}"));
                let id = body["task"]["id"].as_str().expect("a 202 names its order");
                if self.accepted.values().any(|other| other == id) {
                    self.handed_out_twice += 1;
                }
                self.accepted.insert(details, id.to_string());
            }
            Ok((status, body)) => {
                // Bodies differ only in detail; group by status and the first words.
                let short: String = body.chars().take(80).collect();
                *self.refused.entry(format!("{status} {short}")).or_default() += 1;
            }
            Err(_) => self.no_answer += 1,
        }
    }
}

async fn post_order(client: &Client, base: &str, details: &str, key: Option<&str>) -> Reply {
    let mut request = client
        .post(format!("{base}/order"))
        .header("content-type", "application/json")
        .body(json!({ "details": details }).to_string());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    Ok((status, response.text().await.map_err(|e| e.to_string())?))
}

/// `orders` orders, `<tag> <n>`, from `clients` concurrent clients, each pausing `pace` between
/// its requests; `sent` counts the answered ones as they come.
fn spawn_load(
    net: &Net,
    tag: &str,
    orders: usize,
    clients: usize,
    pace: Duration,
    sent: Arc<AtomicUsize>,
) -> Load {
    let mut set = tokio::task::JoinSet::new();
    for c in 0..clients {
        let ((client, base), tag, sent) = (net.poster(), tag.to_string(), sent.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            for n in (c..orders).step_by(clients) {
                let details = format!("{tag} {n}");
                let reply = post_order(&client, &base, &details, None).await;
                out.push((details, reply));
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(pace).await;
            }
            out
        });
    }
    set
}

async fn collect(mut set: Load) -> Replies {
    let mut replies = Replies::default();
    while let Some(client) = set.join_next().await {
        for (details, reply) in client.unwrap() {
            replies.record(details, reply);
        }
    }
    replies
}

async fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "{what}: not after {deadline:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The counts of a case, from the replies and the store's census after the sweeps.
struct Counts {
    accepted: usize,
    /// Accepted orders that are stored `fulfilled`.
    fulfilled: usize,
    /// Any of the case's stored orders still `accepted` (also those whose client got no 202).
    still_accepted: usize,
    duplicated: usize,
    refused: usize,
    /// Accepted orders not stored, or stored under other details, or not fulfilled.
    lost: Vec<String>,
}

impl Counts {
    fn of(replies: &Replies, census: &Census) -> Counts {
        let stored = census.by_id();
        let mut fulfilled = 0;
        let mut lost = Vec::new();
        for (details, id) in &replies.accepted {
            match stored.get(id.as_str()) {
                Some(order) if order.details == *details && order.status == "fulfilled" => {
                    fulfilled += 1
                }
                Some(order) => lost.push(format!("{id} ({details}): stored as {order:?}")),
                None => lost.push(format!("{id} ({details}): not stored")),
            }
        }
        Counts {
            accepted: replies.accepted.len(),
            fulfilled,
            still_accepted: census.with_status("accepted"),
            duplicated: census.duplicated() + replies.handed_out_twice,
            refused: replies.refused_count(),
            lost,
        }
    }

    /// Prints the case's line, then asserts: every accepted order fulfilled, nothing stored left
    /// `accepted`, nothing twice.
    fn report_and_check(&self, case: &str, host: HostKind, extra: &str) {
        harness::loud(&format!(
            "faults: {case} on {}: accepted={} fulfilled={} still_accepted={} duplicated={} refused={} ({extra})",
            host.name(),
            self.accepted,
            self.fulfilled,
            self.still_accepted,
            self.duplicated,
            self.refused,
        ));
        assert!(
            self.lost.is_empty(),
            "{} accepted order(s) not fulfilled: {:?}",
            self.lost.len(),
            &self.lost[..self.lost.len().min(10)]
        );
        assert_eq!(self.still_accepted, 0, "stored orders still accepted");
        assert_eq!(self.duplicated, 0, "orders stored twice");
    }
}

fn describe(replies: &Replies, census: &Census, sweeps: usize, actions: &[String]) -> String {
    let mut text = format!(
        "stored={} no_answer={} sweeps={sweeps}",
        census.orders.len(),
        replies.no_answer
    );
    if !replies.refused.is_empty() {
        text += &format!(" refusals={:?}", replies.refused);
    }
    for action in actions {
        text += &format!("; {action}");
    }
    text
}

fn label(host: HostKind, shape: Shape, case: &str) -> String {
    format!("{}-{}-{case}", host.name(), shape.name())
}

/// The shape on the Redis store, for a case whose orders are tagged `tag`.
async fn start_net(host: HostKind, shape: Shape, tag: &str) -> Net {
    Net::start(host, shape, Store::Redis, &label(host, shape, tag)).await
}

/// `orders` orders from 8 clients, 80 ms apart; returns once half of them are answered, so that
/// what the case breaks next happens under load.
async fn half_sent(net: &Net, tag: &str, orders: usize) -> Load {
    let sent = Arc::new(AtomicUsize::new(0));
    let load = spawn_load(net, tag, orders, 8, Duration::from_millis(80), sent.clone());
    wait_until("half the orders sent", SETTLE_DEADLINE, || {
        sent.load(Ordering::SeqCst) >= orders / 2
    })
    .await;
    load
}

/// Sweeps until the case's orders settle, then reports and checks the counts of `case`.
async fn settle_and_check(net: &Net, tag: &str, replies: &Replies, case: &str) -> Counts {
    let (census, sweeps) = net.settle(tag).await;
    let counts = Counts::of(replies, &census);
    counts.report_and_check(
        case,
        net.host,
        &describe(replies, &census, sweeps, &net.actions),
    );
    counts
}

/// Case 1: Redis (the store, and the Redis shape's broker) killed and restarted on its port while 300
/// orders arrive from 8 clients. 503s while it is down are fine; a 202 for an order that is then
/// lost or left unfulfilled is not.
async fn redis_restarted_under_load(host: HostKind, shape: Shape) {
    const ORDERS: usize = 300;
    let tag = "redis-restart";
    let mut net = start_net(host, shape, tag).await;
    let load = half_sent(&net, tag, ORDERS).await;
    let redis = net.redis.take().unwrap();
    let dir = net.redis_dir.path.clone();
    net.redis = Some(
        tokio::task::spawn_blocking(move || {
            faults::crash_and_restart_redis(redis, &dir, Duration::from_millis(700))
        })
        .await
        .unwrap(),
    );
    net.actions
        .push("killed Redis (SIGKILL) mid-load, restarted it on its port after 0.7 s".into());
    let replies = collect(load).await;
    if shape.transport() == Some(Transport::Redis) {
        // Printed, not asserted: why the restart below is needed (no subscriber came back).
        let subscribers = net.redis.as_ref().unwrap().subscribers("orders.placed");
        net.actions.push(format!(
            "subscribers of orders.placed after the Redis restart: {subscribers}"
        ));
        net.restart_fulfilment(
            "its Redis trigger ends the host when the connection is lost; a process manager restarts it",
        )
        .await;
    }
    let case = format!("{}::redis_restarted_under_load", shape.name());
    let counts = settle_and_check(&net, tag, &replies, &case).await;
    assert!(
        counts.accepted >= ORDERS / 4,
        "too few orders accepted for the case to say anything"
    );
    assert_eq!(replies.no_answer, 0, "requests got no HTTP answer");
    net.shutdown().await;
}

/// Case 2: Mosquitto killed and restarted on its port while 300 orders arrive (MQTT shapes). The
/// order app still answers 202 while it is down (the announcement fails, the order stays in the
/// outbox).
async fn mosquitto_restarted_under_load(host: HostKind, shape: Shape) {
    const ORDERS: usize = 300;
    let tag = "mosquitto-restart";
    let mut net = start_net(host, shape, tag).await;
    let load = half_sent(&net, tag, ORDERS).await;
    let broker = net.mosquitto.take().unwrap();
    net.mosquitto = Some(
        tokio::task::spawn_blocking(move || {
            faults::crash_and_restart_mosquitto(broker, Duration::from_millis(700))
        })
        .await
        .unwrap(),
    );
    net.actions
        .push("killed Mosquitto (SIGKILL) mid-load, restarted it on its port after 0.7 s".into());
    let replies = collect(load).await;
    // Printed, not asserted: why the restart below is needed (the trigger did not come back).
    let subscriptions = net
        .mosquitto
        .as_ref()
        .unwrap()
        .subscriptions("orders/placed");
    net.actions.push(format!(
        "subscriptions to orders/placed on the restarted broker before the fulfilment app's restart: {subscriptions}"
    ));
    net.restart_fulfilment(
        "spin-trigger-mqtt v0.7.2 does not reconnect to a restarted broker; the documented recovery",
    )
    .await;
    let case = format!("{}::mosquitto_restarted_under_load", shape.name());
    let counts = settle_and_check(&net, tag, &replies, &case).await;
    assert_eq!(
        (counts.refused, replies.no_answer),
        (0, 0),
        "the README promises a 202 when only the announcement fails: {:?}",
        replies.refused
    );
    net.shutdown().await;
}

/// Case 3: The fulfilment app stopped for 5 s while orders arrive: all accepted, none fulfilled while
/// it is down, all fulfilled once it is back and a sweep ran.
async fn fulfilment_app_stopped_for_5s(host: HostKind, shape: Shape) {
    const ORDERS: usize = 120;
    let tag = "fulfilment-down";
    let mut net = start_net(host, shape, tag).await;
    net.stop_fulfilment().await;
    let stopped_at = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    // 15 orders per client, 300 ms apart: they arrive over the 5 s the app is down.
    let load = spawn_load(
        &net,
        tag,
        ORDERS,
        8,
        Duration::from_millis(300),
        sent.clone(),
    );
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(stopped_at.elapsed())).await;
    let while_down = net.census(tag);
    let down_for = stopped_at.elapsed();
    net.start_fulfilment().await;
    net.actions.push(format!(
        "stopped the fulfilment app for {:.1} s, then started it again ({} orders stored meanwhile, {} fulfilled)",
        down_for.as_secs_f64(),
        while_down.orders.len(),
        while_down.with_status("fulfilled")
    ));
    let replies = collect(load).await;
    let case = format!("{}::fulfilment_app_stopped_for_5s", shape.name());
    let counts = settle_and_check(&net, tag, &replies, &case).await;
    assert!(
        !while_down.orders.is_empty(),
        "no order arrived while the fulfilment app was down"
    );
    assert_eq!(
        while_down.with_status("fulfilled"),
        0,
        "orders were fulfilled while the fulfilment app was down: was it down?"
    );
    assert_eq!(
        (counts.accepted, replies.no_answer),
        (ORDERS, 0),
        "every order is accepted while only the fulfilment app is down: {:?}",
        replies.refused
    );
    net.shutdown().await;
}

/// Case 4: 64 concurrent POSTs with one Idempotency-Key, half with one `details`, half with another:
/// exactly one order; its side all 202 with its id; the other side all 409, naming no order.
async fn same_key_race(host: HostKind, shape: Shape, store: Store) {
    const REQUESTS: usize = 64;
    let store_name = match store {
        Store::Embedded => "embedded",
        Store::Redis => "redis",
    };
    let net = Net::start(
        host,
        shape,
        store,
        &format!("{}-{}-race-{store_name}", host.name(), shape.name()),
    )
    .await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tag = format!("race-{nanos}");
    let key = format!("race-key-{nanos}");
    let start = Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let side = i % 2;
        let details = format!("{tag} side {side}");
        let ((client, base), key, start) = (net.poster(), key.clone(), start.clone());
        set.spawn(async move {
            start.wait().await;
            (side, post_order(&client, &base, &details, Some(&key)).await)
        });
    }
    let mut by_side: [Vec<(StatusCode, String)>; 2] = [Vec::new(), Vec::new()];
    while let Some(done) = set.join_next().await {
        let (side, reply) = done.unwrap();
        by_side[side].push(reply.expect("an answer"));
    }
    let ids: HashSet<String> = by_side
        .iter()
        .flatten()
        .filter(|(status, _)| *status == StatusCode::ACCEPTED)
        .map(|(_, body)| {
            serde_json::from_str::<Value>(body).unwrap()["task"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let (census, sweeps) = net.settle(&tag).await;
    let statuses = |side: usize| {
        let mut counts: HashMap<u16, usize> = HashMap::new();
        for (status, _) in &by_side[side] {
            *counts.entry(status.as_u16()).or_default() += 1;
        }
        counts
    };
    let accepted = by_side
        .iter()
        .flatten()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    let conflicts = by_side
        .iter()
        .flatten()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .count();
    harness::loud(&format!(
        "faults: {}_{store_name}::same_key_race on {}: accepted={accepted} fulfilled={} \
         still_accepted={} duplicated={} refused={conflicts} (orders stored={}, distinct ids in 202s={}, \
         side 0 {:?}, side 1 {:?}, sweeps={sweeps})",
        shape.name(),
        host.name(),
        census.with_status("fulfilled"),
        census.with_status("accepted"),
        census.orders.len().saturating_sub(1),
        census.orders.len(),
        ids.len(),
        statuses(0),
        statuses(1),
    ));
    assert_eq!(ids.len(), 1, "one key gave several orders: {ids:?}");
    let id = ids.into_iter().next().unwrap();
    assert_eq!(census.orders.len(), 1, "stored: {:?}", census.orders);
    assert_eq!(census.orders[0].id, id);
    assert_eq!(census.orders[0].status, "fulfilled");
    let winner = if by_side[0].iter().any(|r| r.0 == StatusCode::ACCEPTED) {
        0
    } else {
        1
    };
    assert_eq!(census.orders[0].details, format!("{tag} side {winner}"));
    for (status, body) in &by_side[winner] {
        if store_busy(*status, body) {
            continue;
        }
        assert_eq!(
            *status,
            StatusCode::ACCEPTED,
            "same details, same key: {body}"
        );
        assert!(body.contains(&id), "{body}");
    }
    for (status, body) in &by_side[1 - winner] {
        if store_busy(*status, body) {
            continue;
        }
        assert_eq!(
            *status,
            StatusCode::CONFLICT,
            "other details, same key: {body}"
        );
        let problem: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(problem["error"].is_string(), "{body}");
        assert!(!body.contains(&id), "a 409 names the order: {body}");
    }
    net.shutdown().await;
}

/// A store that could not answer: the app's JSON 503 naming the key-value store. Spin 4.0.2's
/// embedded SQLite store answers `database is locked` to some of 64 writes at once (seen once in
/// CI); the client may retry such an answer, and the assertions above still hold every other
/// answer to one order and one stored record.
fn store_busy(status: StatusCode, body: &str) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE
        && serde_json::from_str::<Value>(body).is_ok_and(|v| {
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("key-value store"))
        })
}

/// Case 5: Hundreds of clients that connect and send nothing, or send their headers a byte at a
/// time, while a normal client places and reads orders: each of its requests is answered within a
/// second.
async fn slow_clients_do_not_starve_a_normal_one(host: HostKind, shape: Shape) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Both ends of every connection live in this process when nanohost runs in it.
    let limit = faults::open_files_limit().unwrap_or(1024);
    let wanted = 500usize;
    let conns = wanted.min((limit.saturating_sub(256) / 2) as usize);
    let net = Net::start(
        host,
        shape,
        Store::Embedded,
        &format!("{}-{}-slow-clients", host.name(), shape.name()),
    )
    .await;
    let addr = net.order_app.as_ref().unwrap().addr();
    let closed_by_server = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut holders = tokio::task::JoinSet::new();
    let mut connected = 0;
    for i in 0..conns {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            continue;
        };
        connected += 1;
        let (closed, stop) = (closed_by_server.clone(), stop.clone());
        holders.spawn(async move {
            let request = format!(
                "GET /order/6f1d2c3b-4a59-4e68-b7a6-958473625140 HTTP/1.1\r\nhost: {addr}\r\n\r\n"
            );
            let mut buf = [0u8; 1024];
            let mut at = 0;
            loop {
                tokio::select! {
                    _ = stop.notified() => return,
                    read = stream.read(&mut buf) => {
                        if matches!(read, Ok(0) | Err(_)) {
                            closed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    // Odd ones trickle their headers (never finishing within the test); even
                    // ones stay silent.
                    _ = tokio::time::sleep(Duration::from_millis(250)), if i % 2 == 1 => {
                        if at < request.len() - 2 {
                            if stream.write_all(&request.as_bytes()[at..at + 1]).await.is_err() {
                                closed.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            at += 1;
                        }
                    }
                }
            }
        });
    }
    // Let the server accept them all and the trickles begin.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    let mut refused = Vec::new();
    let mut over_a_second = Vec::new();
    for n in 0..10 {
        // A fresh client each time: a new connection must get through, not only a kept-alive one.
        let client = Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap();
        let began = Instant::now();
        let placed = post_order(&client, &net.base, &format!("slow-clients {n}"), None).await;
        let took = began.elapsed();
        slowest = slowest.max(took);
        match placed {
            Ok((StatusCode::ACCEPTED, body)) => {
                answered += 1;
                let id = serde_json::from_str::<Value>(&body).unwrap()["task"]["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let began = Instant::now();
                let read = client
                    .get(format!("{}/order/{id}", net.base))
                    .send()
                    .await
                    .map(|r| r.status());
                let took = began.elapsed();
                slowest = slowest.max(took);
                if took > Duration::from_secs(1) {
                    over_a_second.push(format!("GET {took:?}"));
                }
                assert_eq!(read.ok(), Some(StatusCode::OK));
            }
            other => refused.push(format!("{other:?}")),
        }
        if took > Duration::from_secs(1) {
            over_a_second.push(format!("POST {took:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let closed_during = closed_by_server.load(Ordering::SeqCst);
    stop.notify_waiters();
    holders.shutdown().await;
    let census = net.census("slow-clients");
    harness::loud(&format!(
        "faults: {}::slow_clients on {}: accepted={answered} fulfilled={} still_accepted={} \
         duplicated={} refused={} ({connected} idle/slow connections held of {conns} wanted \
         (ulimit -n {limit}), {closed_during} closed by the server meanwhile, slowest normal \
         request {slowest:?})",
        shape.name(),
        host.name(),
        census.with_status("fulfilled"),
        census.with_status("accepted"),
        census.duplicated(),
        refused.len(),
    ));
    assert_eq!(connected, conns, "could not open the slow connections");
    assert!(
        refused.is_empty(),
        "the normal client was refused: {refused:?}"
    );
    assert!(
        over_a_second.is_empty(),
        "the normal client waited over a second: {over_a_second:?}"
    );
    assert_eq!(census.with_status("fulfilled"), 10);
    net.shutdown().await;
}

/// How many requests the test sizes Spin's pooling allocator for (`SPIN_WASMTIME_*`, read by Spin
/// 3.6.3's `crates/core`), as a deploy would for the composed app.
const SPIN_POOL_CONCURRENCY: u64 = 500;

/// What one instance of the composed app's largest component (`order-app`) takes from the pool:
/// memories, core instances, tables. nanohost measures it at load (`App::footprint`) and logs it;
/// the `slow_bodies` case checks that the figures here are still what it measures.
const COMPOSED_FOOTPRINT: (u64, u64, u64) = (6, 23, 12);

/// Spin's pool, sized for `concurrency` instances of the composed app (every `total_*` Spin
/// reads; the per-component maxima, 32 memories and 200 core instances, already fit).
fn spin_pool_env(concurrency: u64) -> Vec<(&'static str, String)> {
    let (memories, core_instances, tables) = COMPOSED_FOOTPRINT;
    vec![
        ("SPIN_WASMTIME_INSTANCE_COUNT", concurrency.to_string()),
        ("SPIN_WASMTIME_TOTAL_STACKS", concurrency.to_string()),
        (
            "SPIN_WASMTIME_TOTAL_MEMORIES",
            (memories * concurrency).to_string(),
        ),
        (
            "SPIN_WASMTIME_TOTAL_CORE_INSTANCES",
            (core_instances * concurrency).to_string(),
        ),
        (
            "SPIN_WASMTIME_TOTAL_TABLES",
            (tables * concurrency).to_string(),
        ),
    ]
}

/// What a held connection got.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HeldEnd {
    /// A status and whether the body was JSON with an `error` (and, for a 503, `Retry-After`).
    Answered(u16, bool),
    /// The server closed the connection without an answer.
    Closed,
    /// Nothing by the end of the wait.
    Hanging,
}

/// Reads one HTTP/1.1 response from `stream` (head, then `content-length` bytes), or how it ended.
async fn read_raw_response(stream: &mut tokio::net::TcpStream, within: Duration) -> HeldEnd {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let until = tokio::time::Instant::now() + within;
    loop {
        if let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if bytes.len() >= head_end + 4 + length {
                let status: u16 = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let body = &bytes[head_end + 4..head_end + 4 + length];
                let json_error =
                    serde_json::from_slice::<Value>(body).is_ok_and(|v| v["error"].is_string());
                let retry_after = head.lines().any(|l| l.starts_with("retry-after:"));
                let well_formed = json_error && (status != 503 || retry_after);
                return HeldEnd::Answered(status, well_formed);
            }
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return HeldEnd::Closed,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => return HeldEnd::Hanging,
        }
    }
}

/// A normal client's answer: 2xx, or a JSON 503 with `Retry-After` (after which it retries).
#[derive(Debug, Default)]
struct NormalAnswers {
    /// "status" -> how many, over every attempt.
    by_status: HashMap<String, usize>,
    /// Answers that are neither 2xx nor a JSON 503 with Retry-After (a 500 above all).
    wrong: Vec<String>,
}

impl NormalAnswers {
    /// Files `reply`; true when the client should retry (a well-formed 503).
    fn file(&mut self, what: &str, reply: &Result<(StatusCode, bool, String), String>) -> bool {
        match reply {
            Ok((status, retry_after, body)) => {
                *self
                    .by_status
                    .entry(status.as_u16().to_string())
                    .or_default() += 1;
                if status.is_success() {
                    return false;
                }
                let json_error =
                    serde_json::from_str::<Value>(body).is_ok_and(|v| v["error"].is_string());
                if *status == StatusCode::SERVICE_UNAVAILABLE && json_error && *retry_after {
                    return true;
                }
                self.wrong.push(format!("{what}: {status} {body}"));
                false
            }
            Err(e) => {
                *self.by_status.entry("no answer".into()).or_default() += 1;
                self.wrong.push(format!("{what}: no answer: {e}"));
                false
            }
        }
    }
}

async fn send_normal(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, bool, String), String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, retry_after, body))
}

/// Case 8: Hundreds of POSTs whose head is complete and whose body never comes (400 on nanohost,
/// 250 on Spin with its pool sized as a deploy sizes it), while normal clients POST and GET and
/// one sweeps: every normal request is answered 2xx or a JSON 503 with `Retry-After` (after
/// which it retries), never a 500; each held request gets a JSON 408 (or a JSON 503 at once, or is
/// closed) once the body deadline (`body_timeout_ms`) passes; every accepted order is fulfilled.
async fn slow_bodies_do_not_starve_the_app(host: HostKind, shape: Shape) {
    use tokio::io::AsyncWriteExt;
    let held_wanted: usize = match host {
        HostKind::Nanohost => 400,
        HostKind::Spin | HostKind::Spin4 | HostKind::Spin41 => 250,
    };
    const NORMAL_CLIENTS: usize = 8;
    const ORDERS_EACH: usize = 5;
    // Long enough that the held requests overlap on a loaded 2-core machine (nanohost's cap is
    // then reached, and the normal clients see its 503s), below nanohost's own 10 s body limit so
    // that the gateway's deadline is the one tested.
    let body_timeout = Duration::from_millis(8000);
    let limit = faults::open_files_limit().unwrap_or(1024);
    let held_count = held_wanted.min((limit.saturating_sub(256) / 2) as usize);
    let tag = "slow-bodies";
    let dir = AppDir::new(&format!("{}-{}-{tag}", host.name(), shape.name()));
    let mut spec = AppSpec::new(shape.composed_manifest())
        .variable("sweep_grace_ms", GRACE_MS.to_string())
        .variable("sweep_token", support::SWEEP_TOKEN)
        .variable("body_timeout_ms", body_timeout.as_millis().to_string());
    if host.is_spin() {
        for (name, value) in spin_pool_env(SPIN_POOL_CONCURRENCY) {
            spec = spec.env(name, value);
        }
    }
    let app = App::start(host, &spec, &dir).await;
    let (addr, base) = (app.addr(), app.base());
    // The footprint Spin's pool is sized with above is what nanohost measures of the app now.
    let mut cap = String::new();
    // COMPOSED_FOOTPRINT is the WASIp2 build's.
    if let Some(running) = app.in_process().filter(|_| shape == Shape::Composed) {
        let order_app = running.footprints()["order-app"];
        assert_eq!(
            (
                order_app.memories,
                order_app.core_instances,
                order_app.tables
            ),
            COMPOSED_FOOTPRINT,
            "COMPOSED_FOOTPRINT is out of date: the order app takes {order_app}"
        );
        for (id, footprint) in running.footprints() {
            assert!(
                footprint.memories <= COMPOSED_FOOTPRINT.0
                    && footprint.core_instances <= COMPOSED_FOOTPRINT.1
                    && footprint.tables <= COMPOSED_FOOTPRINT.2,
                "{id} takes more than the order app: {footprint}"
            );
        }
        cap = format!(
            "; nanohost's in-flight cap {}",
            running.max_in_flight().unwrap()
        );
    }

    // The held requests: a complete head that promises 100 bytes, 10 of them, then nothing.
    let began = Instant::now();
    let mut held = tokio::task::JoinSet::new();
    let mut opened = 0;
    for _ in 0..held_count {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            continue;
        };
        let head = format!(
            "POST /order HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: 100\r\n\r\n{{\"details\""
        );
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        opened += 1;
        held.spawn(async move {
            let end = read_raw_response(&mut stream, Duration::from_secs(60)).await;
            (end, began.elapsed())
        });
    }
    // Let the host hand them to instances before the normal clients come.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let answers = Arc::new(std::sync::Mutex::new(NormalAnswers::default()));
    let mut normal = tokio::task::JoinSet::new();
    for c in 0..NORMAL_CLIENTS {
        let (base, answers) = (base.clone(), answers.clone());
        normal.spawn(async move {
            let client = Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap();
            let mut out = Vec::new();
            for n in 0..ORDERS_EACH {
                let details = format!("{tag} {c}-{n}");
                let until = Instant::now() + SETTLE_DEADLINE;
                // A JSON 503 says when to retry: the client does, as any well-behaved one would.
                let placed = loop {
                    let request = client
                        .post(format!("{base}/order"))
                        .header("content-type", "application/json")
                        .header(
                            "idempotency-key",
                            format!("{tag}-{c}-{n}-{}", std::process::id()),
                        )
                        .body(json!({ "details": details }).to_string());
                    let reply = send_normal(request).await;
                    let retry = answers.lock().unwrap().file("POST", &reply);
                    if !retry || Instant::now() > until {
                        break reply;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                };
                let Ok((StatusCode::ACCEPTED, _, body)) = &placed else {
                    continue;
                };
                let id = serde_json::from_str::<Value>(body).unwrap()["task"]["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                loop {
                    let reply = send_normal(client.get(format!("{base}/order/{id}"))).await;
                    let retry = answers.lock().unwrap().file("GET", &reply);
                    if !retry || Instant::now() > until {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                out.push((details, Ok((StatusCode::ACCEPTED, body.clone()))));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            out
        });
    }
    // The sweep too, while the bodies are held.
    let sweeper = Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap();
    let sweep = send_normal(
        sweeper
            .post(format!("{base}/sweep"))
            .bearer_auth(support::SWEEP_TOKEN),
    )
    .await;
    let sweep_status = sweep.as_ref().map(|(s, _, _)| s.as_u16()).unwrap_or(0);
    answers.lock().unwrap().file("POST /sweep", &sweep);

    let mut replies = Replies::default();
    while let Some(client) = normal.join_next().await {
        for (details, reply) in client.unwrap() {
            replies.record(details, reply);
        }
    }
    let normal_done = began.elapsed();
    let mut ends: HashMap<HeldEnd, usize> = HashMap::new();
    let mut early = Vec::new();
    let mut latest = Duration::ZERO;
    while let Some(done) = held.join_next().await {
        let (end, took) = done.unwrap();
        latest = latest.max(took);
        // Only a refusal at the door may come before the deadline.
        if took < body_timeout && !matches!(end, HeldEnd::Answered(503, true)) {
            early.push(format!("{end:?} after {took:?}"));
        }
        *ends.entry(end).or_default() += 1;
    }
    let census = Census::of_sqlite(&faults::sqlite_db(&dir.path)).tagged(tag);
    let counts = Counts::of(&replies, &census);
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    counts.report_and_check(
        &format!("{}::slow_bodies", shape.name()),
        host,
        &format!(
            "{opened} held bodies of {held_wanted} wanted (ulimit -n {limit}); held ends {ends:?}, \
             the last after {latest:?} (body deadline {body_timeout:?}); normal answers {:?} \
             (done after {normal_done:?}), sweep {sweep_status}; stored={}{cap}",
            answers.by_status,
            census.orders.len()
        ),
    );
    assert_eq!(opened, held_count, "could not open the held connections");
    assert!(
        answers.wrong.is_empty(),
        "{} normal request(s) answered neither 2xx nor a JSON 503 with Retry-After: {:?}",
        answers.wrong.len(),
        &answers.wrong[..answers.wrong.len().min(10)]
    );
    assert_eq!(
        counts.accepted,
        NORMAL_CLIENTS * ORDERS_EACH,
        "every normal order is accepted in the end"
    );
    assert!(
        early.is_empty(),
        "held requests ended before the deadline: {early:?}"
    );
    let bad_ends: Vec<_> = ends
        .iter()
        .filter(|(end, _)| {
            !matches!(
                end,
                HeldEnd::Answered(408, true) | HeldEnd::Answered(503, true) | HeldEnd::Closed
            )
        })
        .collect();
    assert!(
        bad_ends.is_empty(),
        "held requests not answered with a JSON 408/503 nor closed: {bad_ends:?}"
    );
    app.stop().await;
}

/// nanohost alone: a body still missing when the host's own limit (`--body-timeout-ms`) passes
/// is cut there even when the app's deadline is longer: a JSON 408, the connection closed, and
/// the instance's slot free again (a request of every slot's worth then gets in).
async fn the_host_cuts_a_body_that_does_not_come() {
    use tokio::io::AsyncWriteExt;
    support::composed("order-app");
    support::composed("sweeper");
    let limit = Duration::from_millis(1500);
    let host = nanohost::RunningHost::start(nanohost::HostOptions {
        manifest: support::workspace_root().join("spin.toml"),
        variables: vec![("body_timeout_ms".into(), "60000".into())],
        listen: "127.0.0.1:0".parse().unwrap(),
        listener: nanohost::ListenerLimits {
            body_read_timeout: limit,
            ..Default::default()
        },
        ..nanohost::HostOptions::default()
    })
    .await
    .unwrap();
    let addr = host.http_addr().unwrap();
    let slots = host.max_in_flight().unwrap();
    let began = Instant::now();
    let mut held = Vec::new();
    for _ in 0..slots {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /order HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: 100\r\n\r\n{{\"details\""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    let mut ends: HashMap<HeldEnd, usize> = HashMap::new();
    let mut closed_after = 0;
    for stream in &mut held {
        let end = read_raw_response(stream, Duration::from_secs(20)).await;
        if end == HeldEnd::Answered(408, true)
            && read_raw_response(stream, Duration::from_secs(5)).await == HeldEnd::Closed
        {
            closed_after += 1;
        }
        *ends.entry(end).or_default() += 1;
    }
    let took = began.elapsed();
    let client = Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap();
    let after = post_order(&client, &format!("http://{addr}"), "host-cut after", None).await;
    harness::loud(&format!(
        "faults: nanohost::host_body_limit: {slots} held bodies (the in-flight cap) ended {ends:?}, \
         {closed_after} closed after the 408, all within {took:?} (limit {limit:?}, app deadline \
         60 s); a POST after them: {:?}",
        after.as_ref().map(|(s, _)| s.as_u16())
    ));
    assert_eq!(
        ends.get(&HeldEnd::Answered(408, true)),
        Some(&slots),
        "{ends:?}"
    );
    assert_eq!(
        closed_after, slots,
        "the connection is closed after the 408"
    );
    assert!(took >= limit, "cut before the limit: {took:?}");
    assert_eq!(after.map(|(s, _)| s), Ok(StatusCode::ACCEPTED));
    host.shutdown().await.unwrap();
}

/// Case 6: The composed app with its default embedded store (a SQLite file in its own folder), the
/// host stopped and started again between two reads of each order: the second read finds it.
async fn host_restarted_between_two_gets(host: HostKind, shape: Shape) {
    const ORDERS: usize = 20;
    let dir = AppDir::new(&format!(
        "{}-{}-restart-between-gets",
        host.name(),
        shape.name()
    ));
    // nanohost as its binary: `nanohost up` is what keeps the default store beside the manifest,
    // as `spin up` does.
    let spec = AppSpec::new(shape.composed_manifest()).nanohost_binary();
    let client = Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap();
    let app = App::start(host, &spec, &dir).await;
    let mut replies = Replies::default();
    for n in 0..ORDERS {
        let details = format!("restart-between-gets {n}");
        let reply = post_order(&client, &app.base(), &details, None).await;
        replies.record(details, reply);
    }
    let get = |base: String, id: String| {
        let client = client.clone();
        async move {
            let response = client
                .get(format!("{base}/order/{id}"))
                .send()
                .await
                .expect("GET");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for id in replies.accepted.values() {
        let (status, body) = get(app.base(), id.clone()).await;
        assert_eq!(status, StatusCode::OK, "first GET: {body}");
    }
    app.stop().await;
    let app = App::start(host, &spec, &dir).await;
    let mut found_again = 0;
    let mut missing = Vec::new();
    for (details, id) in &replies.accepted {
        let (status, body) = get(app.base(), id.clone()).await;
        if status == StatusCode::OK && body["details"] == details.as_str() {
            found_again += 1;
        } else {
            missing.push(format!("{id}: {status} {body}"));
        }
    }
    app.stop().await;
    let census = Census::of_sqlite(&faults::sqlite_db(&dir.path)).tagged("restart-between-gets");
    let counts = Counts::of(&replies, &census);
    counts.report_and_check(
        &format!("{}::host_restarted_between_two_gets", shape.name()),
        host,
        &format!(
            "found again after the restart={found_again}, stored={}",
            census.orders.len()
        ),
    );
    assert!(missing.is_empty(), "lost by the restart: {missing:?}");
    assert_eq!(counts.accepted, ORDERS, "{:?}", replies.refused);
}

/// Case 7: A guest over its time limit between storing an order and announcing it: the MQTT order
/// app's broker address points at a proxy that accepts and then stalls, so the publish hangs
/// past nanohost's `--timeout-ms`. The client gets a JSON 503 (or a 202, if the app gave up on the
/// announcement first); the order is stored `accepted`, and once the proxy forwards, a sweep
/// fulfils it, and a retry with the same Idempotency-Key gets that same order. On Spin, which has
/// no per-request time limit, the requests wait on the stalled publish and are answered once the
/// proxy forwards; the rest is the same.
async fn guest_over_its_time_limit(host: HostKind) {
    const ORDERS: usize = 4;
    let limit = Duration::from_millis(1500);
    let shape = Shape::Mqtt;
    let net = Net::start_with(
        host,
        shape,
        Store::Redis,
        &label(host, shape, "time-limit"),
        OrderHost::TimeLimited { timeout: limit },
    )
    .await;
    let proxy = net.proxy.as_ref().expect("a proxy in front of the broker");

    let tag = "time-limit";
    let mut set = tokio::task::JoinSet::new();
    for n in 0..ORDERS {
        let (client, base) = (net.client.clone(), net.base.clone());
        set.spawn(async move {
            let details = format!("{tag} {n}");
            let key = format!("time-limit-key-{n}-{}", std::process::id());
            let began = Instant::now();
            let reply = post_order(&client, &base, &details, Some(&key)).await;
            (details, key, reply, began.elapsed())
        });
    }
    // nanohost answers every request once its time limit stops the guest. `spin up` has none:
    // its requests wait on the stalled publish, so the proxy is released once every order is
    // stored and the limit has passed, and Spin answers then.
    let began = Instant::now();
    let deadline = began + Duration::from_secs(30);
    let mut first = Vec::new();
    loop {
        while let Some(done) = set.try_join_next() {
            first.push(done.unwrap());
        }
        if set.is_empty()
            || (host.is_spin()
                && began.elapsed() > limit
                && net.census(tag).with_status("accepted") == ORDERS)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {ORDERS} answered and {} stored after 30 s",
            first.len(),
            net.census(tag).with_status("accepted")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered_while_stalled = first.len();
    let stalled = proxy
        .stalled_connections
        .load(std::sync::atomic::Ordering::SeqCst);
    let before_forwarding = net.census(tag);
    proxy.forward();
    while let Some(done) = set.join_next().await {
        first.push(done.unwrap());
    }
    if host == HostKind::Nanohost {
        assert_eq!(
            answered_while_stalled, ORDERS,
            "nanohost answers before the proxy forwards"
        );
    }
    let mut answers: HashMap<String, usize> = HashMap::new();
    let mut replies = Replies::default();
    for (details, _, reply, took) in &first {
        let (status, body) = reply.as_ref().expect("an HTTP answer");
        *answers.entry(format!("{status}")).or_default() += 1;
        match *status {
            StatusCode::SERVICE_UNAVAILABLE => {
                let problem: Value = serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("a 503 that is not JSON ({e}): {body}"));
                assert!(problem["error"].is_string(), "{body}");
                assert!(
                    *took >= limit,
                    "a 503 before the time limit: {took:?} {body}"
                );
            }
            StatusCode::ACCEPTED => {}
            other => panic!("{other} for {details}: {body}"),
        }
        replies.record(details.clone(), reply.clone());
    }
    let (census, sweeps) = net.settle(tag).await;
    // A client that got the 503 retries with its key: it gets the stored order, not a second one.
    let mut retried_same = 0;
    for (details, key, _, _) in &first {
        let (status, body) = post_order(&net.client, &net.base, details, Some(key))
            .await
            .expect("an answer");
        assert_eq!(status, StatusCode::ACCEPTED, "retry of {details}: {body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["task"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        if census
            .orders
            .iter()
            .any(|o| o.id == id && o.details == *details)
        {
            retried_same += 1;
        }
        replies.accepted.insert(details.clone(), id);
    }
    let (census, more_sweeps) = net.settle(tag).await;
    let counts = Counts::of(&replies, &census);
    counts.report_and_check(
        "mqtt::guest_over_its_time_limit",
        host,
        &format!(
            "first answers {answers:?} after a {limit:?} limit; {} stored accepted before the \
             proxy forwarded, {stalled} broker connection(s) stalled; retries with the same key \
             got the stored order: {retried_same}; stored={} sweeps={}",
            before_forwarding.with_status("accepted"),
            census.orders.len(),
            sweeps + more_sweeps
        ),
    );
    assert!(stalled > 0, "no connection reached the stalling proxy");
    assert_eq!(
        before_forwarding.with_status("fulfilled"),
        0,
        "fulfilled while the broker stalled: did the publish go elsewhere?"
    );
    net.shutdown().await;
}

/// Issue 18, item 7: one publish larger than the trigger reads (17 MiB; any broker client may
/// send one) must not stop fulfilment: the orders placed after it are all fulfilled. Sweeps
/// re-announce what the trigger's reconnection gap may lose; a trigger that stopped (the old
/// nanohost) fulfils nothing however often they run.
async fn oversized_message_on_the_topic(host: HostKind) {
    const ORDERS: usize = 40;
    let tag = "oversized-message";
    let mut net = start_net(host, Shape::Mqtt, tag).await;
    let port = net.mosquitto.as_ref().unwrap().port;
    support::mqtt_publish(port, "orders/placed", vec![b'x'; 17 << 20]).await;
    net.actions
        .push("published 17 MiB on orders/placed, then the orders".into());
    let sent = Arc::new(AtomicUsize::new(0));
    let replies = collect(spawn_load(
        &net,
        tag,
        ORDERS,
        4,
        Duration::from_millis(20),
        sent,
    ))
    .await;
    let counts = settle_and_check(&net, tag, &replies, "mqtt::oversized_message").await;
    assert_eq!((counts.refused, replies.no_answer), (0, 0));
    assert_eq!(counts.accepted, ORDERS);
    net.shutdown().await;
}

fn mqtt_unavailable(host: HostKind) -> Option<String> {
    if !host.is_spin() || host.unavailable().is_some() {
        return None;
    }
    host.mqtt_trigger_plugin().err()
}

fn unavailable(host: HostKind, shape: Shape) -> Option<String> {
    shape.unserved(host).or_else(|| match shape.transport() {
        Some(Transport::Mqtt) => mqtt_unavailable(host),
        Some(Transport::Redis) | None => None,
    })
}

/// A case body that waits for the cases before it to finish.
async fn serial(body: impl Future<Output = ()> + Send) {
    let _turn = ONE_AT_A_TIME.lock().await;
    body.await
}

/// A fault case that takes the shape it breaks.
type ShapeCase = fn(HostKind, Shape) -> Pin<Box<dyn Future<Output = ()> + Send>>;

fn main() {
    let shape_cases: [(&str, &[Shape], ShapeCase); 3] = [
        (
            "redis_restarted_under_load",
            &[
                Shape::Composed,
                Shape::ComposedP3,
                Shape::Dependencies,
                Shape::Redis,
                Shape::Mqtt,
                Shape::RedisP3,
                Shape::MqttP3,
            ],
            |host, shape| Box::pin(redis_restarted_under_load(host, shape)),
        ),
        (
            "fulfilment_app_stopped_for_5s",
            &[Shape::Redis, Shape::Mqtt, Shape::RedisP3, Shape::MqttP3],
            |host, shape| Box::pin(fulfilment_app_stopped_for_5s(host, shape)),
        ),
        (
            "mosquitto_restarted_under_load",
            &[Shape::Mqtt, Shape::MqttP3],
            |host, shape| Box::pin(mosquitto_restarted_under_load(host, shape)),
        ),
    ];
    let mut cases: Vec<Case> = Vec::new();
    cases.push(harness::nanohost_only("composed::host_body_limit", || {
        serial(the_host_cuts_a_body_that_does_not_come())
    }));
    for host in HostKind::ALL {
        for (name, shapes, body) in shape_cases {
            for &shape in shapes {
                let name = format!("{}::{name}", shape.name());
                cases.push(
                    case(host, name, move || serial(body(host, shape)))
                        .skip_if(unavailable(host, shape)),
                );
            }
        }
        for shape in [Shape::Composed, Shape::ComposedP3] {
            let skip = || unavailable(host, shape);
            for (store, name) in [(Store::Embedded, "embedded"), (Store::Redis, "redis")] {
                cases.push(
                    case(
                        host,
                        format!("{}_{name}::same_key_race", shape.name()),
                        move || serial(same_key_race(host, shape, store)),
                    )
                    .skip_if(skip()),
                );
            }
            let composed = shape.name();
            cases.push(
                case(host, format!("{composed}::slow_clients"), move || {
                    serial(slow_clients_do_not_starve_a_normal_one(host, shape))
                })
                .skip_if(skip()),
            );
            cases.push(
                case(host, format!("{composed}::slow_bodies"), move || {
                    serial(slow_bodies_do_not_starve_the_app(host, shape))
                })
                .skip_if(skip()),
            );
            cases.push(
                case(
                    host,
                    format!("{composed}::host_restarted_between_two_gets"),
                    move || serial(host_restarted_between_two_gets(host, shape)),
                )
                .skip_if(skip()),
            );
        }
        cases.push(
            case(host, "mqtt::oversized_message", move || {
                serial(oversized_message_on_the_topic(host))
            })
            .skip_if(mqtt_unavailable(host)),
        );
        cases.push(
            case(host, "mqtt::guest_over_its_time_limit", move || {
                serial(guest_over_its_time_limit(host))
            })
            .skip_if(mqtt_unavailable(host)),
        );
    }
    harness::run(cases)
}
