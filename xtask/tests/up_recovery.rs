//! `cargo xtask up --shape mqtt` recovers from a Mosquitto restart under load (issue 18, item 2):
//! the README's command, run as a child process on ports of its own, with its own Redis and
//! Mosquitto. Every order answered 202 is fulfilled within a minute of the broker's return, none
//! twice, and `up` leaves no host running once it is stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use test_brokers::process::{self, OnParentDeath};
use test_brokers::{free_port, Mosquitto, Redis};

const ORDERS: usize = 2_000;
const CLIENTS: usize = 32;
/// Replies seen before the broker is stopped: the restart falls mid-load.
const STOP_AFTER: usize = 600;
const DOWN_FOR: Duration = Duration::from_secs(2);
/// How long after the broker's return every order must be fulfilled.
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);
const TAG: &str = "xtask-up-mosquitto-restart";
const TOPIC: &str = "orders/placed";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The store's orders of this test: details → statuses (one per stored order).
fn census(redis: &Redis) -> HashMap<String, Vec<String>> {
    let mut conn = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*order:*").query(&mut conn).unwrap();
    let mut orders: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in keys.chunks(500) {
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(chunk).query(&mut conn).unwrap();
        for (key, value) in chunk.iter().zip(values) {
            let id = key.rsplit("order:").next().unwrap_or_default();
            let Some(value) = value.filter(|_| id.len() == 36) else {
                continue;
            };
            let json: serde_json::Value = serde_json::from_slice(&value)
                .unwrap_or_else(|e| panic!("{key} holds no JSON ({e})"));
            let details = json["details"].as_str().unwrap_or_default();
            if details.starts_with(TAG) {
                orders
                    .entry(details.to_string())
                    .or_default()
                    .push(json["status"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    orders
}

#[derive(Debug, Default)]
struct Counts {
    stored: usize,
    fulfilled: usize,
    accepted: usize,
    other: usize,
    duplicated: usize,
}

impl Counts {
    fn of(orders: &HashMap<String, Vec<String>>) -> Counts {
        let mut c = Counts {
            duplicated: orders.values().filter(|s| s.len() > 1).count(),
            ..Counts::default()
        };
        for status in orders.values().flatten() {
            c.stored += 1;
            match status.as_str() {
                "fulfilled" => c.fulfilled += 1,
                "accepted" => c.accepted += 1,
                _ => c.other += 1,
            }
        }
        c
    }
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn mqtt_shape_recovers_from_a_mosquitto_restart_under_load() {
    let redis = Redis::start();
    let broker = Mosquitto::start();
    let broker_port = broker.port;
    let dir = std::env::temp_dir().join(format!("xtask-up-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("runtime-config.toml");
    std::fs::write(
        &config,
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            redis.url()
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.join("xtask-up.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.current_dir(workspace_root())
        .args(["up", "--shape", "mqtt", "--listen", &listen])
        .arg("--runtime-config")
        .arg(&config)
        .env("SPIN_VARIABLE_MQTT_ADDRESS", broker.url())
        .env("SPIN_VARIABLE_REDIS_ADDRESS", redis.url())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut up = process::spawn(cmd, OnParentDeath::Terminate).expect("run xtask up");

    // `up` builds first (nothing to do after `cargo xtask build`), then starts both hosts.
    let deadline = Instant::now() + Duration::from_secs(900);
    while !(std::net::TcpStream::connect(&listen).is_ok() && broker.subscriptions(TOPIC) >= 1) {
        if let Ok(Some(status)) = up.try_wait() {
            panic!("xtask up exited with {status}:\n{}", tail(&log));
        }
        assert!(
            Instant::now() < deadline,
            "xtask up did not serve:\n{}",
            tail(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let hosts = children_of(up.id());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let base = format!("http://{listen}");
    let load = (0..CLIENTS)
        .map(|c| {
            let (client, base, answered) = (client.clone(), base.clone(), answered.clone());
            rt.spawn(async move {
                let mut statuses = Vec::new();
                for n in (c..ORDERS).step_by(CLIENTS) {
                    let reply = client
                        .post(format!("{base}/order"))
                        .header("content-type", "application/json")
                        .body(serde_json::json!({ "details": format!("{TAG} {n}") }).to_string())
                        .send()
                        .await;
                    statuses.push(reply.map(|r| r.status().as_u16()).unwrap_or(0));
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                statuses
            })
        })
        .collect::<Vec<_>>();
    while answered.load(Ordering::Relaxed) < STOP_AFTER {
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.stop_gracefully();
    std::thread::sleep(DOWN_FOR);
    let broker = Mosquitto::start_on(broker_port);
    let returned = Instant::now();
    let statuses: Vec<u16> = rt.block_on(async {
        let mut all = Vec::new();
        for task in load {
            all.extend(task.await.unwrap());
        }
        all
    });
    let mut replies: HashMap<u16, usize> = HashMap::new();
    for s in &statuses {
        *replies.entry(*s).or_default() += 1;
    }

    let mut counts = Counts::of(&census(&redis));
    while counts.accepted > 0 && returned.elapsed() < CONVERGE_WITHIN {
        std::thread::sleep(Duration::from_secs(1));
        counts = Counts::of(&census(&redis));
    }
    let converged_after = returned.elapsed();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let restarts = log_text
        .lines()
        .filter(|l| l.contains("xtask: starting the fulfilment app again"))
        .count();
    let failed_sweeps = log_text
        .lines()
        .filter(|l| l.starts_with("xtask: sweep"))
        .count();

    // `up` stopped as Ctrl-C or a service manager stops it: its hosts go with it.
    let hosts_now = children_of(up.id());
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(up.id() as libc::pid_t, libc::SIGTERM);
    }
    let stopped = (0..300).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        matches!(up.try_wait(), Ok(Some(_)))
    });
    let left: Vec<u32> = hosts
        .iter()
        .chain(&hosts_now)
        .copied()
        .filter(|pid| alive(*pid))
        .collect();
    process::stop_group(&mut up, Duration::ZERO);
    drop(broker);

    eprintln!(
        "xtask up --shape mqtt, {ORDERS} orders at {CLIENTS} clients, Mosquitto stopped (SIGTERM) \
         after {STOP_AFTER} replies and restarted {} s later: replies by status {replies:?} (0 = \
         no answer); stored {}, fulfilled {}, accepted {}, other {}, duplicated {}; {} s after \
         the broker's return; fulfilment app restarted {restarts} time(s); sweeps not answered \
         200: {failed_sweeps}; hosts left after `up` stopped: {}",
        DOWN_FOR.as_secs(),
        counts.stored,
        counts.fulfilled,
        counts.accepted,
        counts.other,
        counts.duplicated,
        converged_after.as_secs(),
        left.len()
    );
    assert_eq!(
        replies.get(&202).copied().unwrap_or(0),
        ORDERS,
        "every order answered 202 (a failed announcement still is): {replies:?}"
    );
    assert_eq!(counts.duplicated, 0, "orders stored twice");
    assert_eq!(counts.stored, ORDERS, "orders answered 202 but not stored");
    assert_eq!(
        (counts.accepted, counts.fulfilled),
        (0, ORDERS),
        "not every order fulfilled within {CONVERGE_WITHIN:?} of the broker's return:\n{}",
        tail(&log)
    );
    assert!(stopped, "xtask up did not stop on SIGTERM");
    assert_eq!(left, Vec::<u32>::new(), "hosts left running by xtask up");
    let _ = std::fs::remove_dir_all(&dir);
}
