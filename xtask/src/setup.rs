//! Installs what the commands need, so a fresh Debian machine with rustup needs nothing else.

use anyhow::{bail, Context, Result};
use std::process::Command;

/// Adds the `wasm32-wasip2` target to the active toolchain when it is missing.
pub fn wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the wasm32-wasip2 target")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    eprintln!("adding the wasm32-wasip2 target (once)");
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()?;
    if !status.success() {
        bail!("`rustup target add wasm32-wasip2` failed");
    }
    Ok(())
}

/// The tests start real brokers: Debian's `redis-server` and `mosquitto`. Installs them with
/// apt-get when missing and allowed to (root, or passwordless sudo); otherwise says what to run.
pub fn test_prerequisites() -> Result<()> {
    let wanted = [("redis-server", "redis-server"), ("mosquitto", "mosquitto")];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(binary, _)| !on_path(binary))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let apt = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    let sudo = if is_root() { "" } else { "sudo -n " };
    eprintln!(
        "installing {} for the tests: {sudo}{apt}",
        missing.join(", ")
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{sudo}apt-get update -qq && {sudo}apt-get install -y -qq {}",
            missing.join(" ")
        ))
        .status()?;
    if !status.success() || missing.iter().any(|b| !on_path(b)) {
        bail!(
            "the tests need {}; install them with: sudo {apt}",
            missing.join(" and ")
        );
    }
    Ok(())
}

fn on_path(binary: &str) -> bool {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    // Debian puts mosquitto in /usr/sbin, which a non-root PATH may lack.
    candidates
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .any(|dir| dir.join(binary).is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The networked shapes talk to a broker and a Redis; say which address is missing, and how to
/// point the apps elsewhere, instead of letting the apps fail one request at a time.
pub fn networked_prerequisites(mqtt: bool) -> Result<()> {
    let redis = variable_address("SPIN_VARIABLE_REDIS_ADDRESS", "redis://127.0.0.1:6379");
    let mut needed = vec![(
        "Redis (key-value store and pub/sub)",
        redis,
        "SPIN_VARIABLE_REDIS_ADDRESS",
    )];
    if mqtt {
        let broker = variable_address("SPIN_VARIABLE_MQTT_ADDRESS", "mqtt://127.0.0.1:1883");
        needed.push(("an MQTT broker", broker, "SPIN_VARIABLE_MQTT_ADDRESS"));
    }
    for (what, address, variable) in needed {
        let host_port = address.split("://").nth(1).unwrap_or(&address).to_string();
        if std::net::TcpStream::connect(&host_port).is_err() {
            bail!(
                "this shape needs {what} at {address}, and nothing answers there. Start one \
                 (`redis-server` / `mosquitto -p 1883`) or set {variable}; the key-value store's \
                 address is in runtime-config.redis.toml"
            );
        }
        eprintln!("using {what} at {address}");
    }
    Ok(())
}

fn variable_address(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_string())
}
