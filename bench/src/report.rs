//! `results.json`: everything a run measured, with the machine, the versions and the settings
//! it ran with. The report and charts are rendered from it (`render.rs`).

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::chains::Chains;
use crate::micro::{Direct, Micro};
use crate::peers::{version_of, PeerRun, Tools};
use crate::{Settings, ShapeResult};

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// `/proc/loadavg` when the run started: other work on the machine skews every figure.
    pub loadavg_at_start: String,
    /// Whether the kernel has PAGEMAP_SCAN, with which nanohost's pool resets slots in place.
    pub pagemap_scan: bool,
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
        pagemap_scan: wasmtime::PoolingAllocationConfig::is_pagemap_scan_available(),
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

pub fn spin_before(root: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(root.join(crate::render::SPIN_BEFORE)).ok()?;
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

impl Report {
    /// `results.json`, the product of a run, and the report and charts rendered from it.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        crate::render::write(&serde_json::to_value(self)?, dir)
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
}
