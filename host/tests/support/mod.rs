//! Shared helpers for nanohost's integration tests: real brokers on free loopback ports, the
//! paths of the wasm fixtures, the app under test on either host (`host`), the harness that runs
//! one table of cases on both hosts (`harness`), and HTTP helpers (`http`). Nothing here mocks
//! Redis or MQTT.
#![allow(dead_code)]

pub mod faults;
pub mod harness;
pub mod host;
pub mod http;
pub mod orders;
pub mod secured;
pub mod spin_toml;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use test_brokers::{free_port, Mosquitto, Redis};

/// The `sweep_token` the tests give apps that are swept: `POST /sweep` is closed without one.
pub const SWEEP_TOKEN: &str = "test-sweep-token-6c1f";

/// The `message_key` every networked app of the tests signs and checks "order placed" with (the
/// manifests declare it required, with no default).
pub const MESSAGE_KEY: &str = "nano-orders-tests-message-key";

/// The workspace root (where the root Cargo.toml and `target/` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `target/` in the workspace).
pub fn target_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    if target.is_absolute() {
        target
    } else {
        workspace_root().join(target)
    }
}

/// The path of a wasm component built by `cargo xtask build`, e.g. `wasm("probe")`.
/// Panics with a clear message if it has not been built.
pub fn wasm(name: &str) -> PathBuf {
    let path = target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build` first",
        path.display()
    );
    path
}

/// A composed app from `cargo xtask build`, e.g. `composed("order-app")`.
pub fn composed(name: &str) -> PathBuf {
    let path = target_dir().join(format!("composed/{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build` first",
        path.display()
    );
    path
}

/// The networked app `apps/<app>/spin.toml` (its composed wasm checked to be built), its store in
/// the Redis that `runtime_config` names, signing with [`MESSAGE_KEY`].
pub fn networked_app(app: &str, runtime_config: &Path) -> host::AppSpec {
    composed(app);
    host::AppSpec::new(workspace_root().join(format!("apps/{app}/spin.toml")))
        .runtime_config(Some(runtime_config.to_path_buf()))
        .variable("message_key", MESSAGE_KEY)
}

/// A manifest under `host/tests/manifests/`. Checks that the probe fixture is built.
pub fn manifest(name: &str) -> PathBuf {
    wasm("probe");
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests")
        .join(name)
}

/// A Spin runtime config in `dir` that keeps the `default` key-value store in the Redis at `url`:
/// the project's `runtime-config.redis.toml` with that address put in.
pub fn redis_runtime_config(url: &str, dir: &Path) -> PathBuf {
    let template = std::fs::read_to_string(workspace_root().join("runtime-config.redis.toml"))
        .expect("read runtime-config.redis.toml");
    assert!(
        template.contains("redis://127.0.0.1:6379"),
        "runtime-config.redis.toml no longer names redis://127.0.0.1:6379"
    );
    let config = template.replace("redis://127.0.0.1:6379", url);
    std::fs::create_dir_all(dir).expect("create the runtime config's folder");
    let path = dir.join("runtime-config.toml");
    std::fs::write(&path, config).expect("write runtime config");
    path
}

/// A directory under `target/host-tests/`, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path =
            harness::run_dir().join(format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// Writes a file in the directory and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A manifest text whose `source` points at the probe fixture by absolute path, for tests that
/// write their manifest into a temporary directory.
pub fn probe_source() -> String {
    wasm("probe").display().to_string()
}

/// The probe fixture behind `/p/...` with the default key-value store, as app `name`.
pub fn probe_toml(name: &str) -> spin_toml::SpinToml {
    spin_toml::SpinToml::new(name, "/p/...", "probe", &probe_source())
        .field(r#"key_value_stores = ["default"]"#)
}

/// `http://ADDR` for a running host.
pub fn base(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Publishes `payload` at QoS 1 to the loopback Mosquitto on `port` as an anonymous client (a
/// foreign or forging publisher, or one with an oversized message) and returns once the broker has
/// acknowledged it.
pub async fn mqtt_publish(port: u16, topic: &str, payload: Vec<u8>) {
    use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
    let mut options =
        MqttOptions::new(format!("test-publisher-{}", free_port()), "127.0.0.1", port);
    options.set_keep_alive(std::time::Duration::from_secs(5));
    options.set_max_packet_size(64 << 20, 64 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await.unwrap() {
                return;
            }
        }
    })
    .await
    .expect("the broker acknowledges the publish");
    let _ = client.disconnect().await;
}
