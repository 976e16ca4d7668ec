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

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A manifest under `host/tests/manifests/`. Checks that the probe fixture is built.
pub fn manifest(name: &str) -> PathBuf {
    wasm("probe");
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests")
        .join(name)
}

/// A loopback port nobody listens on, never handed out twice by this process.
///
/// Taken below the kernel's ephemeral range: a port from `bind(":0")` is released before the
/// broker binds it, and in that gap a host's own `:0` listener or an outgoing connection may be
/// given the same port; a broker that then fails to bind would leave the test talking to
/// someone else's server. Outside that range only another `free_port` could take it, and the
/// counter (started at an offset by process id) and the bind probe keep those apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_low.max(10_001));
    let span = high - low;
    let offset = std::process::id() * 211 % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (offset + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}")
}

/// Waits until `port` accepts connections and `ours` says the server there is `child`, not
/// whoever else may hold the port; panics if `child` exits first or after 20 s.
fn wait_until_serving(port: u16, child: &mut Child, what: &str, ours: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() && ours() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} on port {port} exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` on a free loopback port, killed on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// On a given port: a test that restarts Redis brings it back where the apps look for it.
    pub fn start_on(port: u16) -> Redis {
        Redis::start_with(port, &["--appendonly", "no"])
    }

    /// `redis-server` on loopback `port`, without snapshots, with `persistence` flags on top.
    pub fn start_with(port: u16, persistence: &[&str]) -> Redis {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(persistence)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (apt-get install redis-server)");
        let pid = child.id();
        let url = format!("redis://127.0.0.1:{port}");
        wait_until_serving(port, &mut child, "redis-server", || {
            redis_process_id(&url) == Some(pid)
        });
        Redis { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A Spin runtime config in `dir` that keeps the `default` key-value store in this Redis:
    /// the project's `runtime-config.redis.toml` with this server's address put in.
    pub fn runtime_config(&self, dir: &Path) -> PathBuf {
        Redis::runtime_config_for(&self.url(), dir)
    }

    /// The same for any Redis URL (e.g. one where nothing listens).
    pub fn runtime_config_for(url: &str, dir: &Path) -> PathBuf {
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

    /// A blocking connection, for a test that looks at what the apps stored.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to the test's redis-server")
    }

    /// How many keys the apps stored.
    pub fn key_count(&self) -> i64 {
        redis::cmd("DBSIZE").query(&mut self.connection()).unwrap()
    }

    /// How many clients are subscribed to `channel`.
    pub fn subscribers(&self, channel: &str) -> i64 {
        let reply: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut self.connection())
            .unwrap();
        reply.1
    }
}

/// The process id of the Redis server answering at `url`, if one answers.
fn redis_process_id(url: &str) -> Option<u32> {
    let info: String = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .and_then(|mut c| redis::cmd("INFO").arg("server").query(&mut c))
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `mosquitto` broker on a free loopback port, killed on drop. It logs subscriptions to a
/// file, so that a test can wait until a trigger has subscribed (an MQTT broker has no
/// `PUBSUB NUMSUB`).
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::start_on(free_port())
    }

    /// On a given port: a test that restarts the broker brings it back where the apps look.
    /// Right after a kill the port may still be held by the old broker's closed connections
    /// (mosquitto binds without SO_REUSEADDR): it exits with "Address already in use", and is
    /// started again until the port is free.
    pub fn start_on(port: u16) -> Mosquitto {
        let dir = TempDir::new("mosquitto");
        let log = dir.path.join("mosquitto.log");
        // Started as root, mosquitto drops to its own user, which must be able to append to the
        // log; its stdout would be block-buffered, so a file it flushes per line. `information`
        // brings the "running" line that tells this broker, and not another, holds the port.
        std::fs::File::create(&log).expect("create mosquitto.log");
        std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .expect("open mosquitto.log to the broker's user");
        let conf = dir.file(
            "mosquitto.conf",
            &format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 set_tcp_nodelay true\nlog_dest file {}\nlog_type subscribe\nlog_type error\n\
                 log_type information\n",
                log.display()
            ),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let _ = std::fs::write(&log, "");
            let mut child = mosquitto_process(&conf);
            let running = || {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .any(|line| line.ends_with(" running"))
            };
            let started = loop {
                if running() && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break true;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if started {
                return Mosquitto {
                    child,
                    port,
                    log,
                    _dir: dir,
                };
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto cannot listen on {port}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// How many subscriptions to exactly `topic` the broker has logged.
    pub fn subscriptions(&self, topic: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.split_whitespace().last() == Some(topic))
            .count()
    }
}

/// `mosquitto -c conf`, its output discarded (it logs to the file its configuration names).
fn mosquitto_process(conf: &Path) -> Child {
    Command::new("mosquitto")
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is not installed (apt-get install mosquitto)")
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
