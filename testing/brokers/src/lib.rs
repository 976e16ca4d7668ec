//! Real brokers for the tests and the benchmark: `redis-server` and `mosquitto` on loopback
//! ports, each killed when its value drops or this process dies ([`process`]). Nothing here
//! mocks Redis or MQTT.
//!
//! A broker counts as started only when it is *the one* serving its port (Redis by its process
//! id, Mosquitto by the "running" line of its own log): a port can be taken by someone else between
//! the choice and the bind, and a client that then talks to the wrong server fails far from the
//! cause.

pub mod process;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on, never handed out twice by this process.
///
/// Taken below the kernel's ephemeral range: a port from `bind(":0")` is released before the
/// broker binds it, and in that gap a host's own `:0` listener or an outgoing connection may be
/// given the same port. Outside that range only another `free_port` could take it, and the
/// counter (started at an offset by process id) and the bind probe keep those apart.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = (10_000u32, ephemeral_low().max(10_001));
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

/// The first port the kernel hands out for `bind(":0")` and outgoing connections.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768)
}

/// Waits until `port` accepts connections and `ours` says the server there is `child`; an error
/// if `child` exits first or after 20 s.
pub fn wait_until_serving(
    port: u16,
    child: &mut Child,
    what: &str,
    ours: impl Fn() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() && ours() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} on port {port} exited early with {status}"));
        }
        if Instant::now() >= deadline {
            return Err(format!("{what} did not start on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` on a loopback port, without snapshots, killed on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
    password: Option<String>,
}

impl Redis {
    /// On a free port, nothing kept on disk.
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// On a given port: a test that restarts Redis brings it back where the apps look for it.
    pub fn start_on(port: u16) -> Redis {
        Redis::start_with(port, &["--appendonly", "no"])
    }

    /// On `port` with `args` on top (persistence, `--requirepass`); panics if it cannot start.
    pub fn start_with(port: u16, args: &[&str]) -> Redis {
        Redis::try_start_with(port, args).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start_with(port: u16, args: &[&str]) -> Result<Redis, String> {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let mut child = process::spawn(cmd, process::OnParentDeath::Kill)
            .map_err(|e| format!("cannot run redis-server (apt-get install redis-server): {e}"))?;
        let password = args
            .windows(2)
            .find(|pair| pair[0] == "--requirepass")
            .map(|pair| pair[1].to_string());
        let pid = child.id();
        let started = wait_until_serving(port, &mut child, "redis-server", || {
            redis_process_id(port, password.as_deref()) == Some(pid)
        });
        // Built before the check's result is looked at, so that a server that did not start
        // is killed on drop too.
        let server = Redis {
            child,
            port,
            password,
        };
        started.map(|()| server)
    }

    /// `redis://127.0.0.1:<port>`, without credentials.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A blocking connection, authenticated when the server wants a password.
    pub fn connection(&self) -> redis::Connection {
        connect(self.port, self.password.as_deref()).expect("connect to the test's redis-server")
    }

    /// How many keys the apps stored.
    pub fn key_count(&self) -> i64 {
        redis::cmd("DBSIZE").query(&mut self.connection()).unwrap()
    }

    /// How many clients are subscribed to `channel`.
    pub fn subscribers(&self, channel: &str) -> i64 {
        let mut numsub = redis::cmd("PUBSUB");
        numsub.arg("NUMSUB").arg(channel);
        let (_, count): (String, i64) = numsub.query(&mut self.connection()).unwrap();
        count
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(port: u16, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
    if let Some(password) = password {
        redis::cmd("AUTH").arg(password).query::<()>(&mut conn)?;
    }
    Ok(conn)
}

/// The process id of the Redis server answering on `port`, if one answers.
fn redis_process_id(port: u16, password: Option<&str>) -> Option<u32> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut connect(port, password).ok()?)
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// A `mosquitto` broker on a loopback port, killed on drop, with its files in a folder of its
/// own (removed on drop). It logs subscriptions to a file, so that a test can wait until a
/// trigger has subscribed (an MQTT broker has no `PUBSUB NUMSUB`).
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    log: PathBuf,
    dir: PathBuf,
}

impl Mosquitto {
    /// On a free port, anyone allowed in.
    pub fn start() -> Mosquitto {
        Mosquitto::start_on(free_port())
    }

    /// On a given port: a test that restarts the broker brings it back where the apps look.
    pub fn start_on(port: u16) -> Mosquitto {
        Mosquitto::try_start(port, "allow_anonymous true").unwrap_or_else(|e| panic!("{e}"))
    }

    /// On `port` with `access` (e.g. `allow_anonymous false` and a `password_file`; a file it
    /// names must be readable by the `mosquitto` user, which a broker started as root drops to).
    ///
    /// Right after a kill the port may still be held by the old broker's closed connections
    /// (mosquitto binds without SO_REUSEADDR): it exits with "Address already in use", and is
    /// started again until the port is free, for 30 s.
    pub fn try_start(port: u16, access: &str) -> Result<Mosquitto, String> {
        Mosquitto::start_retrying(port, access, Duration::from_secs(30))
    }

    fn start_retrying(port: u16, access: &str, retry: Duration) -> Result<Mosquitto, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nano-orders-mosquitto-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let files = || -> std::io::Result<(PathBuf, PathBuf)> {
            std::fs::create_dir_all(&dir)?;
            // The broker's user must be able to append to the log; its stdout would be
            // block-buffered, so a file it flushes per line. `information` brings the
            // "running" line that tells this broker, and not another, holds the port.
            let log = dir.join("mosquitto.log");
            std::fs::File::create(&log)?;
            std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
            let conf = dir.join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!(
                    "listener {port} 127.0.0.1\n{access}\npersistence false\n\
                     set_tcp_nodelay true\nlog_dest file {}\nlog_type subscribe\n\
                     log_type error\nlog_type information\n",
                    log.display()
                ),
            )?;
            Ok((log, conf))
        };
        let (log, conf) = files().map_err(|e| format!("mosquitto's files in {dir:?}: {e}"))?;
        let running = || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .any(|line| line.ends_with(" running"))
        };
        let deadline = Instant::now() + retry;
        loop {
            let _ = std::fs::write(&log, "");
            let mut cmd = Command::new("mosquitto");
            cmd.arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = process::spawn(cmd, process::OnParentDeath::Kill)
                .map_err(|e| format!("cannot run mosquitto (apt-get install mosquitto): {e}"))?;
            let error = match wait_until_serving(port, &mut child, "mosquitto", running) {
                Ok(()) => {
                    return Ok(Mosquitto {
                        child,
                        port,
                        log,
                        dir,
                    })
                }
                Err(e) => e,
            };
            let _ = child.kill();
            let _ = child.wait();
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("{error}: {log}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// What the broker has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the broker as a service manager does (SIGTERM: it closes its clients' connections
    /// and exits), and waits up to 10 s for it; the port is free again afterwards.
    pub fn stop_gracefully(mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many subscriptions to exactly `topic` the broker has logged.
    pub fn subscriptions(&self, topic: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|line| line.split_whitespace().last() == Some(topic))
            .count()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice_and_stay_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        let below = |p: &u16| (10_000..ephemeral_low().max(10_001)).contains(&u32::from(*p));
        assert!(ports.iter().all(below), "{ports:?}");
    }

    /// The failure this crate exists for: a second server on a taken port must not pass for
    /// started because the first one answers there.
    #[test]
    fn a_redis_that_cannot_bind_is_an_error_not_the_other_server() {
        let first = Redis::start();
        let second = Redis::try_start_with(first.port, &["--appendonly", "no"]);
        assert!(
            second.is_err(),
            "a second redis-server on {} started",
            first.port
        );
        assert_eq!(first.key_count(), 0);
    }

    #[test]
    fn a_password_protected_redis_is_reached_with_its_password() {
        let redis = Redis::start_with(free_port(), &["--requirepass", "s3cret"]);
        assert_eq!(redis.subscribers("nobody"), 0);
        let anonymous =
            connect(redis.port, None).and_then(|mut c| redis::cmd("DBSIZE").query::<i64>(&mut c));
        assert!(anonymous.is_err());
    }

    #[test]
    fn a_started_mosquitto_is_the_one_running_and_takes_its_folder_along() {
        let broker = Mosquitto::start();
        assert!(broker.log_text().contains(" running"));
        let second = Mosquitto::start_retrying(broker.port, "allow_anonymous true", Duration::ZERO);
        assert!(
            second.is_err(),
            "a second mosquitto on {} started",
            broker.port
        );
        let dir = broker.dir.clone();
        drop(broker);
        assert!(!dir.exists(), "{dir:?} is left behind");
    }
}
