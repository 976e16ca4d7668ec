//! `report.md`, `results.json` and `latency.svg`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use crate::chains::Chains;
use crate::load::Summary;
use crate::micro::{Direct, Micro};
use crate::peers::{version_of, PeerRun, Tools};
use crate::{Phase, Settings, Shape, ShapeResult};

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// `/proc/loadavg` when the run started: other work on the machine skews every figure.
    pub loadavg_at_start: String,
}

#[derive(Debug, Serialize)]
pub struct Versions {
    /// Crate versions as `Cargo.lock` resolved them.
    pub wasmtime: String,
    pub spin_sdk: String,
    pub wac_graph: String,
    pub hyper: String,
    pub tokio: String,
    pub rumqttc: String,
    pub rustc: String,
    pub mosquitto: String,
    pub redis: String,
    /// `--version` of the peers' binaries.
    pub spin_cli: String,
    pub spin41_cli: String,
    pub wasmtime_cli: String,
    /// The gateway this run's order app was built from: the last commit that touched
    /// `components/adapters/http-gateway`, and whether the working tree differs from it.
    pub gateway: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub title_stamp: String,
    pub command_line: String,
    pub settings: Settings,
    pub profile: String,
    pub machine: Machine,
    pub versions: Versions,
    pub peers: Vec<PeerRun>,
    /// Real Spin's figures from a run of the gateway before its keep-alive fix
    /// (`bench/baselines/spin-before-keepalive-fix.json`), shown beside this run's.
    pub spin_before: Option<serde_json::Value>,
    pub shapes: Vec<ShapeResult>,
    /// The composed hop with `concurrency_support` off (kept, as in nanohost) and on.
    pub micro: Vec<Micro>,
    /// The composed hop with a 1 KB order (Dapr's payload), `concurrency_support` off.
    pub micro_1k: Vec<Micro>,
    pub direct: Option<Direct>,
    pub chains: Option<Chains>,
    /// The composed app against the same rules in one component (issue 13, item 2).
    pub tax: Option<crate::monolith::Tax>,
    /// Wac ahead of time against Spin's dependencies (issue 21, item 2).
    pub ways: Option<crate::ways::Ways>,
    pub seconds: f64,
}

pub fn first_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "not found".into())
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    Machine {
        cpu,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_gib,
        kernel: first_line("uname", &["-sr"]),
        loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// The version `Cargo.lock` resolved for a package (several, comma-separated, if it holds several).
pub fn locked_version(lock: &str, package: &str) -> String {
    let Ok(doc) = lock.parse::<toml::Table>() else {
        return "unknown (Cargo.lock unreadable)".into();
    };
    let found: Vec<String> = doc
        .get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter(|p| p.get("name").and_then(|n| n.as_str()) == Some(package))
        .filter_map(|p| {
            p.get("version")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .collect();
    if found.is_empty() {
        "not in Cargo.lock".into()
    } else {
        found.join(", ")
    }
}

fn git(root: &Path, args: &[&str]) -> String {
    std::process::Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn versions(root: &Path, tools: &Tools) -> Versions {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let v = |p: &str| locked_version(&lock, p);
    let commit = git(
        root,
        &[
            "log",
            "-1",
            "--format=%h (%cs) %s",
            "--",
            "components/adapters/http-gateway",
        ],
    );
    let dirty = !git(
        root,
        &[
            "status",
            "--porcelain",
            "--",
            "components/adapters/http-gateway",
        ],
    )
    .is_empty();
    Versions {
        wasmtime: v("wasmtime"),
        spin_sdk: v("spin-sdk"),
        wac_graph: v("wac-graph"),
        hyper: v("hyper"),
        tokio: v("tokio"),
        rumqttc: v("rumqttc"),
        rustc: first_line("rustc", &["--version"]),
        mosquitto: first_line("mosquitto", &["-h"]),
        redis: first_line("redis-server", &["--version"]),
        spin_cli: version_of(&tools.spin),
        spin41_cli: version_of(&tools.spin41),
        wasmtime_cli: version_of(&tools.wasmtime),
        gateway: if commit.is_empty() {
            "unknown (no git)".into()
        } else if dirty {
            format!("{commit}, with uncommitted changes")
        } else {
            commit
        },
    }
}

/// Where the figures of real Spin before the gateway's keep-alive fix are kept.
pub const SPIN_BEFORE: &str = "bench/baselines/spin-before-keepalive-fix.json";

pub fn spin_before(root: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(root.join(SPIN_BEFORE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// `YYYYMMDDTHHMMSSZ`, from the system clock, without a date crate.
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub(crate) fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0} µs")
    } else if v >= 1.0 {
        format!("{v:.1} µs")
    } else {
        format!("{:.0} ns", v * 1000.0)
    }
}

fn row(what: &str, s: &Summary) -> String {
    format!(
        "| {what} | {} | {} | {} | {} | {} |\n",
        s.count,
        us(s.p50_us),
        us(s.p90_us),
        us(s.p99_us),
        us(s.max_us)
    )
}

impl Report {
    /// The hop with nanohost's setting; zeros when the micro-benchmark did not run.
    fn kept_micro(&self) -> Micro {
        self.micro
            .iter()
            .find(|m| !m.concurrency_support)
            .or(self.micro.first())
            .cloned()
            .unwrap_or_default()
    }

    fn shape(&self, s: Shape) -> Option<&ShapeResult> {
        self.shapes.iter().find(|r| r.shape == s)
    }

    /// The hop's median in µs for a shape: micro-benchmark for composed ones, harness
    /// (publish → handler called) for networked ones.
    fn hop_us(&self, r: &ShapeResult) -> f64 {
        match &r.hop {
            Some(h) => h.to_handler.p50_us,
            None => self.kept_micro().hop_ns / 1000.0,
        }
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        self.chart(&dir.join("latency.svg"))?;
        self.open_loop_chart(&dir.join("open-loop.svg"))?;
        Ok(())
    }

    fn markdown(&self) -> String {
        let s = &self.settings;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# nano-orders benchmark: composed vs networked ({})\n",
            self.title_stamp
        );
        let _ = writeln!(
            md,
            "Command: `{}` ({} mode, {} build, {:.0} s).\n",
            self.command_line, s.mode, self.profile, self.seconds
        );
        let _ = writeln!(
            md,
            "Machine: {} ({} cores, {:.0} GiB, {}; load average at start {}). Versions: wasmtime {}, spin-sdk {}, {}, {}, {}.\n",
            self.machine.cpu, self.machine.cores, self.machine.memory_gib, self.machine.kernel, self.machine.loadavg_at_start,
            self.versions.wasmtime, self.versions.spin_sdk, self.versions.rustc, self.versions.mosquitto, self.versions.redis
        );
        if s.host_env.is_empty() {
            let reset = if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
                "pooled slots reset in place with PAGEMAP_SCAN and kept resident (this kernel has it)"
            } else {
                "pooled slots reset with madvise (this kernel has no PAGEMAP_SCAN)"
            };
            let _ = writeln!(md, "Host settings: nanohost's defaults (pooling allocator, {reset}, `concurrency_support(false)`, epoch interruption every 10 ms).\n");
        } else {
            let vars: Vec<String> = s
                .host_env
                .iter()
                .map(|(k, v)| format!("`{k}={v}`"))
                .collect();
            let _ = writeln!(
                md,
                "Host settings: nanohost's defaults plus {}.\n",
                vars.join(", ")
            );
        }
        if s.mode != "full" {
            let _ = writeln!(
                md,
                "> A {} run: fewer samples than the full run; the tails (p99, max) are rough.\n",
                s.mode
            );
        }

        // Summary against the project's targets (README.md, "Benchmark").
        let _ = writeln!(md, "## Against the targets\n");
        let _ = writeln!(md, "| target | measured | verdict |\n| --- | --- | --- |");
        let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
        let micro = self.kept_micro();
        // The composed hop the networked ones are compared with: the paired micro-benchmark's
        // median when it is clearly above zero, else the bare component boundary (chain N = 1
        // against N = 0, 20 B), since a hop cannot be free.
        let boundary = self
            .chains
            .as_ref()
            .and_then(|c| c.hops.iter().find(|h| h.payload_bytes == 20))
            .map(|h| h.median_ns);
        let (hop_composed_ns, hop_ref) = if micro.hop_ci95_ns.0 > 0.0 {
            (micro.hop_ns, "the composed hop")
        } else {
            match boundary {
                Some(b) => (b, "the bare component boundary"),
                None => (micro.hop_ns, "the composed hop"),
            }
        };
        if !self.micro.is_empty() {
            let _ = writeln!(
                md,
                "| receiver-to-fulfilment hop, composed: median under 1 µs | {} (95% interval {} – {}; median of {} paired differences order-placed − fulfil, concurrency_support off{}) | {} |",
                us(micro.hop_ns / 1000.0), us(micro.hop_ci95_ns.0 / 1000.0), us(micro.hop_ci95_ns.1 / 1000.0), micro.iterations,
                boundary.map(|b| format!("; the bare component boundary alone, chain N = 1 vs 0 at 20 B: {}", us(b / 1000.0))).unwrap_or_default(),
                verdict(micro.hop_ci95_ns.1 < 1000.0)
            );
        }
        for r in self
            .shapes
            .iter()
            .filter(|r| r.shape.networked() && r.hop.is_some() && !self.micro.is_empty())
        {
            let hop = self.hop_us(r);
            let ratio = hop * 1000.0 / hop_composed_ns.max(1.0);
            let _ = writeln!(
                md,
                "| same hop, {}: 100x or more slower | {} median publish → handler called ({:.0}x {hop_ref}) | {} |",
                r.shape, us(hop), ratio, verdict(ratio >= 100.0)
            );
        }
        if let Some(c) = self.shape(Shape::Composed) {
            let _ = writeln!(md, "| POST /order answered, composed, embedded store, 1 connection: p50 under 0.5 ms | {} | {} |", us(c.accept.p50_us), verdict(c.accept.p50_us < 500.0));
            let _ = writeln!(md, "| end to end POST → fulfilled via GET, composed, 1 client: p50 under 1 ms | {} | {} |", us(c.end_to_end.latency.p50_us), verdict(c.end_to_end.latency.p50_us < 1000.0));
            let _ = writeln!(md, "| throughput, composed, embedded store, {} cores: 5,000 orders/s or more | {:.0} orders/s ({} connections) | {} |", self.machine.cores, c.throughput.orders_per_s, c.throughput.concurrency, verdict(c.throughput.orders_per_s >= 5000.0));
        }
        if s.phases.contains(&Phase::Shapes) && !self.shapes.is_empty() {
            let lost: u64 = self
                .shapes
                .iter()
                .map(|r| r.loss.lost + r.throughput.lost + r.end_to_end.lost)
                .sum();
            let _ = writeln!(
            md,
            "| orders lost under load ({} orders, {} clients), any shape: 0 | {} lost over {} shapes{} | {} |",
            s.loss_orders, s.loss_clients, lost, self.shapes.len(),
            if s.loss_orders < 10_000 || s.loss_clients < 64 { " (smaller than the target's 10,000 orders / 64 clients)" } else { "" },
            verdict(lost == 0)
        );
        }
        if let Some(t) = &self.tax {
            let _ = writeln!(md, "{}", t.target_row());
        }
        self.peer_targets(&mut md);
        let _ = writeln!(md);
        self.peers_section(&mut md);
        self.open_loop_section(&mut md);

        // Comparison table.
        if s.phases.contains(&Phase::Shapes) && !self.shapes.is_empty() {
            let _ = writeln!(md, "## All shapes\n");
            let _ = writeln!(md, "| shape | hop median | accept p50 | accept p99 | end to end p50 | end to end p99 | orders/s at {} conn. | orders/s at {} clients | lost |", s.concurrency, s.loss_clients);
            let _ = writeln!(
                md,
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
            );
            for r in &self.shapes {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} |",
                    r.shape,
                    us(self.hop_us(r)),
                    us(r.accept.p50_us),
                    us(r.accept.p99_us),
                    us(r.end_to_end.latency.p50_us),
                    us(r.end_to_end.latency.p99_us),
                    r.throughput.orders_per_s,
                    r.loss.orders_per_s,
                    r.loss.lost + r.throughput.lost + r.end_to_end.lost
                );
            }
            if let Some(base) = self
                .shape(Shape::ComposedRedisKv)
                .or(self.shape(Shape::Composed))
            {
                let _ = writeln!(
                md,
                "\nRatios against **{}** (the same key-value store as the networked shapes{}):\n",
                base.shape,
                if base.shape == Shape::Composed {
                    ": not the case here, composed uses the embedded store"
                } else {
                    ""
                }
            );
                let _ = writeln!(md, "| shape | hop | end to end p50 | accept p50 | throughput |\n| --- | --- | --- | --- | --- |");
                for r in self.shapes.iter().filter(|r| r.shape.networked()) {
                    let _ = writeln!(
                        md,
                        "| {} | {:.0}x | {:.2}x | {:.2}x | {:.2}x |",
                        r.shape,
                        self.hop_us(r) / self.hop_us(base).max(1e-6),
                        r.end_to_end.latency.p50_us / base.end_to_end.latency.p50_us.max(1e-6),
                        r.accept.p50_us / base.accept.p50_us.max(1e-6),
                        r.throughput.orders_per_s / base.throughput.orders_per_s.max(1e-6),
                    );
                }
            }
            let _ = writeln!(md);

            // Per shape.
            for r in &self.shapes {
                let _ = writeln!(md, "## {}\n\n{}.\n", r.shape, r.description);
                let _ = writeln!(md, "| measure | samples | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- | --- |");
                md.push_str(&row("accept: POST → 202, 1 connection", &r.accept));
                md.push_str(&row(
                    "end to end: POST → GET says fulfilled, 1 client",
                    &r.end_to_end.latency,
                ));
                md.push_str(&row(
                    &format!(
                        "accept under load, {} connections",
                        r.throughput.concurrency
                    ),
                    &r.throughput.latency,
                ));
                md.push_str(&row(
                    &format!("accept under load, {} clients", r.loss.concurrency),
                    &r.loss.latency,
                ));
                if let Some(h) = &r.hop {
                    md.push_str(&row(
                        "hop: publish → trigger got the message",
                        &h.to_received,
                    ));
                    md.push_str(&row(
                        "hop: publish → handler instance called",
                        &h.to_handler,
                    ));
                    md.push_str(&row("hop: publish → fulfilment done", &h.to_handler_end));
                }
                let _ = writeln!(
                md,
                "\nThroughput: {:.0} orders/s at {} connections ({} orders in {:.2} s, {} errors, {} lost); {:.0} orders/s at {} clients ({} orders, {} errors, {} lost). End to end: {:.2} GETs per order on average, {} lost.\n",
                r.throughput.orders_per_s, r.throughput.concurrency, r.throughput.orders, r.throughput.seconds, r.throughput.errors, r.throughput.lost,
                r.loss.orders_per_s, r.loss.concurrency, r.loss.orders, r.loss.errors, r.loss.lost,
                r.end_to_end.mean_gets, r.end_to_end.lost
            );
            }
        }

        // Micro-benchmark.
        if !self.micro.is_empty() {
            let _ = writeln!(md, "## The composed hop alone (micro-benchmark)\n");
            let _ = writeln!(md, "From the host via wasmtime, one instance each, the same stored order (in-memory SQLite store), {} timed pairs of calls after {} warm-up pairs, (a) and (b) interleaved with the order alternating; the hop is the median of the pairs' differences, with a bootstrap 95% interval:\n", micro.iterations, micro.iterations / 10);
            let _ = writeln!(md, "| concurrency_support | (a) events.order-placed p50 | (a) p99 | (b) fulfilment.fulfil p50 | (b) p99 | hop: median of (a) − (b) | 95% interval |\n| --- | --- | --- | --- | --- | --- | --- |");
            for m in &self.micro {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} – {} |",
                    if m.concurrency_support {
                        "on"
                    } else {
                        "off (kept)"
                    },
                    us(m.order_placed.p50_us),
                    us(m.order_placed.p99_us),
                    us(m.fulfil.p50_us),
                    us(m.fulfil.p99_us),
                    us(m.hop_ns / 1000.0),
                    us(m.hop_ci95_ns.0 / 1000.0),
                    us(m.hop_ci95_ns.1 / 1000.0)
                );
            }
            if let Some(d) = &self.direct {
                let _ = writeln!(
                    md,
                    "| direct Rust call (`fulfilment::fulfil` on `MemoryStore`) | | | {} | {} | | |",
                    us(d.fulfil.p50_us),
                    us(d.fulfil.p99_us)
                );
            }
            let _ = writeln!(md);
        }

        self.chains_section(&mut md);
        if let Some(t) = &self.tax {
            let hop = (!self.micro.is_empty()).then(|| self.kept_micro().hop_ns);
            t.section(&mut md, self.machine.cores, hop);
        }
        if let Some(w) = &self.ways {
            w.section(&mut md);
        }

        // Method.
        let _ = writeln!(md, "## How it was measured\n");
        let _ = writeln!(md, "- Each shape's apps run in one harness process (`nano-bench host`): one nanohost `RunningHost` per app, the code `nanohost up` runs, on one multi-threaded tokio runtime. The brokers are a `redis-server` and a `mosquitto` (`set_tcp_nodelay true`) on loopback ports, started for the run. The client is one current-thread tokio runtime with hyper HTTP/1.1 keep-alive connections and TCP_NODELAY: client, host and brokers share the {} cores.", self.machine.cores);
        let _ = writeln!(md, "- Per shape, in this order: warm-up ({} orders, half sequential, half at {} connections, discarded); accept latency ({} sequential POSTs on one connection); end to end ({} orders one after the other); throughput ({} orders over {} connections, closed loop); {} orders over {} clients. After each loaded phase every accepted order is polled until `fulfilled` (10 s deadline): those that never are counted as lost.", s.warm_up, s.concurrency, s.sequential, s.sequential, s.throughput_orders, s.concurrency, s.loss_orders, s.loss_clients);
        let _ = writeln!(md, "- End to end: the clock starts before the POST and stops when a GET answers `fulfilled`. The first GET is sent as soon as the 202 arrives, then one every {} µs (a blocking sleep; Linux wakes ~50 µs late). So a networked figure is late by at most one interval plus one GET round trip; the composed app fulfils before its 202, so its first GET always succeeds.", s.poll_interval_us);
        let _ = writeln!(md, "- Hop, networked: nanohost's opt-in probes (`host/src/hop.rs`) record `Instant`s when the host side of `publish` (MQTT/Redis) or an outbound HTTP request is entered, when the trigger gets the message, when the handler's export is called (after instantiation), and when it returns. Both apps share the process clock; a trip is matched by payload (HTTP: by path, exact at one client). Recorded during the end-to-end phase only.");
        let _ = writeln!(md, "- Hop, composed: the micro-benchmark above. It is the cost of the extra component boundary and of events-local (a call, its argument copy and its error mapping), not an estimate from end-to-end figures.");
        let _ = writeln!(md, "- Publish semantics of the networked shapes: what real Spin 3.6.3 does (nanohost's `host/src/outbound_mqtt.rs` follows Spin's `factor-outbound-mqtt`): events-mqtt publishes at QoS 1, each `open` makes a new MQTT client that connects on its first publish, and `publish` returns only after the broker's PUBACK. Redis `publish` returns after Redis answers; outbound HTTP after the response.");
        let _ = writeln!(md, "- Build: the measured native binary (nano-bench, which links nanohost) with the `{}` profile; the components with the size-optimised wasm `release` profile, as `spin build` would. The peers are the binaries found (`spin`: SPIN_BIN, PATH, then ../shared/tools/spin/spin; `wasmtime`: WASMTIME_BIN, PATH, then ~/.cargo/bin), built with cargo's default release profile (opt-level 3).", self.profile);
        let _ = writeln!(
            md,
            "- Percentiles come from HdrHistogram (3 significant digits), in nanoseconds."
        );
        md
    }

    fn chart(&self, path: &Path) -> Result<()> {
        let groups = [
            "hop median",
            "accept p50",
            "accept p99",
            "end-to-end p50",
            "end-to-end p99",
        ];
        let values: Vec<(Shape, [f64; 5])> = self
            .shapes
            .iter()
            .map(|r| {
                (
                    r.shape,
                    [
                        self.hop_us(r),
                        r.accept.p50_us,
                        r.accept.p99_us,
                        r.end_to_end.latency.p50_us,
                        r.end_to_end.latency.p99_us,
                    ],
                )
            })
            .collect();
        let all = values.iter().flat_map(|(_, v)| v.iter().copied());
        let (lo, hi) = decades(all, (0.01, 10.0));
        let root = SVGBackend::new(path, (1000, 820)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(560);
        let mut chart = ChartBuilder::on(&top)
            .caption(
                format!(
                    "nano-orders: composed vs networked, latency in µs (log scale), {} run",
                    self.settings.mode
                ),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..groups.len() as f64, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len() * 2 + 1)
            .x_label_formatter(&|x| slot_label(&groups, *x))
            .y_desc("µs")
            .y_label_formatter(&|y| format!("{y}"))
            .draw()?;
        let palette = [
            RGBColor(31, 119, 180),
            RGBColor(174, 199, 232),
            RGBColor(255, 127, 14),
            RGBColor(214, 39, 40),
            RGBColor(44, 160, 44),
        ];
        let n = values.len().max(1) as f64;
        let width = 0.8 / n;
        for (k, (shape, v)) in values.iter().enumerate() {
            let color = palette[k % palette.len()];
            chart
                .draw_series(
                    v.iter()
                        .enumerate()
                        .filter(|(_, y)| **y > 0.0)
                        .map(|(g, y)| {
                            let x0 = g as f64 + 0.1 + k as f64 * width;
                            Rectangle::new([(x0, lo), (x0 + width * 0.9, *y)], color.filled())
                        }),
                )?
                .label(shape.name())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
            chart.draw_series(
                v.iter()
                    .enumerate()
                    .filter(|(_, y)| **y > 0.0)
                    .map(|(g, y)| {
                        let x = g as f64 + 0.1 + (k as f64 + 0.45) * width;
                        Text::new(short(*y), (x, *y * 1.12), bar_label_style())
                    }),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()?;

        // Throughput, linear.
        let rates: Vec<(Shape, f64, f64)> = self
            .shapes
            .iter()
            .map(|r| (r.shape, r.throughput.orders_per_s, r.loss.orders_per_s))
            .collect();
        let max = rates
            .iter()
            .map(|r| r.1.max(r.2))
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.2;
        let mut chart = ChartBuilder::on(&bottom)
            .caption(
                format!(
                    "orders/s: {} connections (dark) and {} clients (light)",
                    self.settings.concurrency, self.settings.loss_clients
                ),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..rates.len().max(1) as f64, 0f64..max)?;
        let names: Vec<&'static str> = rates.iter().map(|r| r.0.name()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(rates.len() * 2 + 1)
            .x_label_formatter(&|x| slot_label(&names, *x))
            .y_desc("orders/s")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (k, (_, a, b)) in rates.iter().enumerate() {
            let color = palette[k % palette.len()];
            let x = k as f64;
            chart.draw_series([
                Rectangle::new([(x + 0.15, 0.0), (x + 0.48, *a)], color.filled()),
                Rectangle::new([(x + 0.52, 0.0), (x + 0.85, *b)], color.mix(0.45).filled()),
            ])?;
            chart.draw_series([(x + 0.315, *a), (x + 0.685, *b)].map(|(x, y)| {
                Text::new(format!("{y:.0}"), (x, y + max * 0.01), bar_label_style())
            }))?;
        }
        root.present()?;
        Ok(())
    }
}

/// The powers of ten around the positive `values`, for a log axis; `empty` when there are none.
fn decades(values: impl Iterator<Item = f64>, empty: (f64, f64)) -> (f64, f64) {
    let positive = values.filter(|v| *v > 0.0);
    let (lo, hi) = positive.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi > 0.0 {
        (
            10f64.powf(lo.log10().floor()),
            10f64.powf(hi.log10().ceil()),
        )
    } else {
        empty
    }
}

/// The name of slot `i` at its middle, x = i + 0.5; no label elsewhere.
fn slot_label(names: &[&str], x: f64) -> String {
    let i = (x - 0.5).round();
    if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
        names[i as usize].to_string()
    } else {
        String::new()
    }
}

/// Small black text centred above the point it labels.
fn bar_label_style() -> TextStyle<'static> {
    ("sans-serif", 10)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom))
}

/// A bar label: µs with two or three significant digits.
fn short(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}ms", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Offered rate, p50 and p99 of one open-loop point.
type RatePoints = (f64, f64, f64);

/// The figures of one peer run, when it ran.
fn ran(r: &PeerRun) -> Option<(&crate::peers::Phase, &crate::peers::Phase)> {
    Some((r.one_connection.as_ref()?, r.loaded.as_ref()?))
}

/// The baseline file: `{"note": ..., "gateway": ..., "runs": [PeerRun, ...]}`.
fn baseline_runs(v: &serde_json::Value) -> Vec<PeerRun> {
    serde_json::from_value(v["runs"].clone()).unwrap_or_default()
}

impl Report {
    fn peer(&self, host: &str, workload_prefix: &str) -> Option<&PeerRun> {
        self.peers
            .iter()
            .find(|r| r.host == host && r.workload.starts_with(workload_prefix))
    }

    /// Rows of the targets table for the host comparisons.
    fn peer_targets(&self, md: &mut String) {
        if self.peers.is_empty() {
            let _ = writeln!(md, "| embedded host vs real Spin / `wasmtime serve` | not run (`--phases` left out `peers`) | n/a |");
            return;
        }
        let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
        let cases = [
            ("wasmtime serve", "trivial", 1.15, "nanohost serves the trivial component at 1.15x `wasmtime serve`'s throughput or more, with a p50 no higher"),
            ("spin", "order app (POST /order), in-memory", 1.0, "nanohost at least as fast as real Spin on the order app (throughput and p50), each host's in-memory store"),
            ("spin", "order app (POST /order), default store", 1.0, "the same, each host's default store (a SQLite file, synced on every commit)"),
            ("spin", "order app (POST /order), store in Redis", 1.0, "the same, both stores in one Redis"),
        ];
        for (peer, workload, factor, target) in cases {
            let (Some(n), Some(p)) = (self.peer("nanohost", workload), self.peer(peer, workload))
            else {
                continue;
            };
            match (ran(n), ran(p)) {
                (Some((n1, nl)), Some((p1, pl))) => {
                    let ratio = nl.per_s / pl.per_s.max(1e-9);
                    let ok = ratio >= factor && n1.latency.p50_us <= p1.latency.p50_us;
                    let _ = writeln!(
                        md,
                        "| {target} | {:.0} vs {:.0} req/s at {} conn. ({ratio:.2}x); p50 on 1 conn. {} vs {} | {} |",
                        nl.per_s, pl.per_s, nl.connections, us(n1.latency.p50_us), us(p1.latency.p50_us), verdict(ok)
                    );
                }
                _ => {
                    let why = p
                        .skipped
                        .as_deref()
                        .or(n.skipped.as_deref())
                        .unwrap_or("no result");
                    let _ = writeln!(md, "| {target} | not measured: {why} | n/a |");
                }
            }
        }
    }

    fn peer_rows(md: &mut String, runs: &[PeerRun], with_ratio: bool) {
        let _ = writeln!(md, "| served | host | 1 conn.: req/s | p50 | p99 | loaded: req/s | conn. | p50 | p99 | errors | nanohost ÷ this (req/s loaded) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for r in runs {
            match ran(r) {
                Some((one, l)) => {
                    let ratio = runs
                        .iter()
                        .find(|n| n.host == "nanohost" && n.workload == r.workload)
                        .and_then(ran)
                        .filter(|_| with_ratio && r.host != "nanohost")
                        .map(|(_, nl)| format!("{:.2}x", nl.per_s / l.per_s.max(1e-9)))
                        .unwrap_or_default();
                    let limited = if one.time_limited || l.time_limited {
                        " (time limit)"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        md,
                        "| {} | {} | {:.0}{limited} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
                        r.workload,
                        r.host,
                        one.per_s,
                        us(one.latency.p50_us),
                        us(one.latency.p99_us),
                        l.per_s,
                        l.connections,
                        us(l.latency.p50_us),
                        us(l.latency.p99_us),
                        one.errors + l.errors,
                        ratio
                    );
                }
                None => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | skipped: {} | | | | | | | | |",
                        r.workload,
                        r.host,
                        r.skipped.as_deref().unwrap_or("no result")
                    );
                }
            }
        }
    }

    fn peers_section(&self, md: &mut String) {
        if self.peers.is_empty() {
            return;
        }
        let ps = &self.settings.peers;
        let _ = writeln!(md, "## Hosts side by side\n");
        let _ = writeln!(md, "The same client (hyper, HTTP/1.1 keep-alive, TCP_NODELAY on the client's sockets), one server at a time on this machine, in this run. Each server: a warm-up ({} requests at most, discarded), then {} requests on one connection, one at a time, then {} requests closed loop over {} connections; each phase also stops after {:.0} s (marked \"time limit\"). Versions: {}; {} (the WASIp3 build); {}; nanohost is this workspace (wasmtime {}). The WASIp3 build's instances are reused by both hosts (Spin 4's defaults); on Spin 4.1.0-pre0 its answers reach the socket in two writes, which Nagle's algorithm and the client's delayed ACK hold up on a keep-alive connection (`docs/wasip3.md`, \"Known problem\"): its latency there is that, not the app.\n",
            ps.warm_up, ps.requests / 4, ps.requests, ps.connections, ps.max_seconds,
            self.versions.spin_cli, self.versions.spin41_cli, self.versions.wasmtime_cli, self.versions.wasmtime);
        Self::peer_rows(md, &self.peers, true);
        let _ = writeln!(md);
        for r in self.peers.iter().filter(|r| !r.command.is_empty()) {
            let _ = writeln!(md, "- {} / {}: `{}`", r.host, r.workload, r.command);
        }
        let _ = writeln!(md, "\nThe order app is `target/composed/order-app.wasm` as `cargo xtask bench` built it from the working tree; its gateway's last commit: {}. Neither real Spin 3.6.3 nor nanohost sets TCP_NODELAY on the connections it accepts (nanohost stopped doing so to behave like Spin), so a reply written in two pieces waits for the client's delayed ACK (~40 ms): the gateway now sends each reply in one piece.\n", self.versions.gateway);
        if let Some(before) = &self.spin_before {
            let runs = baseline_runs(before);
            let _ = writeln!(md, "### Real Spin before the gateway's keep-alive fix\n");
            let _ = writeln!(
                md,
                "Kept from an earlier run (`{}`): {}. Gateway: {}.\n",
                SPIN_BEFORE,
                before["note"].as_str().unwrap_or(""),
                before["gateway"].as_str().unwrap_or("unknown")
            );
            Self::peer_rows(md, &runs, true);
            let _ = writeln!(md);
        }
    }

    fn open_loop_section(&self, md: &mut String) {
        let with: Vec<&ShapeResult> = self
            .shapes
            .iter()
            .filter(|r| r.open_loop.is_some())
            .collect();
        if with.is_empty() {
            return;
        }
        let s = &self.settings;
        let _ = writeln!(md, "## Open loop: latency against offered load\n");
        let _ = writeln!(md, "Orders arrive at a fixed rate ({:.1} s per rate, {} B details, a pool of {} keep-alive connections) whatever the server does; latency runs from each order's *intended* send time to its 202, so queueing counts (coordinated omission corrected). A sweep stops after the first rate that saturates (achieved under 90% of offered, p50 over 20 ms, or over 1% errors). Chart: `open-loop.svg`.\n",
            s.open_seconds, s.open_details_bytes, s.open_connections);
        let _ = writeln!(md, "| shape | offered/s | achieved/s | p50 | p90 | p99 | max | errors |\n| --- | --- | --- | --- | --- | --- | --- | --- |");
        for r in &with {
            let o = r.open_loop.as_ref().expect("filtered");
            for p in &o.sweep.points {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                    r.shape,
                    p.offered,
                    p.achieved,
                    us(p.latency.p50_us),
                    us(p.latency.p90_us),
                    us(p.latency.p99_us),
                    us(p.latency.max_us),
                    p.errors
                );
            }
        }
        let _ = writeln!(md);
        for r in &with {
            let o = r.open_loop.as_ref().expect("filtered");
            let knee = o
                .sweep
                .points
                .iter()
                .rev()
                .find(|p| !crate::openloop::saturated(p));
            let _ = writeln!(
                md,
                "- {}: highest rate served unsaturated {}{}",
                r.shape,
                knee.map(|p| format!("{:.0} orders/s (p99 {})", p.offered, us(p.latency.p99_us)))
                    .unwrap_or_else(|| "none".into()),
                o.sweep
                    .stopped
                    .as_ref()
                    .map(|w| format!("; {w}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(md);

        // Dapr's format: what one hop adds, p50/p90/p99.
        let _ = writeln!(
            md,
            "### Each hop's added latency at {:.0} orders/s, {} B orders, beside Dapr\n",
            s.hop_rate, s.hop_details_bytes
        );
        let _ = writeln!(
            md,
            "| hop | how | p50 | p90 | p99 | samples |\n| --- | --- | --- | --- | --- | --- |"
        );
        let _ = writeln!(md, "| Dapr 1.17 service invocation (published) | sidecar to sidecar, 1,000 req/s, 1 KB | 1.06 ms | 1.48 ms | 2.90 ms | |");
        if let Some(m) = self.micro_1k.first() {
            let _ = writeln!(md, "| composed: events-local → fulfilment (component call) | micro-benchmark, one instance each, percentiles of the paired differences (a) − (b) (with − without the hop, as Dapr's figures) | {} | {} | {} | {} pairs |",
                us(m.hop_ns / 1000.0), us(m.hop_p90_ns / 1000.0), us(m.hop_p99_ns / 1000.0), m.iterations);
        }
        for r in &with {
            let o = r.open_loop.as_ref().expect("filtered");
            if let Some(h) = &o.hop {
                let _ = writeln!(md, "| {}: publish → fulfilment handler called | measured per message inside the harness during the open-loop run ({:.0} offered, {:.0} achieved) | {} | {} | {} | {} |",
                    r.shape, o.at_hop_rate.offered, o.at_hop_rate.achieved, us(h.to_handler.p50_us), us(h.to_handler.p90_us), us(h.to_handler.p99_us), h.to_handler.count);
            }
        }
        let _ = writeln!(
            md,
            "\nAccept latency (intended send → 202) during those runs:\n"
        );
        let _ = writeln!(md, "| shape | offered/s | achieved/s | p50 | p90 | p99 | errors |\n| --- | --- | --- | --- | --- | --- | --- |");
        for r in &with {
            let p = &r.open_loop.as_ref().expect("filtered").at_hop_rate;
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {} | {} | {} | {} |",
                r.shape,
                p.offered,
                p.achieved,
                us(p.latency.p50_us),
                us(p.latency.p90_us),
                us(p.latency.p99_us),
                p.errors
            );
        }
        let _ = writeln!(md);
    }

    /// p50 and p99 against offered rate, per shape, log-log.
    fn open_loop_chart(&self, path: &Path) -> Result<()> {
        let series: Vec<(Shape, Vec<RatePoints>)> = self
            .shapes
            .iter()
            .filter_map(|r| {
                let o = r.open_loop.as_ref()?;
                Some((
                    r.shape,
                    o.sweep
                        .points
                        .iter()
                        .filter(|p| p.latency.count > 0)
                        .map(|p| (p.offered, p.latency.p50_us, p.latency.p99_us))
                        .collect(),
                ))
            })
            .collect();
        let xs = series.iter().flat_map(|(_, v)| v.iter().map(|p| p.0));
        let ys = series
            .iter()
            .flat_map(|(_, v)| v.iter().flat_map(|p| [p.1, p.2]));
        let (x0, x1) = xs.fold((f64::MAX, 0f64), |(a, b), x| (a.min(x), b.max(x)));
        let (x0, x1) = if x1 > 0.0 {
            (x0 / 1.3, x1 * 1.3)
        } else {
            (1.0, 10.0)
        };
        let (y0, y1) = decades(ys, (1.0, 10.0));
        let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("open loop: accept latency from intended send time vs offered load ({} run); solid p50, dashed p99", self.settings.mode),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("offered orders/s")
            .y_desc("µs")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y}"))
            .draw()?;
        let palette = [
            RGBColor(31, 119, 180),
            RGBColor(174, 199, 232),
            RGBColor(255, 127, 14),
            RGBColor(214, 39, 40),
            RGBColor(44, 160, 44),
        ];
        for (k, (shape, pts)) in series.iter().enumerate() {
            let color = palette[k % palette.len()];
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))?
                .label(shape.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart.draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0, p.1), 3, color.filled())),
            )?;
            chart.draw_series(DashedLineSeries::new(
                pts.iter().map(|p| (p.0, p.2)),
                6,
                4,
                color.stroke_width(1),
            ))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()?;
        root.present()?;
        Ok(())
    }
}

impl Report {
    fn chains_section(&self, md: &mut String) {
        let Some(c) = &self.chains else {
            return;
        };
        let _ = writeln!(
            md,
            "## How cost grows with the number of composed components\n"
        );
        let _ = writeln!(md, "N pass-through components (`bench/fixtures/chain-pass`: import `nano:chain/echo`, export it, call the next) in front of one handler (`bench/fixtures/chain-handler`), composed with wac from generated `.wac` files (`chains/chain-N.wac` beside this report). Per request as nanohost serves one: a new store and instance (nanohost's engine and pooling allocator), then one call with a 20 B string; {} requests per N after {} warm-up.\n", c.iterations, c.iterations / 10);
        let _ = writeln!(md, "| N | component | instantiate p50 | p99 | call p50 | p99 | instantiate + call p50, added per component vs N = 0 |\n| --- | --- | --- | --- | --- | --- | --- |");
        let base = c.points.iter().find(|p| p.n == 0);
        for p in &c.points {
            let per = match base {
                Some(b) if p.n > 0 => us(((p.instantiate.p50_us + p.call.p50_us)
                    - (b.instantiate.p50_us + b.call.p50_us))
                    / p.n as f64),
                _ => String::new(),
            };
            let _ = writeln!(
                md,
                "| {} | {:.0} KiB | {} | {} | {} | {} | {} |",
                p.n,
                p.component_bytes as f64 / 1024.0,
                us(p.instantiate.p50_us),
                us(p.instantiate.p99_us),
                us(p.call.p50_us),
                us(p.call.p99_us),
                per
            );
        }
        let _ = writeln!(md, "\nThe composed hop against payload size: a call through one pass-through (N = 1) against the handler alone (N = 0), one instance each, {} pairs per size, interleaved with the order alternating; the figure is the median of the pairs' differences with a bootstrap 95% interval (1,000 resamples). Beside it, the published Rust-to-Rust string figures (Apple M2, WebAssembly Workshop 2025; another machine, so compare the growth, not the level).\n", c.pairs);
        let _ = writeln!(md, "| payload | hop median | 95% interval | published | this ÷ published |\n| --- | --- | --- | --- | --- |");
        for h in &c.hops {
            let _ = writeln!(
                md,
                "| {} B | {} | {} – {} | {} | {:.2}x |",
                h.payload_bytes,
                us(h.median_ns / 1000.0),
                us(h.ci95_ns.0 / 1000.0),
                us(h.ci95_ns.1 / 1000.0),
                us(h.published_ns / 1000.0),
                h.median_ns / h.published_ns
            );
        }
        let _ = writeln!(md);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stamp_is_a_utc_time() {
        let s = super::utc_stamp();
        assert_eq!(s.len(), 16, "{s}");
        assert!(
            s.starts_with("20") && s.ends_with('Z') && s.as_bytes()[8] == b'T',
            "{s}"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(super::us(0.16), "160 ns");
        assert_eq!(super::us(3.4), "3.4 µs");
        assert_eq!(super::us(309.2), "309 µs");
        assert_eq!(super::us(27_300.0), "27.3 ms");
    }
}
