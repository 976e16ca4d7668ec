//! Hosts side by side: the same component, the same client, the same run, on nanohost and on a
//! peer host run as its own process.
//! - the trivial component (`bench/fixtures/hello`, spin-sdk 5.2): nanohost vs `wasmtime serve`;
//! - the composed order app (`spin.toml`): nanohost vs real Spin, once with each host's
//!   in-memory store (nanohost's memory store; Spin's `type = "spin"` without `path`, an in-memory
//!   SQLite database), once with each host's default store (a SQLite file of its own, the store
//!   `spin up` gives an app without a runtime config) and once with both on the same Redis.
//!
//! Each server gets a warm-up, a latency phase on one keep-alive connection, and a closed-loop
//! throughput phase; each phase stops at its request count or its time limit, whichever comes
//! first, so a peer that stalls (Spin's 44 ms keep-alive stall) cannot stretch the run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::client::Conn;
use crate::load::{histogram, summarize, Summary};
use crate::procs;

/// What a server is asked, request after request.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Work {
    /// `GET /` on the trivial component.
    Hello,
    /// `POST /order` on the order app.
    Place,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Phase {
    pub connections: u64,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_s: f64,
    pub latency: Summary,
    /// The phase hit its time limit before its request count.
    pub time_limited: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerRun {
    /// `nanohost`, `wasmtime serve`, `spin`.
    pub host: String,
    /// What it served and with which store, e.g. `order app, in-memory store`.
    pub workload: String,
    /// One keep-alive connection, one request at a time.
    pub one_connection: Option<Phase>,
    /// Closed loop over several connections.
    pub loaded: Option<Phase>,
    /// Why it did not run, when it did not.
    pub skipped: Option<String>,
    /// How the server was started.
    pub command: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerSettings {
    pub requests: u64,
    pub max_seconds: f64,
    pub connections: u64,
    pub warm_up: u64,
}

impl PeerSettings {
    pub fn new(mode: &str) -> PeerSettings {
        match mode {
            "smoke" => PeerSettings {
                requests: 20,
                max_seconds: 2.0,
                connections: 2,
                warm_up: 10,
            },
            "quick" => PeerSettings {
                requests: 3000,
                max_seconds: 3.0,
                connections: 16,
                warm_up: 300,
            },
            _ => PeerSettings {
                requests: 20_000,
                max_seconds: 6.0,
                connections: 16,
                warm_up: 1000,
            },
        }
    }
}

async fn one(conn: &mut Conn, work: Work, i: u64) -> Result<()> {
    match work {
        Work::Hello => {
            let status = conn.get("/").await?;
            anyhow::ensure!(status == 200, "GET / answered {status}");
        }
        Work::Place => {
            conn.place(&format!("peer {i}")).await?;
        }
    }
    Ok(())
}

/// `requests` requests over `connections` connections, closed loop, or until `max` elapsed.
pub async fn closed_loop(
    addr: SocketAddr,
    work: Work,
    connections: u64,
    requests: u64,
    max: Duration,
) -> Result<Phase> {
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + max;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut h = histogram();
            let (mut done, mut errors) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests || Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                match one(&mut conn, work, i).await {
                    Ok(()) => {
                        let _ = h.record((t.elapsed().as_nanos() as u64).max(1));
                        done += 1;
                    }
                    Err(_) => {
                        errors += 1;
                        conn = Conn::open(addr).await?;
                    }
                }
            }
            anyhow::Ok((h, done, errors))
        }));
    }
    let mut h = histogram();
    let (mut done, mut errors) = (0, 0);
    for t in tasks {
        let (th, d, e) = t.await??;
        h.add(&th)?;
        done += d;
        errors += e;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Phase {
        connections,
        requests: done,
        errors,
        seconds,
        per_s: done as f64 / seconds,
        latency: summarize(&h),
        time_limited: done + errors < requests,
    })
}

/// Warm-up, then one connection, then `connections` connections.
pub async fn measure(addr: SocketAddr, work: Work, s: &PeerSettings) -> Result<(Phase, Phase)> {
    let max = Duration::from_secs_f64(s.max_seconds);
    let warm = closed_loop(addr, work, s.connections, s.warm_up, max / 2).await?;
    anyhow::ensure!(
        warm.requests > 0,
        "no request succeeded while warming up ({} errors)",
        warm.errors
    );
    let one = closed_loop(addr, work, 1, s.requests / 4, max).await?;
    let loaded = closed_loop(addr, work, s.connections, s.requests, max).await?;
    Ok((one, loaded))
}

/// Where the peers' binaries are, or why they are not.
pub struct Tools {
    pub wasmtime: Result<PathBuf, String>,
    pub spin: Result<PathBuf, String>,
    /// Spin 4.0 (the `ways` phase starts the order app on every Spin).
    pub spin4: Result<PathBuf, String>,
    /// Spin 4.1 (WASI 0.3.0 final), the one Spin that serves the WASIp3 build.
    pub spin41: Result<PathBuf, String>,
}

impl Tools {
    pub fn find(root: &Path) -> Tools {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let wasmtime = procs::find_tool(
            "WASMTIME_BIN",
            "wasmtime",
            &[home.join(".cargo/bin/wasmtime")],
        )
        .ok_or_else(|| {
            "no wasmtime binary (WASMTIME_BIN, PATH, ~/.cargo/bin): `cargo xtask bench` installs \
             wasmtime-cli 48.0.8 for a full run; run `cargo install --locked wasmtime-cli@48.0.8`"
                .to_string()
        });
        let spin = procs::find_tool(
            "SPIN_BIN",
            "spin",
            &[root.join("../shared/tools/spin/spin")],
        )
        .ok_or_else(|| "no Spin binary (SPIN_BIN, PATH, ../shared/tools/spin/spin)".to_string());
        let spin4 = procs::find_tool(
            "SPIN4_BIN",
            "spin4",
            &[root.join("../shared/tools/spin4/spin")],
        )
        .ok_or_else(|| {
            "no Spin 4.0 binary (SPIN4_BIN, PATH as spin4, ../shared/tools/spin4/spin)".to_string()
        });
        let spin41 = procs::find_tool(
            "SPIN41_BIN",
            "spin41",
            &[root.join("../shared/tools/spin41/spin")],
        )
        .ok_or_else(|| {
            "no Spin 4.1 binary (SPIN41_BIN, PATH as spin41, ../shared/tools/spin41/spin)"
                .to_string()
        });
        Tools {
            wasmtime,
            spin,
            spin4,
            spin41,
        }
    }
}

/// `tool --version`'s first line.
pub fn version_of(tool: &Result<PathBuf, String>) -> String {
    match tool {
        Ok(p) => crate::report::first_line(&p.display().to_string(), &["--version"]),
        Err(_) => "not found".into(),
    }
}

pub fn wasmtime_serve(bin: &Path, wasm: &Path, port: u16) -> Command {
    let mut cmd = Command::new(bin);
    // `-Scli`: the component imports wasi:cli (Rust's std does), which `serve` leaves out
    // unless asked.
    cmd.args(["serve", "-Scli", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(wasm);
    cmd
}

pub fn spin_up(
    bin: &Path,
    manifest: &Path,
    port: u16,
    runtime_config: &Path,
    state: &Path,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("up")
        .arg("-f")
        .arg(manifest)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--runtime-config-file")
        .arg(runtime_config)
        .arg("--state-dir")
        .arg(state);
    cmd
}

/// A command line for the report, paths relative to the workspace where they can be.
pub fn describe(cmd: &Command, root: &Path) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let s = a.to_string_lossy().to_string();
            let rel = Path::new(&s)
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or(s);
            rel
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A run that could not happen, with its reason.
pub fn skipped(host: &str, workload: &str, why: impl Into<String>) -> PeerRun {
    PeerRun {
        host: host.into(),
        workload: workload.into(),
        one_connection: None,
        loaded: None,
        skipped: Some(why.into()),
        command: String::new(),
    }
}

/// Runs `measure` against a server that is already up.
/// A real Spin serving `manifest` as a peer: started, driven with `work`, stopped. A Spin that is
/// missing, or does not start, is a skipped run with the reason.
#[allow(clippy::too_many_arguments)]
pub fn drive_spin(
    rt: &tokio::runtime::Runtime,
    host: &str,
    bin: &Result<PathBuf, String>,
    workload: &str,
    manifest: &Path,
    runtime_config: &Path,
    out: &Path,
    root: &Path,
    work: Work,
    s: &PeerSettings,
) -> PeerRun {
    let bin = match bin {
        Ok(bin) => bin,
        Err(why) => return skipped(host, workload, why.clone()),
    };
    let port = crate::procs::free_port();
    let tag = host.replace(' ', "");
    let cmd = spin_up(
        bin,
        manifest,
        port,
        runtime_config,
        &out.join(format!("{tag}-state")),
    );
    let line = describe(&cmd, root);
    let log = out.join(format!("{tag}.log"));
    match crate::procs::start_server(cmd, port, &format!("{host} up"), &log) {
        Ok(_server) => {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            drive(rt, host, workload, line, addr, work, s)
        }
        Err(e) => skipped(host, workload, format!("did not start: {e:#}")),
    }
}

pub fn drive(
    rt: &tokio::runtime::Runtime,
    host: &str,
    workload: &str,
    command: String,
    addr: SocketAddr,
    work: Work,
    s: &PeerSettings,
) -> PeerRun {
    match rt
        .block_on(measure(addr, work, s))
        .with_context(|| format!("{host}, {workload}"))
    {
        Ok((one, loaded)) => PeerRun {
            host: host.into(),
            workload: workload.into(),
            one_connection: Some(one),
            loaded: Some(loaded),
            skipped: None,
            command,
        },
        Err(e) => PeerRun {
            command,
            ..skipped(host, workload, format!("failed: {e:#}"))
        },
    }
}
