//! `cargo xtask <command>`: everything that spans targets (wasm components, compositions, the
//! native host) behind one entry point. Setup is part of the commands: a missing
//! `wasm32-wasip2` target is added here, not by the user.

mod setup;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasm crates, built for `wasm32-wasip2` in release mode (small, and fast to compile).
const WASM_CRATES: &[&str] = &[
    "receiver",
    "status-provider",
    "fulfilment",
    "http-gateway",
    "kv-store",
    "events-local",
    "events-mqtt",
    "events-redis",
    "mqtt-listener",
    "redis-listener",
    // The host's test fixtures.
    "probe",
];

#[derive(Parser)]
#[command(about = "Build, run and test nano-orders")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build every wasm component and every composition (target/composed/*.wasm).
    Build,
    /// Build, then run the app on the embedded host (nanohost).
    Up {
        /// Which shape of the app to run.
        #[arg(long, value_enum, default_value = "composed")]
        shape: Shape,
        /// Address the HTTP trigger listens on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: String,
        /// A Spin runtime config, e.g. `runtime-config.redis.toml` for a Redis-backed store.
        #[arg(long)]
        runtime_config: Option<PathBuf>,
    },
    /// Build, then run every test: unit, composition, host, end to end, deploy checks.
    Test,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shape {
    /// One component, every hop in-process.
    Composed,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Cmd::Build => build(&root),
        Cmd::Up {
            shape: Shape::Composed,
            listen,
            runtime_config,
        } => {
            build(&root)?;
            let mut host = cargo(&root);
            host.args(["run", "--quiet", "-p", "nanohost", "--", "up"]);
            host.args(["--manifest", "spin.toml", "--listen", &listen]);
            if let Some(config) = runtime_config {
                host.arg("--runtime-config").arg(config);
            }
            run(&mut host)
        }
        Cmd::Test => {
            setup::test_prerequisites()?;
            build(&root)?;
            // `default-members` are the native crates; the wasm-only ones were built above.
            run(cargo(&root).arg("test"))?;
            let deploy_check = root.join("deploy/check.sh");
            if deploy_check.exists() {
                run(Command::new("bash").arg(deploy_check).current_dir(&root))?;
            }
            Ok(())
        }
    }
}

fn build(root: &Path) -> Result<()> {
    setup::wasm_target()?;
    let mut cmd = cargo(root);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"]);
    for krate in WASM_CRATES {
        cmd.args(["-p", krate]);
    }
    run(&mut cmd)?;

    let target = root.join("target");
    let deps = target.join("wac-deps");
    composition::stage_packages(&target.join("wasm32-wasip2/release"), &deps)?;
    for out in composition::compose_all(&root.join("composition"), &deps, &target.join("composed"))?
    {
        let relative = out.strip_prefix(root).unwrap_or(&out);
        eprintln!(
            "composed {} (imports only host interfaces)",
            relative.display()
        );
    }
    Ok(())
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_args().collect::<Vec<_>>());
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
