//! `cargo xtask <command>`: everything that spans targets (wasm components, compositions, the
//! native host) behind one entry point. Setup is part of the commands: a missing
//! `wasm32-wasip2` target is added here, not by the user.

mod setup;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use shapes::Role;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasm crates `build` compiles (for `wasm32-wasip2`, release: small, and fast to compile)
/// besides the components of `shapes.toml`: the host's test fixtures.
const FIXTURE_CRATES: &[&str] = &["probe", "probe-p3"];

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
        /// Which shape of the app to run (the deployed shapes of `shapes.toml`).
        #[arg(long, default_value = "composed", value_parser = deployed_shapes())]
        shape: String,
        /// Address the HTTP trigger listens on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: String,
        /// A Spin runtime config, e.g. `runtime-config.redis.toml` for a Redis-backed store.
        #[arg(long)]
        runtime_config: Option<PathBuf>,
    },
    /// Build, then run every test: unit, composition, host, end to end, deploy checks.
    Test,
    /// Build (native-release profile), then run the host peers, the same load against every
    /// shape (composed, MQTT, Redis, HTTP), open-loop sweeps and the micro-benchmarks, and write
    /// bench/results/<UTC time>/{report.md,results.json,*.svg}.
    Bench(BenchArgs),
}

/// Everything after `bench` goes to nano-bench, which defines the options
/// (`cargo xtask bench --help` lists them). Only two matter here: `--smoke` (and `--help`) need
/// no release build.
#[derive(clap::Args, Default)]
#[command(disable_help_flag = true)]
struct BenchArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl BenchArgs {
    fn has(&self, flag: &str) -> bool {
        self.args.iter().any(|a| a == flag)
    }

    /// Whether the run includes `phase`: every phase unless `--phases` names others.
    fn runs_phase(&self, phase: &str) -> bool {
        let mut asked = None;
        for (i, a) in self.args.iter().enumerate() {
            if let Some(list) = a.strip_prefix("--phases=") {
                asked = Some(list.to_string());
            } else if a == "--phases" {
                asked = self.args.get(i + 1).cloned();
            }
        }
        asked.is_none_or(|list| list.split(',').any(|p| p.trim() == phase))
    }
}

/// `--shape`'s values, each with its `about` from `shapes.toml` for `--help`.
fn deployed_shapes() -> clap::builder::PossibleValuesParser {
    let shapes = composition::catalog().deployed();
    shapes
        .map(|s| clap::builder::PossibleValue::new(s.name.as_str()).help(s.about.as_str()))
        .collect::<Vec<_>>()
        .into()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Cmd::Build => build(&root),
        Cmd::Up {
            shape,
            listen,
            runtime_config,
        } => {
            build(&root)?;
            run(cargo(&root).args(["build", "--quiet", "-p", "nanohost"]))?;
            let shape = composition::catalog()
                .shape(&shape)
                .expect("clap checked it");
            up(&root, shape, &listen, runtime_config)
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
            // Every shape's image on containerd + containerd-shim-spin; skips itself where it cannot run.
            let shim_check = root.join("deploy/shim/check.sh");
            run(Command::new("bash").arg(shim_check).current_dir(&root))?;
            // The benchmark as a smoke test only: it runs and writes its files. No timing is
            // asserted anywhere.
            bench(
                &root,
                BenchArgs {
                    args: vec!["--smoke".into()],
                },
                false,
            )
        }
        Cmd::Bench(args) => {
            setup::test_prerequisites()?;
            bench(&root, args, true)
        }
    }
}

fn build(root: &Path) -> Result<()> {
    setup::wasm_target()?;
    let mut cmd = cargo(root);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"]);
    let components = composition::catalog().components.iter();
    for krate in components
        .map(|c| c.krate.as_str())
        .chain(FIXTURE_CRATES.iter().copied())
    {
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

/// The benchmark's own wasm fixtures (bench/fixtures), built like the components.
const BENCH_WASM_CRATES: &[&str] = &["bench-hello", "bench-chain-pass", "bench-chain-handler"];

/// The `wasmtime serve` the benchmark compares nanohost with: the wasmtime nanohost embeds.
const WASMTIME_CLI: &str = "wasmtime-cli@48.0.8";

/// Builds `nano-bench` (which links the nanohost library: the harness that runs the apps is
/// nanohost's `RunningHost`) and its fixtures, and runs it. `native-release` profile (optimised
/// for speed, unlike the size-optimised wasm `release`), except for `--smoke` (debug).
fn bench(root: &Path, args: BenchArgs, build_wasm: bool) -> Result<()> {
    if build_wasm {
        build(root)?;
    }
    let smoke = args.has("--smoke");
    let debug = smoke || args.has("--help") || args.has("-h");
    let mut fixtures = cargo(root);
    fixtures.args(["build", "--release", "--target", "wasm32-wasip2"]);
    for krate in BENCH_WASM_CRATES {
        fixtures.args(["-p", krate]);
    }
    run(&mut fixtures)?;
    // The monoliths (composition tax; WASIp2 and WASIp3) link the component crates without their `component`
    // feature: a build of its own, with a profile of its own (`wasm-monolith`, the release
    // settings), so neither those features nor those crates' unhashed cdylib names meet the
    // components' build.
    if args.runs_phase("tax") {
        run(cargo(root).args([
            "build",
            "--profile",
            "wasm-monolith",
            "--target",
            "wasm32-wasip2",
            "-p",
            "bench-monolith",
            "-p",
            "bench-monolith-p3",
        ]))?;
    }
    // Only the peers phase runs `wasmtime serve`.
    if !debug && args.runs_phase("peers") {
        ensure_wasmtime_cli();
    }
    let mut cmd = cargo(root);
    cmd.args(["build", "-p", "nano-bench"]);
    let profile = if debug { "debug" } else { "native-release" };
    if !debug {
        eprintln!("building nano-bench with the native-release profile (the first time takes several minutes)");
        cmd.args(["--profile", profile]);
    }
    run(&mut cmd)?;

    let line = ["cargo xtask bench".to_string()]
        .into_iter()
        .chain(args.args.iter().cloned())
        .collect::<Vec<_>>();
    let mut bench = Command::new(root.join("target").join(profile).join("nano-bench"));
    bench.current_dir(root).arg("run");
    bench.args(["--root".as_ref(), root.as_os_str()]);
    bench.args(["--profile", profile]);
    if smoke && !args.has("--out") {
        bench.arg("--out").arg(root.join("target/bench-smoke"));
    }
    bench.args(&args.args);
    bench.arg("--command-line").arg(line.join(" "));
    run(&mut bench)
}

/// Installs `wasmtime` (the CLI, for `wasmtime serve`) when none is found; if that fails the
/// benchmark skips that peer and says why.
fn ensure_wasmtime_cli() {
    let found = std::env::var_os("WASMTIME_BIN").is_some()
        || Command::new("wasmtime")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        || std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".cargo/bin/wasmtime").is_file())
            .unwrap_or(false);
    if found {
        return;
    }
    eprintln!("installing {WASMTIME_CLI} for `wasmtime serve` (about 10-20 minutes, once)");
    let status = Command::new("nice")
        .args(["-n", "19", "cargo", "install", "--locked", WASMTIME_CLI])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("could not install {WASMTIME_CLI}: the benchmark skips `wasmtime serve`");
    }
}

/// Runs the shape's apps on nanohost until Ctrl-C or SIGTERM. A networked shape is two apps, so
/// two hosts. A host that stops by itself after it has started (the triggers stop theirs when
/// they lose their broker) is started again after a back-off, as Kubernetes restarts a pod's
/// container; one that cannot start the first time ends `up` with its error. Every host is
/// stopped (SIGTERM, then SIGKILL after 10 s) whatever stops this command, and dies with it if it
/// is killed. While they run, the order app's outbox is swept every [`SWEEP_EVERY`], as the
/// CronJob does on Kubernetes.
fn up(
    root: &Path,
    shape: &shapes::Shape,
    listen: &str,
    runtime_config: Option<PathBuf>,
) -> Result<()> {
    let host_binary = root.join("target/debug/nanohost");
    // `POST /sweep` is closed without a token: one per run, known to the hosts and to `sweep`.
    let token = sweep_token()?;
    let host = |manifest: &str, config: Option<&Path>| {
        let mut cmd = Command::new(&host_binary);
        cmd.current_dir(root)
            .env("SPIN_VARIABLE_SWEEP_TOKEN", &token)
            .args(["up", "--manifest", manifest, "--listen", listen]);
        if let Some(config) = config {
            cmd.arg("--runtime-config").arg(config);
        }
        cmd
    };
    let stop = stop_requested()?;
    let mut children = Vec::new();
    let order = &shape.order_app().manifest;
    match shape.app(Role::Fulfilment) {
        None => {
            let cmd = host(order, runtime_config.as_deref());
            children.push(Host::spawn("order app", cmd)?);
        }
        Some(fulfilment) => {
            // Both apps must see one store, so a networked shape always has a Redis-backed one.
            let config = runtime_config.unwrap_or_else(|| root.join("runtime-config.redis.toml"));
            setup::networked_prerequisites(shape.name == "mqtt")?;
            // One `message_key` for both apps, new per run: the order app signs "order placed"
            // with it and the fulfilment app refuses what it did not sign. An environment
            // variable, not an argument that `ps` would show.
            let key = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            let networked = |manifest: &str| {
                let mut cmd = host(manifest, Some(&config));
                cmd.env("SPIN_VARIABLE_MESSAGE_KEY", &key);
                cmd
            };
            let fulfilment = networked(&fulfilment.manifest);
            children.push(Host::spawn("fulfilment app", fulfilment)?);
            children.push(Host::spawn("order app", networked(order))?);
        }
    }
    let order_app = &shape.name;
    eprintln!(
        "xtask: {order_app} shape running; the outbox is swept every {} s",
        SWEEP_EVERY.as_secs()
    );
    let mut next_sweep = std::time::Instant::now() + SWEEP_EVERY;
    let result = loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break Ok(());
        }
        if let Some(failed) = children.iter_mut().find_map(|c| c.supervise().err()) {
            break Err(failed);
        }
        if std::time::Instant::now() >= next_sweep {
            sweep(listen, &token);
            next_sweep = std::time::Instant::now() + SWEEP_EVERY;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    for child in &mut children {
        child.stop();
    }
    result
}

/// How often `cargo xtask up` asks the order app to re-announce orders stuck in `accepted`.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// A random sweep token (128 bits from the OS, in hex).
fn sweep_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the sweep token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `POST /sweep` on the order app; its answer is only logged when it is not a 200.
fn sweep(listen: &str, token: &str) {
    use std::io::{Read, Write};
    let request = format!(
        "POST /sweep HTTP/1.1\r\nHost: {listen}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let answer = std::net::TcpStream::connect(listen).and_then(|mut s| {
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        s.write_all(request.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    });
    match answer {
        Ok(a) if a.starts_with("HTTP/1.1 200") => {}
        Ok(a) => eprintln!("xtask: sweep answered {}", a.lines().next().unwrap_or("")),
        Err(e) => eprintln!("xtask: sweep failed: {e}"),
    }
}

/// A child nanohost of `up`: restarted when it stops by itself, stopped whatever ends `up`.
struct Host {
    what: &'static str,
    cmd: Command,
    child: Option<std::process::Child>,
    /// Set by the thread that copies its stderr once it says it serves.
    started: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// When the current run started; a run that lasts [`BACK_OFF_RESET`] resets the back-off.
    since: std::time::Instant,
    back_off: std::time::Duration,
    restart_at: Option<std::time::Instant>,
}

/// The first wait before a stopped host is started again, doubled at each stop in a row up to
/// [`BACK_OFF_MAX`] (Kubernetes: 10 s doubled up to 5 min, for a pod; `up` is for development,
/// and a broker restart should be recovered from in seconds).
const BACK_OFF_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
const BACK_OFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);
const BACK_OFF_RESET: std::time::Duration = std::time::Duration::from_secs(60);

impl Host {
    fn spawn(what: &'static str, cmd: Command) -> Result<Host> {
        let mut host = Host {
            what,
            cmd,
            child: None,
            started: Default::default(),
            since: std::time::Instant::now(),
            back_off: BACK_OFF_FIRST,
            restart_at: None,
        };
        host.start()?;
        Ok(host)
    }

    fn start(&mut self) -> Result<()> {
        use std::os::unix::process::CommandExt;
        // Its own process group: Ctrl-C in the terminal reaches `up`, which stops the hosts in
        // order, and a stop reaches whatever a host may have started.
        self.cmd
            .process_group(0)
            .stderr(std::process::Stdio::piped());
        #[cfg(target_os = "linux")]
        {
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: prctl, getppid and kill are async-signal-safe; nothing is allocated. `up`
            // starts every host from its main thread, the thread the kernel watches.
            unsafe {
                self.cmd.pre_exec(move || {
                    // `up` killed (SIGKILL: no handler runs) stops its hosts all the same.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::getppid() != parent {
                        libc::kill(libc::getpid(), libc::SIGTERM);
                    }
                    Ok(())
                });
            }
        }
        let mut child = self
            .cmd
            .spawn()
            .with_context(|| format!("cannot start the {}", self.what))?;
        let stderr = child.stderr.take().expect("piped");
        let started = self.started.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // What nanohost prints once its triggers listen.
                if line.starts_with("nanohost: serving on") || line.starts_with("nanohost: running")
                {
                    started.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                eprintln!("{line}");
            }
        });
        self.child = Some(child);
        self.since = std::time::Instant::now();
        Ok(())
    }

    /// Restarts the host when it has stopped and its back-off is over. Err when it stopped
    /// before it ever started: a configuration error that a restart would repeat.
    fn supervise(&mut self) -> Result<()> {
        let now = std::time::Instant::now();
        if let Some(at) = self.restart_at {
            if now >= at {
                self.restart_at = None;
                eprintln!("xtask: starting the {} again", self.what);
                self.start()?;
            }
            return Ok(());
        }
        let Some(child) = &mut self.child else {
            return Ok(());
        };
        let status = match child.try_wait() {
            Ok(None) => return Ok(()),
            Ok(Some(status)) => status,
            Err(e) => return Err(e.into()),
        };
        self.child = None;
        if !self.started.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("the {} stopped before it started ({status})", self.what);
        }
        if now.duration_since(self.since) >= BACK_OFF_RESET {
            self.back_off = BACK_OFF_FIRST;
        }
        eprintln!(
            "xtask: the {} stopped ({status}); starting it again in {} s",
            self.what,
            self.back_off.as_secs()
        );
        self.restart_at = Some(now + self.back_off);
        self.back_off = (self.back_off * 2).min(BACK_OFF_MAX);
        Ok(())
    }

    fn stop(&mut self) {
        self.restart_at = None;
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = child.id() as libc::pid_t;
        // SIGTERM to its group: nanohost finishes in-flight requests and exits.
        // SAFETY: kill(2) on the group our own child leads; no memory is touched.
        unsafe {
            libc::kill(-group, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // SAFETY: as above; whatever of the group is left.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A flag set by SIGINT or SIGTERM (ctrlc's `termination` feature covers both).
fn stop_requested() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let set = flag.clone();
    ctrlc::set_handler(move || set.store(true, std::sync::atomic::Ordering::Relaxed))
        .context("cannot install the Ctrl-C/SIGTERM handler")?;
    Ok(flag)
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    // `cargo xtask` (a `cargo run` alias) sets CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ... for xtask,
    // and ring's build script tracks them: passed on, a build from here and a plain `cargo build`
    // would rebuild each other's dependency graph (minutes in release mode).
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_for_xtask = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ]
        .iter()
        .any(|p| key.starts_with(p));
        if set_for_xtask {
            cmd.env_remove(key.as_ref());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::BenchArgs;

    fn args(line: &str) -> BenchArgs {
        BenchArgs {
            args: line.split_whitespace().map(String::from).collect(),
        }
    }

    #[test]
    fn a_run_has_every_phase_unless_phases_names_others() {
        let cases = [
            ("", "peers", true),
            ("--smoke", "tax", true),
            ("--phases ways", "ways", true),
            ("--phases ways", "peers", false),
            ("--phases=tax,ways --quick", "tax", true),
            ("--phases=tax,ways --quick", "peers", false),
            ("--quick --phases peers,open-loop", "peers", true),
        ];
        for (line, phase, runs) in cases {
            assert_eq!(args(line).runs_phase(phase), runs, "{line:?} runs {phase}");
        }
    }
}
