//! Brokers and stores that need a password (issue 10, "secrets stay secret"), on nanohost and on
//! real Spin 3.6.3: the networked shapes against `redis-server --requirepass` and a Mosquitto with
//! `allow_anonymous false` and a `password_file`, with the order records in that Redis through the
//! runtime config's URL. Orders are placed and fulfilled; no response body and no file the hosts
//! write (their logs, Spin's component logs) holds a password, raw or URL-encoded, also when a
//! password is wrong. nanohost runs as its binary here, so that its log is a file to read.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use support::harness::{self, case, Case, HostKind};
use support::host::{App, AppDir, AppSpec};
use support::orders::{self, Transport};
use support::secured::{self, SecuredMosquitto, SecuredRedis};
use support::TempDir;

const REDIS_PASSWORD: &str = "redis-s3cret/with@signs:";
const MQTT_USERNAME: &str = "orders";
const MQTT_PASSWORD: &str = "mqtt-s3cret/with@signs:";
const WRONG_PASSWORD: &str = "wrong-s3cret";
/// In every password above: a body or log line holding any of them, whole or in part, raw or
/// URL-encoded, holds this.
const MARK: &str = "s3cret";

/// Long enough for a slow CI machine; a healthy run needs a fraction of it.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);
/// Bounded: enough concurrent publishes to use the credentials many times over.
const ORDERS: usize = 24;
const CLIENTS: usize = 4;

/// The brokers of a shape, every one of which needs a password, and the runtime config that keeps
/// the orders in that Redis.
struct Brokers {
    transport: Transport,
    redis: SecuredRedis,
    mosquitto: Option<SecuredMosquitto>,
    runtime_config: PathBuf,
    _config: TempDir,
}

impl Brokers {
    async fn start(transport: Transport, label: &str) -> Brokers {
        let redis = secured::redis(REDIS_PASSWORD);
        assert!(
            redis.refuses_anonymous_clients(),
            "the test Redis lets clients in without the password"
        );
        let mosquitto = match transport {
            Transport::Mqtt => {
                let broker = secured::mosquitto(MQTT_USERNAME, MQTT_PASSWORD);
                assert!(
                    broker.refuses(None).await,
                    "Mosquitto lets anonymous clients in"
                );
                assert!(
                    broker.refuses(Some((MQTT_USERNAME, WRONG_PASSWORD))).await,
                    "Mosquitto lets a wrong password in"
                );
                assert!(
                    !broker.refuses(Some((MQTT_USERNAME, MQTT_PASSWORD))).await,
                    "Mosquitto refuses the right password"
                );
                Some(broker)
            }
            Transport::Redis => None,
        };
        // Outside the apps' folders, which are searched for the password afterwards.
        let config = TempDir::new(&format!("{label}-config"));
        let runtime_config = redis.runtime_config(REDIS_PASSWORD, &config.path);
        Brokers {
            transport,
            redis,
            mosquitto,
            runtime_config,
            _config: config,
        }
    }

    /// `apps/<app>-<transport>`, run as nanohost's binary, its orders in the protected Redis.
    fn spec(&self, app: &str) -> AppSpec {
        let app = format!("{app}-{}", self.transport.name());
        support::networked_app(&app, &self.runtime_config).nanohost_binary()
    }

    /// The fulfilment app, its trigger logging in as `login` says.
    fn fulfilment(&self, login: Login) -> AppSpec {
        let spec = self.spec("fulfilment");
        match (&self.mosquitto, login.password(self.transport)) {
            (Some(broker), Some(password)) => spec
                .variable("mqtt_address", broker.address())
                .variable("mqtt_username", MQTT_USERNAME)
                .variable("mqtt_password", password),
            // The manifest's defaults: no username, no password.
            (Some(broker), None) => spec.variable("mqtt_address", broker.address()),
            // The Redis trigger's address carries the password.
            (None, Some(password)) => spec.variable("redis_address", self.redis.url_with(password)),
            (None, None) => spec.variable("redis_address", self.redis.address()),
        }
    }

    /// The order app, its publisher using `publisher_password`; every order still `accepted` is
    /// due at once: a sweep publishes again right away.
    fn order_app(&self, publisher_password: &str) -> AppSpec {
        let spec = self
            .spec("order-app")
            .variable("sweep_grace_ms", "0")
            .variable("sweep_token", support::SWEEP_TOKEN);
        match &self.mosquitto {
            Some(broker) => spec
                .variable("mqtt_address", broker.address())
                .variable("mqtt_username", MQTT_USERNAME)
                .variable("mqtt_password", publisher_password),
            // The publisher's address cannot carry the password (it is an allowed outbound
            // host), so its password is a variable of its own.
            None => spec
                .variable("redis_address", self.redis.address())
                .variable("redis_password", publisher_password),
        }
    }

    /// Where the fulfilment app's trigger connects, as both hosts name it in their errors.
    fn trigger_broker(&self) -> String {
        let port = match &self.mosquitto {
            Some(broker) => broker.mosquitto.port,
            None => self.redis.redis.port,
        };
        format!("127.0.0.1:{port}")
    }

    async fn wait_until_subscribed(&self, fulfilment_app: &mut App) {
        orders::wait_until_subscribed(
            fulfilment_app,
            self.mosquitto.as_ref().map(|b| &b.mosquitto),
            |channel| self.redis.subscribers(channel),
        )
        .await;
    }
}

/// How the fulfilment app's trigger logs in to its broker.
#[derive(Clone, Copy, Debug)]
enum Login {
    Right,
    WrongPassword,
    /// No password at all (MQTT: no username either), as the manifest has by default.
    NoPassword,
}

impl Login {
    fn name(self) -> &'static str {
        match self {
            Login::Right => "right-login",
            Login::WrongPassword => "wrong-trigger-password",
            Login::NoPassword => "no-trigger-password",
        }
    }

    fn password(self, transport: Transport) -> Option<&'static str> {
        match self {
            Login::Right => Some(right_password(transport)),
            Login::WrongPassword => Some(WRONG_PASSWORD),
            Login::NoPassword => None,
        }
    }
}

/// The two apps of a shape and their brokers. Fields drop in order: the apps stop before the
/// brokers.
struct Shape {
    host: HostKind,
    label: String,
    order_app: App,
    fulfilment_apps: Vec<App>,
    dirs: Vec<PathBuf>,
    base: String,
    client: Client,
    bodies: Vec<String>,
    brokers: Brokers,
}

impl Shape {
    /// Starts the fulfilment app with the right credentials and waits for its subscription, then
    /// the order app, whose publisher gets `publisher_password` (the right one or not). Both keep
    /// their orders in the password-protected Redis.
    async fn start(
        host: HostKind,
        transport: Transport,
        case: &str,
        publisher_password: &str,
    ) -> Shape {
        let label = format!("{}-{}-{case}", host.name(), transport.name());
        let brokers = Brokers::start(transport, &label).await;
        let fulfilment_dir = AppDir::new(&format!("{label}-fulfilment-0"));
        let mut fulfilment_app =
            App::start(host, &brokers.fulfilment(Login::Right), &fulfilment_dir).await;
        brokers.wait_until_subscribed(&mut fulfilment_app).await;
        let mut shape = Shape::start_order_app(host, label, brokers, publisher_password).await;
        shape.dirs.push(fulfilment_dir.path);
        shape.fulfilment_apps.push(fulfilment_app);
        shape
    }

    /// The order app alone, its publisher and store with the right passwords: the fulfilment app
    /// comes later, through [`Shape::start_fulfilment`].
    async fn without_fulfilment(host: HostKind, transport: Transport, case: &str) -> Shape {
        let label = format!("{}-{}-{case}", host.name(), transport.name());
        let brokers = Brokers::start(transport, &label).await;
        Shape::start_order_app(host, label, brokers, right_password(transport)).await
    }

    async fn start_order_app(
        host: HostKind,
        label: String,
        brokers: Brokers,
        publisher_password: &str,
    ) -> Shape {
        let order_dir = AppDir::new(&format!("{label}-order-app"));
        let order_app = App::start(host, &brokers.order_app(publisher_password), &order_dir).await;
        Shape {
            host,
            base: order_app.base(),
            order_app,
            fulfilment_apps: Vec::new(),
            dirs: vec![order_dir.path],
            client: Client::new(),
            bodies: Vec::new(),
            brokers,
            label,
        }
    }

    /// Starts a fulfilment app in a folder of its own, its trigger logging in as `login` says;
    /// returns at once (it has no HTTP listener to wait for) with it.
    async fn start_fulfilment(&mut self, login: Login) -> &mut App {
        let n = self.fulfilment_apps.len();
        let dir = AppDir::new(&format!("{}-fulfilment-{n}-{}", self.label, login.name()));
        let app = App::start(self.host, &self.brokers.fulfilment(login), &dir).await;
        self.dirs.push(dir.path);
        self.fulfilment_apps.push(app);
        self.fulfilment_apps.last_mut().unwrap()
    }

    /// Waits until the fulfilment app started last is subscribed.
    async fn wait_until_subscribed(&mut self) {
        let app = self.fulfilment_apps.last_mut().expect("a fulfilment app");
        self.brokers.wait_until_subscribed(app).await;
    }

    /// Sends `request` and keeps the body, to search it for passwords at the end.
    async fn send(&mut self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        self.bodies.push(text.clone());
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status} with a body that is not JSON ({e}): {text}"));
        (status, body)
    }

    async fn place(&mut self, details: &str) -> (StatusCode, Value) {
        let request = orders::place_request(&self.client, &self.base, details);
        self.send(request).await
    }

    async fn status(&mut self, id: &str) -> String {
        let request = self.client.get(format!("{}/order/{id}", self.base));
        let (status, body) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["status"].as_str().unwrap().to_string()
    }

    async fn sweep(&mut self) -> Value {
        let request = self
            .client
            .post(format!("{}/sweep", self.base))
            .bearer_auth(support::SWEEP_TOKEN);
        let (status, body) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// `ORDERS` orders from `CLIENTS` concurrent clients; the ids of the accepted ones.
    async fn place_many(&mut self) -> HashSet<String> {
        let mut ids = HashSet::new();
        for (status, text) in orders::post_orders(&self.client, &self.base, ORDERS, CLIENTS).await {
            self.bodies.push(text.clone());
            assert_eq!(status, StatusCode::ACCEPTED, "{text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            ids.insert(body["task"]["id"].as_str().unwrap().to_string());
        }
        assert_eq!(ids.len(), ORDERS, "an order id was handed out twice");
        ids
    }

    /// The orders that are not `fulfilled` by the delivery deadline.
    async fn unfulfilled_after_deadline(&mut self, ids: &HashSet<String>) -> Vec<String> {
        orders::unfulfilled_after(DELIVERY_DEADLINE, ids, self).await
    }

    /// Stops both apps (their logs are complete then), and finds no password in any body they
    /// answered nor in any file they wrote.
    async fn stop_and_find_no_password(self) {
        let Shape {
            order_app,
            fulfilment_apps,
            dirs,
            bodies,
            ..
        } = self;
        order_app.stop().await;
        for app in fulfilment_apps {
            app.stop().await;
        }
        assert_no_password(&bodies, &dirs);
    }
}

/// No body and no file under `dirs` (hosts' logs, Spin's component logs, state) holds [`MARK`].
fn assert_no_password(bodies: &[String], dirs: &[PathBuf]) {
    let shown: Vec<&String> = bodies.iter().filter(|b| b.contains(MARK)).collect();
    assert!(
        shown.is_empty(),
        "a response body shows a password: {shown:?}"
    );
    let mut files = Vec::new();
    for dir in dirs {
        files_under(dir, &mut files);
    }
    let logs = files.iter().filter(|f| is_log(f)).count();
    assert!(logs > 0, "no host log found under {dirs:?}");
    let mut leaks = Vec::new();
    for file in &files {
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap_or_default()).into_owned();
        leaks.extend(
            text.lines()
                .filter(|line| line.contains(MARK))
                .map(|line| format!("{}: {line}", file.display())),
        );
    }
    assert!(
        leaks.is_empty(),
        "the hosts wrote a password:\n{}",
        leaks.join("\n")
    );
    harness::loud(&format!(
        "no password in {} response bodies nor in {} files ({logs} logs) the hosts wrote",
        bodies.len(),
        files.len()
    ));
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn is_log(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "log" || e == "txt")
}

/// Orders placed through a publisher, a trigger and a store that all authenticate are fulfilled,
/// and the password shows nowhere.
async fn orders_are_fulfilled_with_passwords_everywhere(host: HostKind, transport: Transport) {
    let mut shape = Shape::start(host, transport, "fulfilled", right_password(transport)).await;
    let ids = shape.place_many().await;
    let never = shape.unfulfilled_after_deadline(&ids).await;
    assert!(never.is_empty(), "orders {never:?} were never fulfilled");
    let report = shape.sweep().await;
    assert_eq!(report["failed"], 0, "{report}");
    let stored: Vec<String> = redis::cmd("KEYS")
        .arg("*order:*")
        .query(&mut shape.brokers.redis.connection())
        .unwrap();
    assert_eq!(
        stored.len(),
        ORDERS,
        "the orders are in the protected Redis"
    );
    harness::loud(&format!(
        "{}: {ORDERS} orders accepted and fulfilled through brokers that need a password",
        transport.name()
    ));
    shape.stop_and_find_no_password().await;
}

/// A publisher with the wrong password cannot announce: the order stays `accepted` (the store's
/// password is right), the sweep's retry fails too, and neither the wrong nor the right password
/// shows in a body or a log.
async fn a_wrong_publisher_password_keeps_the_order_and_shows_nothing(
    host: HostKind,
    transport: Transport,
) {
    let mut shape = Shape::start(host, transport, "wrong-password", WRONG_PASSWORD).await;
    let (status, body) = shape.place("announced with the wrong password").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["task"]["id"].as_str().unwrap().to_string();
    let report = shape.sweep().await;
    assert!(
        report["failed"].as_u64() >= Some(1),
        "the sweep's publish with the wrong password did not fail: {report}"
    );
    assert_eq!(shape.status(&id).await, "accepted");
    shape.stop_and_find_no_password().await;
}

/// Bounds a start that must fail: Spin compiles the app first (seconds on a cold cache, on a busy
/// machine); the refused login itself ends either host within a second.
const REFUSED_START_DEADLINE: Duration = Duration::from_secs(60);
/// Orders placed while no fulfilment app listens.
const ORDERS_MEANWHILE: usize = 3;

/// Spin's Redis trigger given an address without the password a Redis wants: redis-rs drops the
/// server's NOAUTH answer to SUBSCRIBE, so `spin up` lists the channel as active and runs,
/// subscribed to nothing (3.6.3, 4.0.2 and 4.1.0-pre0 alike). nanohost refuses to start instead
/// (host/README, differences).
fn runs_deaf(host: HostKind, transport: Transport, login: Login) -> bool {
    host.is_spin() && matches!((transport, login), (Transport::Redis, Login::NoPassword))
}

/// A fulfilment app whose trigger the broker refuses (`login`) does not pretend to listen: the
/// host exits non-zero at start-up with an error that names the broker, as `spin up` does (the
/// one case where Spin runs deaf instead is held to that, see [`runs_deaf`]). Orders placed
/// meanwhile stay `accepted`, in the outbox; once the app runs with the right password, a sweep
/// announces them again and they are fulfilled. No password shows in a body or a log.
async fn a_refused_trigger_fails_visibly_and_loses_no_order(
    host: HostKind,
    transport: Transport,
    login: Login,
) {
    let mut shape = Shape::without_fulfilment(host, transport, login.name()).await;
    let broker = shape.brokers.trigger_broker();
    let deaf = runs_deaf(host, transport, login);
    let refused = shape.start_fulfilment(login).await;
    if deaf {
        let log = refused.log.clone().unwrap();
        let listed = format!("{broker}/orders.placed: [fulfilment]");
        refused
            .wait_for("Spin's list of active channels", || {
                std::fs::read_to_string(&log).is_ok_and(|text| text.contains(&listed))
            })
            .await;
    } else {
        let status = refused
            .exit_within(REFUSED_START_DEADLINE)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{} runs on {REFUSED_START_DEADLINE:?} after a refused login ({login:?}):\n{}",
                    host.name(),
                    refused.log_tail(20)
                )
            });
        assert!(!status.success(), "{} exited with {status}", host.name());
        let said = std::fs::read_to_string(refused.log.as_ref().unwrap()).unwrap();
        assert!(
            said.to_lowercase().contains("error") && said.contains(&broker),
            "{} exited without an error that names {broker}:\n{said}",
            host.name()
        );
    }

    let mut ids = HashSet::new();
    for n in 0..ORDERS_MEANWHILE {
        let (status, body) = shape.place(&format!("placed meanwhile {n}")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.insert(body["task"]["id"].as_str().unwrap().to_string());
    }
    let report = shape.sweep().await;
    assert_eq!(
        report["failed"], 0,
        "the publisher's password is right: {report}"
    );
    assert!(
        report["announced"].as_u64() >= Some(ORDERS_MEANWHILE as u64),
        "{report}"
    );
    for id in &ids {
        assert_eq!(shape.status(id).await, "accepted", "order {id}");
    }
    if deaf {
        let refused = shape.fulfilment_apps.last_mut().unwrap();
        assert!(
            refused.exit_within(Duration::ZERO).await.is_none(),
            "Spin's Redis trigger without a password no longer runs deaf: update this case and \
             host/README's difference table:\n{}",
            refused.log_tail(20)
        );
        assert_eq!(
            shape.brokers.redis.subscribers("orders.placed"),
            0,
            "Spin's trigger without the password is subscribed after all"
        );
        shape.fulfilment_apps.pop().unwrap().stop().await;
    }

    shape.start_fulfilment(Login::Right).await;
    shape.wait_until_subscribed().await;
    let report = shape.sweep().await;
    assert_eq!(report["failed"], 0, "{report}");
    let never = shape.unfulfilled_after_deadline(&ids).await;
    assert!(never.is_empty(), "orders {never:?} were lost");
    harness::loud(&format!(
        "{} {}, {login:?}: {}; {ORDERS_MEANWHILE} orders placed meanwhile were fulfilled after \
         a restart with the right password and a sweep",
        host.name(),
        transport.name(),
        if deaf {
            "ran subscribed to nothing (as Spin does)"
        } else {
            "exited at start-up with an error naming the broker"
        }
    ));
    shape.stop_and_find_no_password().await;
}

/// How long Spin is given to answer a request whose store cannot authenticate.
const SPIN_STORE_WAIT: Duration = Duration::from_secs(10);

/// The order app's store behind a wrong password. nanohost answers a JSON 503 that does not show
/// the password. Spin 3.6.3 does not answer at all for minutes (its Redis store keeps retrying
/// the connection while the request waits), so there the case holds Spin to that: no answer
/// within [`SPIN_STORE_WAIT`]. On both, the logs show no password.
async fn a_wrong_store_password_is_refused_without_showing_it(host: HostKind) {
    let label = format!("{}-wrong-store-password", host.name());
    let redis = secured::redis(REDIS_PASSWORD);
    let config = TempDir::new(&format!("{label}-config"));
    let dir = AppDir::new(&label);
    let spec = AppSpec::new(support::workspace_root().join("apps/order-app-redis/spin.toml"))
        .runtime_config(Some(redis.runtime_config(WRONG_PASSWORD, &config.path)))
        .variable("redis_address", redis.address())
        .variable("redis_password", REDIS_PASSWORD)
        .variable("message_key", support::MESSAGE_KEY)
        .nanohost_binary();
    support::composed("order-app-redis");
    let app = App::start(host, &spec, &dir).await;
    let request = Client::new()
        .post(format!("{}/order", app.base()))
        .header("content-type", "application/json")
        .body(json!({ "details": "nowhere to keep it" }).to_string());
    let mut bodies = Vec::new();
    match host {
        HostKind::Nanohost => {
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
            let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert!(body["error"].is_string(), "{body}");
            bodies.push(text);
        }
        HostKind::Spin | HostKind::Spin4 | HostKind::Spin41 => {
            let answer = request.timeout(SPIN_STORE_WAIT).send().await;
            match answer {
                Err(e) if e.is_timeout() => {}
                Err(e) => panic!("Spin failed the request otherwise than by not answering: {e}"),
                Ok(response) => panic!(
                    "Spin answered {} within {SPIN_STORE_WAIT:?} (host/README says it does not): \
                     update this case and the difference table",
                    response.status()
                ),
            }
        }
    }
    app.stop().await;
    assert_no_password(&bodies, std::slice::from_ref(&dir.path));
}

/// The password of the broker the order app publishes to.
fn right_password(transport: Transport) -> &'static str {
    match transport {
        Transport::Mqtt => MQTT_PASSWORD,
        Transport::Redis => REDIS_PASSWORD,
    }
}

impl orders::OrderStatus for Shape {
    async fn status_of(&mut self, id: &str) -> String {
        self.status(id).await
    }
}

/// Spin keeps passwords out of its log at its default level only: at `debug` it writes every
/// outbound Redis URL it checks, password and all (host/README, differences). nanohost masks them
/// at every level.
fn spin_log_level_changed(host: HostKind) -> Option<String> {
    let level = std::env::var("RUST_LOG").ok().filter(|l| !l.is_empty())?;
    host.is_spin().then(|| {
        format!("RUST_LOG={level}: Spin logs outbound URLs with their passwords below its default level")
    })
}

fn main() {
    let mut cases: Vec<Case> = Vec::new();
    for host in HostKind::ALL {
        for transport in [Transport::Redis, Transport::Mqtt] {
            let skip = transport
                .unavailable_on(host)
                .or(spin_log_level_changed(host));
            crate::on_host!(
                cases,
                host,
                format!("{}::", transport.name()),
                [
                    orders_are_fulfilled_with_passwords_everywhere(host, transport)
                        .skip_if(skip.clone()),
                    a_wrong_publisher_password_keeps_the_order_and_shows_nothing(host, transport)
                        .skip_if(skip.clone()),
                ]
            );
            for login in [Login::WrongPassword, Login::NoPassword] {
                cases.push(
                    case(
                        host,
                        format!(
                            "{}::{}::a_refused_trigger_fails_visibly_and_loses_no_order",
                            transport.name(),
                            login.name().replace('-', "_")
                        ),
                        move || {
                            a_refused_trigger_fails_visibly_and_loses_no_order(
                                host, transport, login,
                            )
                        },
                    )
                    .skip_if(skip.clone()),
                );
            }
        }
        crate::on_host!(
            cases,
            host,
            "redis_store::",
            [a_wrong_store_password_is_refused_without_showing_it(host)
                .skip_if(spin_log_level_changed(host))]
        );
    }
    harness::run(cases)
}
