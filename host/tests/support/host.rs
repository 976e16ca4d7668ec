//! The app under test, on either host: nanohost (in this process, or its binary when
//! `NANOHOST_TEST_BINARY=1`) or real `spin up` as a child process. The test cases only see an
//! address and a log; which host serves is a parameter.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nanohost::{HostOptions, RunningHost};

/// Spin compiles every component on start; a cold wasmtime cache on a busy 2-core machine can
/// take tens of seconds. A healthy start needs a few.
const START_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostKind {
    Nanohost,
    /// Spin 3.6.3 with trigger-mqtt 0.7.2 (what containerd-shim-spin v0.24.0 runs).
    Spin,
    /// Spin 4.0.2 with trigger-mqtt 0.8.0 (the Spin 4 line of containerd-shim-spin v0.25).
    Spin4,
    /// Spin 4.1.0-pre0 (Spin main of August 2026, not a release) with trigger-mqtt 0.8.0.
    Spin41,
}

/// Why `host` cannot serve a WASIp3 component (`wasi:http/handler@0.3.0`, WASI 0.3.0 final: the
/// order app's p3 build, the reuse fixture), if it cannot: the one place that decides which hosts skip them.
/// Such a host refuses the component at start-up, saying [`WASIP3_REFUSAL`].
pub fn serves_wasip3(host: HostKind) -> Option<String> {
    let takes = match host {
        HostKind::Nanohost | HostKind::Spin41 => return None,
        HostKind::Spin => "Spin 3.6.3 takes WASI 0.3 release candidate 0.3.0-rc-2026-01-06",
        HostKind::Spin4 => "Spin 4.0.2 takes WASI 0.3 release candidate 0.3.0-rc-2026-03-15",
    };
    Some(format!(
        "{takes}, not 0.3.0: it refuses the component at start-up (order_app's \
         p3_is_refused_at_start asserts it)"
    ))
}

/// What Spin 3.6.3 and 4.0.2 say when they refuse a WASI 0.3.0 component at start-up: their
/// linkers hold `wasi:http` only at their own release candidate.
pub const WASIP3_REFUSAL: &str = "component imports instance `wasi:http/types@0.3.0`, but a \
                                  matching implementation was not found in the linker";

/// Where a real Spin comes from and which MQTT trigger plugin it runs with.
struct SpinRelease {
    version: &'static str,
    /// The variable that names its binary.
    env: &'static str,
    /// Whether a `spin` on `PATH` is taken for it: only for 3.6.3, the Spin the project targets;
    /// a `spin` on PATH is not known to be a 4.x.
    on_path: bool,
    /// Its wrapper under `../shared/tools`.
    shared: &'static str,
    /// The installer of its trigger-mqtt plugin under `../shared/tools` (4.1.0-pre0 has none of
    /// its own: it runs Spin 4's plugin, 0.8.0).
    installer: &'static str,
}

const SPIN_3_6_3: SpinRelease = SpinRelease {
    version: "3.6.3",
    env: "SPIN_BIN",
    on_path: true,
    shared: "spin/spin",
    installer: "spin/install-trigger-mqtt",
};
const SPIN_4_0_2: SpinRelease = SpinRelease {
    version: "4.0.2",
    env: "SPIN4_BIN",
    on_path: false,
    shared: "spin4/spin",
    installer: "spin4/install-trigger-mqtt",
};
const SPIN_4_1_0_PRE0: SpinRelease = SpinRelease {
    version: "4.1.0-pre0",
    env: "SPIN41_BIN",
    on_path: false,
    shared: "spin41/spin",
    installer: "spin4/install-trigger-mqtt",
};

impl HostKind {
    pub const ALL: [HostKind; 4] = [
        HostKind::Nanohost,
        HostKind::Spin,
        HostKind::Spin4,
        HostKind::Spin41,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HostKind::Nanohost => "nanohost",
            HostKind::Spin => "spin",
            HostKind::Spin4 => "spin4",
            HostKind::Spin41 => "spin41",
        }
    }

    /// Any real Spin, whichever version.
    pub fn is_spin(self) -> bool {
        self.release().is_some()
    }

    fn release(self) -> Option<&'static SpinRelease> {
        match self {
            HostKind::Nanohost => None,
            HostKind::Spin => Some(&SPIN_3_6_3),
            HostKind::Spin4 => Some(&SPIN_4_0_2),
            HostKind::Spin41 => Some(&SPIN_4_1_0_PRE0),
        }
    }

    /// Why this host cannot run here, if it cannot.
    pub fn unavailable(self) -> Option<String> {
        let release = self.release()?;
        self.spin_binary()
            .err()
            .map(|why| format!("no Spin {} binary: {why}", release.version))
    }

    /// This Spin's binary: its variable (`SPIN_BIN`, `SPIN4_BIN`, `SPIN41_BIN`), else (3.6.3
    /// only) `spin` on `PATH`, else its wrapper under `../shared/tools` next to the workspace.
    /// Err says where it looked.
    pub fn spin_binary(self) -> Result<PathBuf, String> {
        static FOUND: [OnceLock<Result<PathBuf, String>>; 4] = [const { OnceLock::new() }; 4];
        let Some(release) = self.release() else {
            return Err("nanohost is not a Spin".to_string());
        };
        FOUND[self as usize]
            .get_or_init(|| find_spin(release))
            .clone()
    }

    /// This Spin's data dir for the tests (plugins live there), one per Spin since their
    /// trigger-mqtt installers replace each other's plugin, and none the user's
    /// `~/.local/share/spin`.
    pub fn spin_data_dir(self) -> PathBuf {
        let dir = super::target_dir().join(format!("host-tests/{}-data", self.name()));
        std::fs::create_dir_all(&dir).expect("create Spin's data dir");
        dir
    }

    /// Installs this Spin's MQTT trigger plugin (3.6.3: spin-trigger-mqtt v0.7.2, the one
    /// containerd-shim-spin v0.24.0 embeds; 4.x: trigger-mqtt 0.8.0) into its data dir, once. Err
    /// says why the MQTT cases cannot run on this Spin.
    pub fn mqtt_trigger_plugin(self) -> Result<(), String> {
        static INSTALLED: [OnceLock<Result<(), String>>; 4] = [const { OnceLock::new() }; 4];
        let Some(release) = self.release() else {
            return Ok(());
        };
        INSTALLED[self as usize]
            .get_or_init(|| {
                let data = self.spin_data_dir();
                if data.join("plugins/trigger-mqtt").is_dir() {
                    return Ok(());
                }
                let script = shared_tools().join(release.installer);
                if !script.is_file() {
                    return Err(format!(
                        "no trigger-mqtt plugin in {} and no {} to install it",
                        data.display(),
                        script.display()
                    ));
                }
                let out = Command::new("bash")
                    .arg(&script)
                    .env("SPIN_DATA_DIR", &data)
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} failed: {}",
                        script.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            })
            .clone()
    }
}

fn shared_tools() -> PathBuf {
    super::workspace_root().join("../shared/tools")
}

fn find_spin(release: &SpinRelease) -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os(release.env).filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("{}={} is not a file", release.env, bin.display()))
        };
    }
    if release.on_path {
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let candidate = dir.join("spin");
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
    }
    let shared = shared_tools().join(release.shared);
    if shared.is_file() {
        return Ok(shared);
    }
    Err(format!(
        "{} is unset, {}no {}",
        release.env,
        if release.on_path {
            "no `spin` on PATH, "
        } else {
            ""
        },
        shared.display()
    ))
}

/// What to run: a manifest (copied into the app's folder before the start, so that the hosts'
/// state such as Spin's `.spin/sqlite_key_value.db` lands there and not in the repository), an
/// optional runtime config, and variables (`--variable`).
#[derive(Clone, Debug)]
pub struct AppSpec {
    pub manifest: PathBuf,
    pub runtime_config: Option<PathBuf>,
    pub variables: Vec<(String, String)>,
    /// Run nanohost as its binary (`nanohost up`, state in `.spin` next to the manifest, as
    /// `spin up` keeps it) even when the tests run it in process otherwise.
    pub nanohost_binary: bool,
    /// Environment of a host run as a process (Spin's `SPIN_WASMTIME_*` pool sizes, as a deploy
    /// sets them).
    pub env: Vec<(String, String)>,
    /// More arguments of `spin up` / `nanohost up` (both take them: the reuse flags); nanohost
    /// then runs as its binary, so the flags are read as a user's would be.
    pub args: Vec<String>,
    /// Run only these components (`spin up -c`, nanohost `--component-id`); empty: all.
    pub components: Vec<String>,
}

impl AppSpec {
    pub fn new(manifest: impl Into<PathBuf>) -> AppSpec {
        AppSpec {
            manifest: manifest.into(),
            runtime_config: None,
            variables: Vec::new(),
            nanohost_binary: false,
            env: Vec::new(),
            args: Vec::new(),
            components: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> AppSpec {
        self.args.push(arg.into());
        self
    }

    pub fn component(mut self, id: &str) -> AppSpec {
        self.components.push(id.to_string());
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> AppSpec {
        self.env.push((name.to_string(), value.into()));
        self
    }

    pub fn nanohost_binary(mut self) -> AppSpec {
        self.nanohost_binary = true;
        self
    }

    pub fn runtime_config(mut self, path: Option<PathBuf>) -> AppSpec {
        self.runtime_config = path;
        self
    }

    pub fn variable(mut self, name: &str, value: impl Into<String>) -> AppSpec {
        self.variables.push((name.to_string(), value.into()));
        self
    }
}

/// The folder an app runs in: its manifest copy, its state (`.spin/`), its host's log. Kept
/// across a restart when the test wants the state to survive.
pub struct AppDir {
    pub path: PathBuf,
}

impl AppDir {
    pub fn new(label: &str) -> AppDir {
        let path = super::harness::run_dir().join(label);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the app's folder");
        AppDir { path }
    }
}

/// The manifest with every relative `source = "..."` made absolute, written into `dir`.
fn stage_manifest(manifest: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(manifest)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let base = manifest.parent().expect("a manifest has a folder");
    let staged: Vec<String> = text
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match trimmed
                .strip_prefix("source = \"")
                .and_then(|rest| rest.strip_suffix('"'))
            {
                Some(source) if !Path::new(source).is_absolute() => {
                    let absolute = base.join(source);
                    let absolute = absolute.canonicalize().unwrap_or_else(|e| {
                        panic!(
                            "{} (source of {}): {e}; run `cargo xtask build` first",
                            absolute.display(),
                            manifest.display()
                        )
                    });
                    format!("source = \"{}\"", absolute.display())
                }
                _ => absolute_dependency_path(line, base),
            }
        })
        .collect();
    let path = dir.join("spin.toml");
    std::fs::write(&path, staged.join("\n") + "\n").expect("write the staged manifest");
    path
}

/// A dependency's `{ path = "..." }` (relative to the manifest) made absolute, as `source` is.
fn absolute_dependency_path(line: &str, base: &Path) -> String {
    const KEY: &str = "{ path = \"";
    let Some(start) = line.find(KEY).map(|i| i + KEY.len()) else {
        return line.to_string();
    };
    let Some(len) = line[start..].find('"') else {
        return line.to_string();
    };
    let path = &line[start..start + len];
    if Path::new(path).is_absolute() {
        return line.to_string();
    }
    let absolute = base
        .join(path)
        .canonicalize()
        .unwrap_or_else(|e| panic!("{path} (a dependency): {e}; run `cargo xtask build` first"));
    format!(
        "{}{}{}",
        &line[..start],
        absolute.display(),
        &line[start + len..]
    )
}

/// Logs of the apps alive now, printed when a case fails.
static LIVE_LOGS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

pub fn live_logs() -> Vec<(String, PathBuf)> {
    LIVE_LOGS.lock().unwrap().clone()
}

enum Running {
    InProcess(Option<RunningHost>),
    Process(Child),
}

/// An app being served. Dropping it stops it: a child host is terminated and reaped.
pub struct App {
    pub kind: HostKind,
    pub label: String,
    /// The HTTP address, when the app has HTTP triggers.
    pub addr: Option<SocketAddr>,
    pub log: Option<PathBuf>,
    running: Running,
}

impl App {
    /// Starts `spec` on `kind` in `dir`. Returns once the HTTP listener accepts connections (for
    /// an app without HTTP triggers: once the host runs; wait for its subscription with
    /// [`App::wait_for`]).
    // The host's options grow (the lead adds some); the tests take the defaults for the rest.
    #[allow(clippy::needless_update)]
    pub async fn start(kind: HostKind, spec: &AppSpec, dir: &AppDir) -> App {
        let label = dir.path.file_name().unwrap().to_string_lossy().into_owned();
        let manifest = stage_manifest(&spec.manifest, &dir.path);
        let has_http = std::fs::read_to_string(&manifest)
            .unwrap()
            .contains("[[trigger.http]]");
        let in_process = kind == HostKind::Nanohost
            && !spec.nanohost_binary
            && spec.args.is_empty()
            && std::env::var("NANOHOST_TEST_BINARY").as_deref() != Ok("1");
        if in_process {
            let host = RunningHost::start(HostOptions {
                manifest,
                runtime_config: spec.runtime_config.clone(),
                listen: "127.0.0.1:0".parse().unwrap(),
                variables: spec.variables.clone(),
                // Where `spin up` keeps it: the default store's file survives a restart in `dir`.
                state_dir: nanohost::StateDir::Path(dir.path.join(".spin")),
                components: spec.components.clone(),
                ..HostOptions::default()
            })
            .await
            .unwrap_or_else(|e| panic!("nanohost cannot start {label}: {e:#}"));
            return App {
                kind,
                label,
                addr: host.http_addr(),
                log: None,
                running: Running::InProcess(Some(host)),
            };
        }

        let (mut app, port) = App::launch(kind, spec, dir, &manifest, label, has_http);
        if has_http {
            app.wait_for("its HTTP listener", || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            })
            .await;
        }
        app
    }

    /// Starts `spec` on `kind` (nanohost as its binary) and expects the start to be refused:
    /// the host's exit status and everything it wrote. Panics, with its log, if it still runs
    /// after `within`.
    pub async fn start_refused(
        kind: HostKind,
        spec: &AppSpec,
        dir: &AppDir,
        within: Duration,
    ) -> (std::process::ExitStatus, String) {
        let label = dir.path.file_name().unwrap().to_string_lossy().into_owned();
        let manifest = stage_manifest(&spec.manifest, &dir.path);
        let (mut app, _) = App::launch(kind, spec, dir, &manifest, label, true);
        match app.exit_within(within).await {
            Some(status) => {
                let said = std::fs::read_to_string(app.log.as_ref().unwrap()).unwrap();
                (status, said)
            }
            None => panic!(
                "{} still runs {within:?} after a start it should refuse:\n{}",
                kind.name(),
                app.log_tail(30)
            ),
        }
    }

    /// A WASIp3 build on a Spin that takes only a release candidate of WASI 0.3 (3.6.3, 4.0.2):
    /// the start must be refused, naming the WASI 0.3.0 interface the linker lacks, within two
    /// minutes; a host that started it fails the case (`start_refused` panics while it runs).
    pub async fn assert_wasip3_refused(kind: HostKind, spec: &AppSpec, dir: &AppDir) {
        let (status, log) = App::start_refused(kind, spec, dir, Duration::from_secs(120)).await;
        assert!(
            !status.success(),
            "{} exited with {status}:\n{log}",
            kind.name()
        );
        assert!(
            log.contains(WASIP3_REFUSAL),
            "{} refused without naming wasi:http/types@0.3.0:\n{log}",
            kind.name()
        );
    }

    /// Spawns the host as a process, in its own process group; does not wait for it.
    fn launch(
        kind: HostKind,
        spec: &AppSpec,
        dir: &AppDir,
        manifest: &Path,
        label: String,
        has_http: bool,
    ) -> (App, u16) {
        let port = super::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = match kind {
            HostKind::Spin | HostKind::Spin4 | HostKind::Spin41 => {
                let mut cmd = Command::new(kind.spin_binary().expect("a Spin binary"));
                cmd.arg("up").arg("--from").arg(manifest);
                cmd.arg("--state-dir").arg(dir.path.join(".spin"));
                if has_http {
                    cmd.args(["--listen", &listen]);
                }
                if let Some(config) = &spec.runtime_config {
                    cmd.arg("--runtime-config-file").arg(config);
                }
                // Spin reads these from the environment too; the test's arguments must win.
                for name in [
                    "RUNTIME_CONFIG_FILE",
                    "SPIN_HTTP_LISTEN_ADDR",
                    "SPIN_LOG_DIR",
                    "SPIN_ALWAYS_BUILD",
                ] {
                    cmd.env_remove(name);
                }
                cmd.env("SPIN_DATA_DIR", kind.spin_data_dir());
                cmd
            }
            HostKind::Nanohost => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_nanohost"));
                cmd.arg("up").arg("--manifest").arg(manifest);
                cmd.args(["--listen", &listen]);
                if let Some(config) = &spec.runtime_config {
                    cmd.arg("--runtime-config").arg(config);
                }
                cmd
            }
        };
        for (name, value) in &spec.variables {
            cmd.arg("--variable").arg(format!("{name}={value}"));
        }
        cmd.args(&spec.args);
        for id in &spec.components {
            cmd.arg("--component-id").arg(id);
        }
        cmd.envs(spec.env.iter().map(|(n, v)| (n, v)));
        let log = dir.path.join(format!("{}.log", kind.name()));
        let out = File::create(&log).expect("create the host's log");
        let err = out.try_clone().unwrap();
        // Its own process group: `spin up` runs its triggers (`spin trigger http`, the MQTT
        // plugin) as child processes, and stopping the group stops them too. SIGTERM if the
        // tests die: `spin up` then stops its triggers.
        cmd.current_dir(&dir.path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child =
            test_brokers::process::spawn(cmd, test_brokers::process::OnParentDeath::Terminate)
                .unwrap_or_else(|e| panic!("cannot start {kind:?} for {label}: {e}"));
        LIVE_LOGS
            .lock()
            .unwrap()
            .push((format!("{} {label}", kind.name()), log.clone()));
        let app = App {
            kind,
            label,
            addr: has_http.then(|| listen.parse().unwrap()),
            log: Some(log),
            running: Running::Process(child),
        };
        (app, port)
    }

    /// The process group of a child host (its process id: it leads the group).
    pub fn process_group(&self) -> Option<u32> {
        match &self.running {
            Running::Process(child) => Some(child.id()),
            Running::InProcess(_) => None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the app has HTTP triggers")
    }

    /// The host, when it is nanohost in this process.
    pub fn in_process(&self) -> Option<&RunningHost> {
        match &self.running {
            Running::InProcess(host) => host.as_ref(),
            Running::Process(_) => None,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Polls `ready` until it holds; panics with the host's log if the host exits or the start
    /// deadline passes.
    pub async fn wait_for(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if ready() {
                return;
            }
            if let Running::Process(child) = &mut self.running {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} serving {} exited with {status} before {what} was ready:\n{}",
                        self.kind.name(),
                        self.label,
                        self.log_tail(40)
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} serving {}: {what} not ready after {START_DEADLINE:?}:\n{}",
                self.kind.name(),
                self.label,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits up to `limit` for a child host to end by itself: its exit status, or None while it
    /// still runs.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let Running::Process(child) = &mut self.running else {
            panic!(
                "{} runs in process: start it with AppSpec::nanohost_binary",
                self.label
            );
        };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("ask the host for its exit status") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The last `lines` lines of the host's log (a child host only).
    pub fn log_tail(&self, lines: usize) -> String {
        match &self.log {
            Some(path) => tail(path, lines),
            None => "(nanohost in process: no separate log)".to_string(),
        }
    }

    /// Stops the host as Ctrl-C would and waits for it.
    pub async fn stop(mut self) {
        match &mut self.running {
            Running::InProcess(host) => {
                if let Some(host) = host.take() {
                    host.shutdown().await.unwrap();
                }
            }
            Running::Process(_) => self.terminate(),
        }
    }

    /// Kills the host as a crash would: SIGKILL to its whole process group, no time to clean up.
    /// Panics if it runs in this process (nothing to kill).
    pub async fn kill(mut self) {
        let group = self
            .process_group()
            .expect("the host runs as its own process, so that it can be killed");
        let killed = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .status()
            .unwrap();
        assert!(killed.success());
        self.terminate();
    }

    fn terminate(&mut self) {
        let Running::Process(child) = &mut self.running else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let group = format!("-{}", child.id());
        let _ = Command::new("kill")
            .args(["-INT", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.terminate();
        if let Some(log) = &self.log {
            LIVE_LOGS.lock().unwrap().retain(|(_, path)| path != log);
        }
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    format!("--- {} ---\n{}", path.display(), all[from..].join("\n"))
}
