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

/// A real Spin serving `manifest` as a peer: started, driven with `POST /order`, stopped. A Spin
/// that is missing, or does not start, is a skipped run with the reason.
fn drive_spin(
    p: &Place,
    host: &str,
    bin: &Result<PathBuf, String>,
    workload: &str,
    manifest: &Path,
    runtime_config: &Path,
) -> PeerRun {
    let bin = match bin {
        Ok(bin) => bin,
        Err(why) => return skipped(host, workload, why.clone()),
    };
    let port = procs::free_port();
    let tag = host.replace(' ', "");
    let state = p.out.join(format!("{tag}-state"));
    let cmd = spin_up(bin, manifest, port, runtime_config, &state);
    let (name, log) = (format!("{host} up"), p.out.join(format!("{tag}.log")));
    p.serve(host, workload, cmd, (&name, port, &log), Work::Place)
}

/// Runs `measure` against a server that is already up.
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

/// An in-memory `default` store: nanohost's memory store, or Spin's in-memory SQLite (`type =
/// "spin"` with no `path`): the same runtime config, in a file of each host's own.
pub fn memory_config(out: &Path, host: &str) -> Result<PathBuf> {
    let path = out.join(format!("runtime-config.{host}-memory.toml"));
    std::fs::write(&path, "[key_value_store.default]\ntype = \"spin\"\n")?;
    Ok(path)
}

/// The store a user gets by default on either host (`type = "spin"`, a SQLite file; `spin up`
/// puts it at `.spin/sqlite_key_value.db`), written out so that each host gets a fresh file of
/// its own in the results folder, on the same disk.
fn sqlite_file_config(out: &Path, host: &str) -> Result<PathBuf> {
    let dir = out.join(format!("{host}-default-store"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let path = out.join(format!("runtime-config.{host}-sqlite-file.toml"));
    std::fs::write(
        &path,
        format!(
            "[key_value_store.default]\ntype = \"spin\"\npath = {:?}\n",
            dir.join("sqlite_key_value.db").display().to_string()
        ),
    )?;
    Ok(path)
}

/// Where a peer run starts its servers and writes their logs.
pub struct Place<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub root: &'a Path,
    pub out: &'a Path,
    pub settings: &'a PeerSettings,
}

impl Place<'_> {
    /// nanohost serving `manifest` (relative to the workspace) in a harness process, the code
    /// `nanohost up` runs: started, driven with `work`, stopped.
    fn nanohost(
        &self,
        workload: &str,
        manifest: &Path,
        config: Option<&Path>,
        log: &str,
        work: Work,
    ) -> Result<PeerRun> {
        let port = procs::free_port();
        let app = [(manifest.to_path_buf(), Some(port))];
        let h = procs::Harness::start(&app, config, &[], &self.out.join(log), self.root)?;
        let mut command = format!("nanohost up --manifest {}", manifest.display());
        if let Some(c) = config {
            let name = c.file_name().unwrap_or_default().to_string_lossy();
            command.push_str(&format!(" --runtime-config {name}"));
        }
        let run = drive(
            self.rt,
            "nanohost",
            workload,
            command,
            local(port),
            work,
            self.settings,
        );
        h.stop();
        Ok(run)
    }

    /// `wasmtime serve` on `wasm`: started, driven with `work`, stopped; skipped with the reason
    /// when it is missing or does not start.
    fn wasmtime(
        &self,
        bin: &Result<PathBuf, String>,
        workload: &str,
        wasm: &Path,
        work: Work,
    ) -> PeerRun {
        let host = "wasmtime serve";
        let bin = match bin {
            Ok(bin) => bin,
            Err(why) => return skipped(host, workload, why.clone()),
        };
        let port = procs::free_port();
        let cmd = wasmtime_serve(bin, wasm, port);
        let log = self.out.join("wasmtime-serve.log");
        self.serve(host, workload, cmd, (host, port, &log), work)
    }

    /// `cmd` as a server: started (`server`: what to call it, its port, its log), driven with
    /// `work`, stopped; skipped with the reason when it does not start.
    fn serve(
        &self,
        host: &str,
        workload: &str,
        cmd: Command,
        (name, port, log): (&str, u16, &Path),
        work: Work,
    ) -> PeerRun {
        let line = describe(&cmd, self.root);
        match procs::start_server(cmd, port, name, log) {
            Ok(_server) => drive(
                self.rt,
                host,
                workload,
                line,
                local(port),
                work,
                self.settings,
            ),
            Err(e) => skipped(host, workload, format!("did not start: {e:#}")),
        }
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// nanohost beside `wasmtime serve` and real Spin, one server at a time.
pub fn run(
    p: &Place,
    tools: &Tools,
    redis_config: &Path,
    order_app: &Path,
) -> Result<Vec<PeerRun>> {
    let (root, out) = (p.root, p.out);
    let mut runs = Vec::new();

    let trivial = "trivial component (spin-sdk 5.2, GET /)";
    let hello = root.join("target/wasm32-wasip2/release/bench_hello.wasm");
    if hello.exists() {
        let manifest = Path::new("bench/fixtures/hello/spin.toml");
        runs.push(p.nanohost(trivial, manifest, None, "host-peer-hello.log", Work::Hello)?);
        runs.push(p.wasmtime(&tools.wasmtime, trivial, &hello, Work::Hello));
    } else {
        let why = format!(
            "{} is not built (cargo xtask bench builds it)",
            hello.display()
        );
        runs.push(skipped("nanohost", trivial, why.clone()));
        runs.push(skipped("wasmtime serve", trivial, why));
    }

    let stores = [
        (
            "order app (POST /order), in-memory store",
            memory_config(out, "nanohost")?,
            memory_config(out, "spin")?,
        ),
        (
            "order app (POST /order), default store (SQLite file)",
            sqlite_file_config(out, "nanohost")?,
            sqlite_file_config(out, "spin")?,
        ),
        (
            "order app (POST /order), store in Redis",
            redis_config.to_path_buf(),
            redis_config.to_path_buf(),
        ),
    ];
    for (workload, nano_config, spin_config) in stores {
        let log = "host-peer-order-app.log";
        runs.push(p.nanohost(workload, order_app, Some(&nano_config), log, Work::Place)?);
        let manifest = root.join(order_app);
        runs.push(drive_spin(
            p,
            "spin",
            &tools.spin,
            workload,
            &manifest,
            &spin_config,
        ));
    }

    // The WASIp3 build, instances reused, on nanohost and on Spin 4.1 (the one Spin that serves
    // it), each with its in-memory store.
    let workload = "order app, WASIp3 build (POST /order), in-memory store";
    let p3 = Path::new("apps/order-app-p3/spin.toml");
    let config = memory_config(out, "nanohost")?;
    runs.push(p.nanohost(
        workload,
        p3,
        Some(&config),
        "host-peer-order-app-p3.log",
        Work::Place,
    )?);
    let config = memory_config(out, "spin")?;
    runs.push(drive_spin(
        p,
        "spin 4.1",
        &tools.spin41,
        workload,
        &root.join(p3),
        &config,
    ));
    Ok(runs)
}
