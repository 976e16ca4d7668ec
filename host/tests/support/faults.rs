//! What the fault tests (`tests/faults.rs`) need beyond the shared fixtures: brokers that can be
//! killed and brought back on the same port (a Redis that keeps what it acknowledged, as a
//! production Redis with AOF does), a TCP proxy that can stall a connection, and a census of the
//! orders a store holds, read straight from Redis or from the SQLite file, so that "lost" and
//! "duplicated" are counted from what is stored and not from what the app says.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::{Mosquitto, Redis};

/// A `redis-server` on `port` that writes every acknowledged write to an append-only file in
/// `dir` before answering (`appendfsync always`): killed with SIGKILL and started again on the same
/// `dir`, it has every order it said it stored. Without that, a Redis restart empties the store,
/// and no app can keep an order its store forgot.
pub fn durable_redis(port: u16, dir: &Path) -> Redis {
    std::fs::create_dir_all(dir).expect("create redis' folder");
    let redis = Redis::start_with(
        port,
        &[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            dir.to_str().expect("a UTF-8 folder for redis"),
        ],
    );
    // Accepting is not loaded: until the append-only file is read back, commands get LOADING.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ping: redis::RedisResult<String> = redis::Client::open(redis.url())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query(&mut c));
        if ping.is_ok() {
            return redis;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server on {port} never answered PING: {ping:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills `redis` as a crash would (SIGKILL) and starts it again on the same port and files.
pub fn crash_and_restart_redis(redis: Redis, dir: &Path, down_for: Duration) -> Redis {
    let port = redis.port;
    drop(redis);
    std::thread::sleep(down_for);
    durable_redis(port, dir)
}

/// Kills `broker` (SIGKILL: what it held in memory is gone) and starts a fresh one on its port.
pub fn crash_and_restart_mosquitto(broker: Mosquitto, down_for: Duration) -> Mosquitto {
    let port = broker.port;
    drop(broker);
    std::thread::sleep(down_for);
    Mosquitto::start_on(port)
}

/// A TCP proxy on a free loopback port in front of `upstream`. While stalled it accepts
/// connections and never answers (a broker that hangs); connections accepted then stay stalled
/// until their client gives up. Once [`StallProxy::forward`] is called, new connections go
/// through to `upstream`.
pub struct StallProxy {
    pub port: u16,
    forwarding: Arc<AtomicBool>,
    pub stalled_connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    pub async fn start(upstream: u16) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let forwarding = Arc::new(AtomicBool::new(false));
        let stalled_connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (fwd, stalled) = (forwarding.clone(), stalled_connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if fwd.load(Ordering::SeqCst) {
                    tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                } else {
                    stalled.fetch_add(1, Ordering::SeqCst);
                    // Read and drop what the client sends, answer nothing, until it hangs up.
                    tokio::spawn(async move {
                        let mut sink = tokio::io::sink();
                        let _ = tokio::io::copy(&mut client, &mut sink).await;
                    });
                }
            }
        });
        StallProxy {
            port,
            forwarding,
            stalled_connections,
            task,
        }
    }

    pub fn forward(&self) {
        self.forwarding.store(true, Ordering::SeqCst);
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP proxy on a free loopback port in front of `upstream` that forwards everything, until
/// [`PausingProxy::hold_next`] arms it: the first chunk a client then sends that contains the
/// pattern (a key of the command to hold, such as `order:` for a save) is kept back, with
/// everything after it on that connection, until [`PausingProxy::resume`]. A store connection
/// that stalls in the middle of a request, and then carries on as if nothing happened: what a
/// paused VM, a GC pause or a congested link look like to the other side.
pub struct PausingProxy {
    pub port: u16,
    pattern: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    holding: tokio::sync::watch::Receiver<bool>,
    resumed: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PausingProxy {
    pub async fn start(upstream: u16) -> PausingProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let pattern: Arc<std::sync::Mutex<Option<Vec<u8>>>> = Arc::default();
        let (holding_tx, holding) = tokio::sync::watch::channel(false);
        let holding_tx = Arc::new(holding_tx);
        let (resumed, resumed_rx) = tokio::sync::watch::channel(false);
        let armed = pattern.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (armed, holding_tx, mut resumed) =
                    (armed.clone(), holding_tx.clone(), resumed_rx.clone());
                tokio::spawn(async move {
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let answers = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from_client.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        // Taken by the first chunk that matches: one request is held, once.
                        let hold = {
                            let mut armed = armed.lock().unwrap();
                            let hit = armed
                                .as_ref()
                                .is_some_and(|p| chunk.windows(p.len()).any(|w| w == p.as_slice()));
                            if hit {
                                armed.take();
                            }
                            hit
                        };
                        if hold {
                            holding_tx.send_replace(true);
                            let _ = resumed.wait_for(|r| *r).await;
                        }
                        if to_server.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown().await;
                    let _ = answers.await;
                });
            }
        });
        PausingProxy {
            port,
            pattern,
            holding,
            resumed,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Holds the next client chunk that contains `pattern`.
    pub fn hold_next(&self, pattern: &[u8]) {
        *self.pattern.lock().unwrap() = Some(pattern.to_vec());
    }

    /// Waits until a chunk is held; false if none is within `limit`.
    pub async fn held_within(&self, limit: Duration) -> bool {
        let mut holding = self.holding.clone();
        let held = tokio::time::timeout(limit, holding.wait_for(|h| *h)).await;
        held.is_ok_and(|seen| seen.is_ok())
    }

    /// Sends what was held, and everything after it.
    pub fn resume(&self) {
        self.resumed.send_replace(true);
    }
}

impl Drop for PausingProxy {
    fn drop(&mut self) {
        self.resumed.send_replace(true);
        self.task.abort();
    }
}

/// One stored order record, as `components/adapters/kv-store` writes it under `order:<id>`.
#[derive(Clone, Debug)]
pub struct StoredOrder {
    pub id: String,
    pub details: String,
    pub status: String,
}

/// The orders a store holds.
#[derive(Clone, Debug, Default)]
pub struct Census {
    pub orders: Vec<StoredOrder>,
}

impl Census {
    fn from_values(values: impl IntoIterator<Item = (String, Vec<u8>)>) -> Census {
        let orders = values
            .into_iter()
            .filter_map(|(key, value)| {
                let id = key.rsplit("order:").next()?.to_string();
                if id.len() != 36 {
                    return None;
                }
                let json: serde_json::Value = serde_json::from_slice(&value)
                    .unwrap_or_else(|e| panic!("{key} holds no JSON ({e})"));
                Some(StoredOrder {
                    id,
                    details: json["details"].as_str().unwrap_or_default().to_string(),
                    status: json["status"].as_str().unwrap_or_default().to_string(),
                })
            })
            .collect();
        Census { orders }
    }

    /// Every `order:<id>` in a Redis (the networked shapes' store, or the composed app's with
    /// `runtime-config.redis.toml`).
    pub fn of_redis(redis: &Redis) -> Census {
        let mut conn = redis.connection();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*order:*").query(&mut conn).unwrap();
        let mut values = Vec::new();
        for chunk in keys.chunks(500) {
            let got: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(chunk).query(&mut conn).unwrap();
            values.extend(
                chunk
                    .iter()
                    .cloned()
                    .zip(got)
                    .filter_map(|(k, v)| Some((k, v?))),
            );
        }
        Census::from_values(values)
    }

    /// Every `order:<id>` of the `default` store in a Spin-layout SQLite file
    /// (`.spin/sqlite_key_value.db`, the same table on both hosts).
    pub fn of_sqlite(db: &Path) -> Census {
        let conn = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let mut stmt = conn
            .prepare("SELECT key, value FROM spin_key_value WHERE store = 'default' AND key LIKE 'order:%'")
            .unwrap();
        let rows: Vec<(String, Vec<u8>)> = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        Census::from_values(rows)
    }

    /// Only the orders whose details start with `tag` (a case's own orders, in a store that
    /// outlives it).
    pub fn tagged(&self, tag: &str) -> Census {
        Census {
            orders: self
                .orders
                .iter()
                .filter(|o| o.details.starts_with(tag))
                .cloned()
                .collect(),
        }
    }

    pub fn with_status(&self, status: &str) -> usize {
        self.orders.iter().filter(|o| o.status == status).count()
    }

    /// Records beyond the first with the same details: each order of a case has its own details,
    /// so a second record for them is a second order for one request.
    pub fn duplicated(&self) -> usize {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for o in &self.orders {
            *seen.entry(o.details.as_str()).or_default() += 1;
        }
        seen.values().map(|n| n - 1).sum()
    }

    pub fn by_id(&self) -> HashMap<&str, &StoredOrder> {
        self.orders.iter().map(|o| (o.id.as_str(), o)).collect()
    }
}

/// Where the default SQLite store of an app run in `dir` lives (both hosts, `--state-dir` /
/// `StateDir::Path` set to `dir/.spin`, or nanohost's binary beside the manifest).
pub fn sqlite_db(dir: &Path) -> PathBuf {
    dir.join(".spin/sqlite_key_value.db")
}

/// Every key of every store in a Spin-layout SQLite file; 0 before the host has created it.
pub fn key_count_in_sqlite(db: &Path) -> u64 {
    if !db.exists() {
        return 0;
    }
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    match conn.query_row("SELECT COUNT(*) FROM spin_key_value", [], |row| row.get(0)) {
        Ok(count) => count,
        // The file is there, its table not yet.
        Err(e) if e.to_string().contains("no such table") => 0,
        Err(e) => panic!("count the keys in {}: {e}", db.display()),
    }
}

/// The soft limit on open files of this process (`ulimit -n`).
pub fn open_files_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}
