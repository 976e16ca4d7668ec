//! Wac ahead of time against Spin's own composition (issue 21, item 2): the order app linked
//! three ways, each started and driven on nanohost and on every real Spin found.
//!
//! - **wac ahead of time**: the root `spin.toml`, one component (`order-app.wasm`) that
//!   `cargo xtask build` composed with wac.
//! - **Spin dependencies, inheriting configuration**: `apps/order-app-deps/spin.toml`, the gateway
//!   with its business side as `[component.order-gateway.dependencies]`, linked by the host at
//!   every start (Spin: wac-graph in `crates/compose`; nanohost: `host/src/dependencies.rs`), with
//!   `dependencies_inherit_configuration = true`.
//! - **Spin dependencies, deny-all adapter**: the same manifest without that switch, written
//!   beside the report: Spin then wraps the dependency in its deny-all adapter (one more
//!   composition per dependency). Spin 3.6.3 serves it but cannot read an order back; Spin 4.x
//!   and nanohost refuse to start it (docs/spin-dependencies.md). A refusal is a skipped run
//!   with the host's own words.
//!
//! Per way and host: start-up (process spawn to the first `202` of `POST /order`, polled every
//! 2 ms; a warm-up start first, then the median of the timed starts), whether a placed order can
//! be read back, and per-request cost with the peers phase's client (one keep-alive connection,
//! then a closed loop). Per way, in process on nanohost's engine: the load-time link, the
//! compilation, and per instance the instantiation and a first `POST /order` (the tax phase's
//! measurement). And the bytes each way loads.
//!
//! The report section is rendered from `results.json` by bench/templates/ways.md.j2.

use std::net::SocketAddr;
use std::path::{Component as PathPart, Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::client::Conn;
use crate::load::{summarize, Summary};
use crate::monolith::{median, one, prepare_binary, Prepared, Samples};
use crate::peers::{self, PeerRun, PeerSettings, Tools, Work};
use crate::procs;
use nanohost::ComponentFiles;

const WAC_MANIFEST: &str = "spin.toml";
const DEPENDENCIES_MANIFEST: &str = "apps/order-app-deps/spin.toml";

/// One way of linking the order app: a manifest and the component that serves `/order`.
#[derive(Debug, Clone, Copy)]
pub struct Way {
    pub id: &'static str,
    pub title: &'static str,
    /// Relative to the workspace root.
    pub manifest: &'static str,
    pub component: &'static str,
    /// `dependencies_inherit_configuration` of `component`; `None` when it has no dependencies.
    /// A value other than the manifest's own gives a copy of it with that value.
    pub inherit_configuration: Option<bool>,
}

pub const WAYS: [Way; 3] = [
    Way {
        id: "wac",
        title: "wac ahead of time",
        manifest: WAC_MANIFEST,
        component: "order-app",
        inherit_configuration: None,
    },
    Way {
        id: "dependencies",
        title: "Spin dependencies, inheriting configuration",
        manifest: DEPENDENCIES_MANIFEST,
        component: "order-gateway",
        inherit_configuration: Some(true),
    },
    Way {
        id: "dependencies-deny-all",
        title: "Spin dependencies, deny-all adapter",
        manifest: DEPENDENCIES_MANIFEST,
        component: "order-gateway",
        inherit_configuration: Some(false),
    },
];

#[derive(Debug, Clone, Serialize)]
pub struct WaysSettings {
    /// Timed starts per way and host, after `warm_up_starts` untimed ones (Spin caches compiled
    /// components between starts; the warm-up fills that cache).
    pub starts: u64,
    pub warm_up_starts: u64,
    /// A start that has not answered `202` by then failed.
    pub start_deadline_s: u64,
    /// In process: load-time links and compilations timed per way, and instances.
    pub compilations: u64,
    pub instances: u64,
    pub per_request: PeerSettings,
}

impl WaysSettings {
    pub fn new(mode: &str) -> WaysSettings {
        let (starts, warm_up_starts, compilations, instances) = match mode {
            "smoke" => (1, 0, 1, 4),
            "quick" => (3, 1, 3, 300),
            _ => (7, 1, 5, 2000),
        };
        WaysSettings {
            starts,
            warm_up_starts,
            start_deadline_s: 120,
            compilations,
            instances,
            per_request: PeerSettings::new(mode),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadedFile {
    pub path: String,
    pub bytes: u64,
}

/// What the host reads from disk to serve `/order`: the component's source and each dependency.
#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    pub files: Vec<LoadedFile>,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostRun {
    /// `nanohost`, `spin`, `spin 4.0`, `spin 4.1`.
    pub host: String,
    pub version: String,
    pub command: String,
    /// Spawn to the first `202`, ms, every start in order (the warm-ups first).
    pub starts_ms: Vec<f64>,
    /// Median of the timed starts.
    pub startup_ms: Option<f64>,
    /// The status of `GET /order/<id>` right after that order's `202`.
    pub read_back_status: Option<u16>,
    pub per_request: Option<PeerRun>,
    pub skipped: Option<String>,
}

/// The way in process on nanohost's engine (pooling allocator), one instance at a time.
#[derive(Debug, Clone, Serialize)]
pub struct InProcessWay {
    /// nanohost linking the dependencies at load (`dependencies::compose`), median, ms; `None`
    /// for a component composed ahead of time.
    pub link_ms: Option<f64>,
    /// The component compiled: the file, or what the link produced.
    pub compiled_component_bytes: u64,
    /// Engine, linker, compilation and pre-instantiation, median, ms.
    pub compile_ms: f64,
    pub instances: u64,
    /// New store + instantiation.
    pub instantiate: Summary,
    /// The first `POST /order` on the new instance, and the same again.
    pub first_request: Summary,
    pub second_request: Summary,
    pub core_instances: u64,
    pub memories: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WayResult {
    pub id: String,
    pub title: String,
    /// The manifest used, relative to the workspace where it is in it.
    pub manifest: String,
    pub component: String,
    pub inherit_configuration: Option<bool>,
    pub artifact: Artifact,
    pub hosts: Vec<HostRun>,
    pub in_process: Option<InProcessWay>,
    pub in_process_skipped: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ways {
    pub settings: WaysSettings,
    pub ways: Vec<WayResult>,
}

// ---- Manifests and artifacts ----

/// `path` with `.` and `..` resolved without the file system (the files may not be built).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            PathPart::CurDir => {}
            PathPart::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The files a host reads for `component`: its source, then its dependencies in name order.
pub fn loaded_files(manifest: &Path, component: &str) -> Result<Vec<PathBuf>> {
    let files = ComponentFiles::of(manifest, component)?;
    Ok(std::iter::once(files.source)
        .chain(files.dependencies)
        .map(|p| lexical(&p))
        .collect())
}

pub fn artifact(root: &Path, manifest: &Path, component: &str) -> Result<Artifact> {
    let files = loaded_files(manifest, component)?
        .into_iter()
        .map(|p| {
            let bytes = std::fs::metadata(&p)
                .with_context(|| format!("{} is not built", p.display()))?
                .len();
            let path = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            anyhow::Ok(LoadedFile { path, bytes })
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = files.iter().map(|f| f.bytes).sum();
    Ok(Artifact { files, bytes })
}

/// `manifest`'s text with `component`'s `dependencies_inherit_configuration` set to `inherit`
/// (left out when false, Spin's default) and every source and dependency path made absolute, so
/// that the copy can live anywhere.
pub fn with_inherit_configuration(
    manifest: &Path,
    component: &str,
    inherit: bool,
) -> Result<String> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let mut doc: toml::Table = toml::from_str(&text)?;
    let dir = std::path::absolute(manifest.parent().unwrap_or(Path::new(".")))?;
    let absolute = |v: &mut toml::Value| {
        if let Some(p) = v.as_str() {
            *v = toml::Value::String(lexical(&dir.join(p)).display().to_string());
        }
    };
    let components = doc
        .get_mut("component")
        .and_then(toml::Value::as_table_mut)
        .context("no [component] tables")?;
    for (_, c) in components.iter_mut() {
        let Some(c) = c.as_table_mut() else { continue };
        if let Some(source) = c.get_mut("source") {
            absolute(source);
        }
        let dependencies = c
            .get_mut("dependencies")
            .and_then(toml::Value::as_table_mut);
        for (_, d) in dependencies.into_iter().flat_map(|d| d.iter_mut()) {
            if let Some(path) = d.get_mut("path") {
                absolute(path);
            }
        }
    }
    let c = components
        .get_mut(component)
        .and_then(toml::Value::as_table_mut)
        .with_context(|| format!("{} has no component {component:?}", manifest.display()))?;
    const SWITCH: &str = "dependencies_inherit_configuration";
    if inherit {
        c.insert(SWITCH.into(), toml::Value::Boolean(true));
    } else {
        c.remove(SWITCH);
    }
    Ok(toml::to_string(&doc)?)
}

/// The manifest `way` runs: its own, or a copy under `out` with the switch it asks for.
pub fn manifest_for(way: &Way, root: &Path, out: &Path) -> Result<PathBuf> {
    let own = root.join(way.manifest);
    let Some(inherit) = way.inherit_configuration else {
        return Ok(own);
    };
    if ComponentFiles::of(&own, way.component)?.inherit_configuration == inherit {
        return Ok(own);
    }
    let dir = out.join("ways").join(way.id);
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join("spin.toml");
    let header = format!(
        "# {} with `dependencies_inherit_configuration = {inherit}` for {:?}, written by the \
         benchmark's `ways` phase.\n",
        way.manifest, way.component
    );
    let text = with_inherit_configuration(&own, way.component, inherit)?;
    std::fs::write(&copy, header + text.as_str())?;
    Ok(copy)
}

// ---- Start-up and per request, over HTTP ----

/// A host serving the app, stopped when dropped.
enum Server {
    Nanohost(procs::Harness),
    Spin(procs::Guard),
}

/// The last lines a refused host wrote (an error's innermost causes): its reason, in its own
/// words.
fn last_words(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .rev()
        .take(3)
        .collect();
    lines.reverse();
    let words = lines.join(" / ");
    match words.as_str() {
        "" => "(nothing in its log)".into(),
        _ => words.chars().take(400).collect(),
    }
}

/// Polls `POST /order` every 2 ms until a `202`; an error when `child` exits or at `deadline`.
fn first_answer(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    mut child: Option<&mut Child>,
    deadline: Duration,
) -> Result<()> {
    let until = Instant::now() + deadline;
    loop {
        let tried = rt.block_on(async {
            let mut conn = Conn::open(addr).await?;
            conn.place("first answer").await
        });
        let Err(e) = tried else { return Ok(()) };
        if let Some(status) = child.as_mut().map(|c| c.try_wait()).transpose()?.flatten() {
            bail!("exited with {status}");
        }
        if Instant::now() > until {
            bail!("no 202 within {deadline:?}: {e:#}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A placed order read back: the status of its `GET`.
fn read_back(rt: &tokio::runtime::Runtime, addr: SocketAddr) -> Result<u16> {
    rt.block_on(async {
        let mut conn = Conn::open(addr).await?;
        let id = conn.place("read back").await?;
        conn.get(&format!("/order/{id}")).await
    })
}

struct Target<'a> {
    host: &'static str,
    /// `None`: nanohost, in the harness process (`nano-bench host`, the code `nanohost up` runs).
    spin: Option<&'a Result<PathBuf, String>>,
}

struct Setup<'a> {
    root: &'a Path,
    out: &'a Path,
    rt: &'a tokio::runtime::Runtime,
    s: &'a WaysSettings,
    nanohost_config: PathBuf,
    spin_config: PathBuf,
}

/// Starts `manifest` on `target`, timed from the spawn to the first `202`.
fn start(
    cx: &Setup,
    target: &Target,
    way: &Way,
    manifest: &Path,
) -> Result<(Server, SocketAddr, f64, String)> {
    let port = procs::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tag = format!("{}-{}", way.id, target.host.replace(' ', ""));
    let log = cx.out.join(format!("ways-{tag}.log"));
    let deadline = Duration::from_secs(cx.s.start_deadline_s);
    let t = Instant::now();
    match target.spin {
        None => {
            let h = procs::Harness::start(
                &[(manifest.to_path_buf(), Some(port))],
                Some(&cx.nanohost_config),
                &[],
                &log,
                cx.root,
            )
            .map_err(|e| anyhow::anyhow!("{e:#}: {}", last_words(&log)))?;
            first_answer(cx.rt, addr, None, deadline)?;
            let took = t.elapsed().as_secs_f64() * 1000.0;
            let line = format!("nanohost up --manifest {}", short(cx.root, manifest));
            Ok((Server::Nanohost(h), addr, took, line))
        }
        Some(bin) => {
            let bin = bin.as_ref().map_err(|why| anyhow::anyhow!("{why}"))?;
            let state = cx.out.join(format!("ways-{tag}-state"));
            let cmd = peers::spin_up(bin, manifest, port, &cx.spin_config, &state);
            let line = peers::describe(&cmd, cx.root);
            let mut guard = procs::spawn_server(cmd, target.host, &log)?;
            first_answer(cx.rt, addr, Some(&mut guard.child), deadline)
                .map_err(|e| anyhow::anyhow!("{e:#}: {}", last_words(&log)))?;
            let took = t.elapsed().as_secs_f64() * 1000.0;
            Ok((Server::Spin(guard), addr, took, line))
        }
    }
}

fn short(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Warm-up and timed starts; the last start is read back and driven.
fn on_host(cx: &Setup, target: &Target, way: &Way, manifest: &Path) -> HostRun {
    let version = target.spin.map_or_else(
        || "this build (nano-bench host)".to_string(),
        peers::version_of,
    );
    let mut run = HostRun {
        host: target.host.into(),
        version,
        command: String::new(),
        starts_ms: Vec::new(),
        startup_ms: None,
        read_back_status: None,
        per_request: None,
        skipped: None,
    };
    let total = cx.s.warm_up_starts + cx.s.starts;
    for i in 0..total {
        let (server, addr, took, line) = match start(cx, target, way, manifest) {
            Ok(started) => started,
            Err(e) => {
                run.skipped = Some(format!("did not start: {e:#}"));
                return run;
            }
        };
        run.starts_ms.push(took);
        run.command = line;
        if i + 1 == total {
            run.read_back_status = read_back(cx.rt, addr).ok();
            run.per_request = Some(peers::drive(
                cx.rt,
                target.host,
                way.title,
                run.command.clone(),
                addr,
                Work::Place,
                &cx.s.per_request,
            ));
        }
        match server {
            Server::Nanohost(h) => h.stop(),
            Server::Spin(guard) => drop(guard),
        }
    }
    let timed = &run.starts_ms[cx.s.warm_up_starts as usize..];
    run.startup_ms = Some(median(timed));
    run
}

// ---- In process ----

/// The component nanohost compiles for `way`, as its loader makes it, and the link's time.
fn load(manifest: &Path, component: &str) -> Result<(Vec<u8>, Option<Duration>)> {
    let files = ComponentFiles::of(manifest, component)?;
    if files.dependencies.is_empty() {
        return Ok((std::fs::read(&files.source)?, None));
    }
    // What is timed is what a start does: read the files and link them.
    let t = Instant::now();
    let bytes = nanohost::link_at_load(manifest, component)?;
    Ok((bytes, Some(t.elapsed())))
}

struct Loadable {
    prepared: Prepared,
    samples: Samples,
    link_ms: Option<f64>,
    compile_ms: f64,
    bytes: u64,
}

fn loadable(manifest: &Path, component: &str, times: u64) -> Result<Loadable> {
    let (mut links, mut compiles) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..times.max(1) {
        let (bytes, link) = load(manifest, component)?;
        links.extend(link.map(|d| d.as_secs_f64() * 1000.0));
        let t = Instant::now();
        let prepared = prepare_binary(&bytes)?;
        compiles.push(t.elapsed().as_secs_f64() * 1000.0);
        last = Some((prepared, bytes.len() as u64));
    }
    let (prepared, bytes) = last.expect("at least one");
    Ok(Loadable {
        prepared,
        samples: Samples::new(),
        link_ms: (!links.is_empty()).then(|| median(&links)),
        compile_ms: median(&compiles),
        bytes,
    })
}

/// Every way nanohost loads, instance after instance in turn, so drift hits them alike.
fn in_process(
    rt: &tokio::runtime::Runtime,
    manifests: &[PathBuf],
    s: &WaysSettings,
) -> Vec<Result<InProcessWay, String>> {
    let mut loaded: Vec<Result<Loadable, String>> = WAYS
        .iter()
        .zip(manifests)
        .map(|(w, m)| loadable(m, w.component, s.compilations).map_err(|e| format!("{e:#}")))
        .collect();
    let warm = s.instances / 10;
    for i in 0..s.instances + warm {
        for l in loaded.iter_mut() {
            let Ok(w) = l else { continue };
            if let Err(e) = rt.block_on(one(&w.prepared, &mut w.samples)) {
                *l = Err(format!("instance {i}: {e:#}"));
                continue;
            }
            if i + 1 == warm {
                w.samples = Samples::new();
            }
        }
    }
    loaded
        .into_iter()
        .map(|l| {
            l.map(|w| InProcessWay {
                link_ms: w.link_ms,
                compiled_component_bytes: w.bytes,
                compile_ms: w.compile_ms,
                instances: w.samples.instantiate.len(),
                instantiate: summarize(&w.samples.instantiate),
                first_request: summarize(&w.samples.handle),
                second_request: summarize(&w.samples.handle_again),
                core_instances: w.samples.pool[0],
                memories: w.samples.pool[2],
            })
        })
        .collect()
}

pub fn run(
    root: &Path,
    out: &Path,
    mode: &str,
    tools: &Tools,
    rt: &tokio::runtime::Runtime,
    say: &dyn Fn(String),
) -> Result<Ways> {
    let s = WaysSettings::new(mode);
    let manifests = WAYS
        .iter()
        .map(|w| manifest_for(w, root, out))
        .collect::<Result<Vec<_>>>()?;
    let cx = Setup {
        root,
        out,
        rt,
        s: &s,
        nanohost_config: crate::peers::memory_config(out, "nanohost")?,
        spin_config: crate::peers::memory_config(out, "spin")?,
    };
    let targets = [
        Target {
            host: "nanohost",
            spin: None,
        },
        Target {
            host: "spin",
            spin: Some(&tools.spin),
        },
        Target {
            host: "spin 4.0",
            spin: Some(&tools.spin4),
        },
        Target {
            host: "spin 4.1",
            spin: Some(&tools.spin41),
        },
    ];
    // Host after host, the ways back to back on each: the figures compared (one host, two
    // ways) are taken close together, so the machine's drift hits them alike.
    let mut runs: Vec<Vec<HostRun>> = WAYS.iter().map(|_| Vec::new()).collect();
    for target in &targets {
        for ((way, manifest), hosts) in WAYS.iter().zip(&manifests).zip(runs.iter_mut()) {
            let run = on_host(&cx, target, way, manifest);
            say(line(way, &run));
            hosts.push(run);
        }
    }
    let mut ways = Vec::new();
    for ((way, manifest), hosts) in WAYS.iter().zip(&manifests).zip(runs) {
        ways.push(WayResult {
            id: way.id.into(),
            title: way.title.into(),
            manifest: short(root, manifest),
            component: way.component.into(),
            inherit_configuration: way.inherit_configuration,
            artifact: artifact(root, manifest, way.component)?,
            hosts,
            in_process: None,
            in_process_skipped: None,
        });
    }
    for (w, r) in ways.iter_mut().zip(in_process(rt, &manifests, &s)) {
        match r {
            Ok(p) => w.in_process = Some(p),
            Err(why) => w.in_process_skipped = Some(format!("nanohost refused: {why}")),
        }
    }
    Ok(Ways { settings: s, ways })
}

fn line(way: &Way, r: &HostRun) -> String {
    match (&r.startup_ms, &r.per_request, &r.skipped) {
        (Some(ms), Some(p), _) => match &p.one_connection {
            Some(one) => format!(
                "{:>44} | {:>8}: start-up {ms:.0} ms, POST p50 {:.0} µs",
                way.title, r.host, one.latency.p50_us
            ),
            None => format!(
                "{:>44} | {:>8}: start-up {ms:.0} ms, per request: {}",
                way.title,
                r.host,
                p.skipped.as_deref().unwrap_or("no result")
            ),
        },
        (_, _, Some(why)) => format!("{:>44} | {:>8}: skipped: {why}", way.title, r.host),
        _ => format!("{:>44} | {:>8}: no result", way.title, r.host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn each_way_runs_the_manifest_and_switch_it_names() {
        let out = std::env::temp_dir().join(format!("nano-bench-ways-{}", std::process::id()));
        for way in &WAYS {
            let path = manifest_for(way, &root(), &out).unwrap();
            let c = ComponentFiles::of(&path, way.component).unwrap();
            assert_eq!(
                c.dependencies.is_empty(),
                way.inherit_configuration.is_none(),
                "{}: dependencies",
                way.id
            );
            assert_eq!(
                c.inherit_configuration,
                way.inherit_configuration.unwrap_or(false),
                "{}: {}",
                way.id,
                path.display()
            );
        }
        let _ = std::fs::remove_dir_all(&out);
    }

    /// The deny-all copy loads the very files of the manifest it copies.
    #[test]
    fn a_copy_with_another_switch_loads_the_same_files() {
        let out = std::env::temp_dir().join(format!("nano-bench-ways-copy-{}", std::process::id()));
        let [_, inheriting, deny_all] = WAYS;
        let own = manifest_for(&inheriting, &root(), &out).unwrap();
        let copy = manifest_for(&deny_all, &root(), &out).unwrap();
        assert_ne!(own, copy);
        let absolute = |p: &Path| lexical(&std::path::absolute(p).unwrap());
        let files = |m: &Path| -> Vec<PathBuf> {
            loaded_files(m, "order-gateway")
                .unwrap()
                .iter()
                .map(|p| absolute(p.as_path()))
                .collect()
        };
        assert_eq!(files(&own), files(&copy));
        let names: Vec<String> = files(&own)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into())
            .collect();
        assert_eq!(names, ["http_gateway.wasm", "order-services.wasm"]);
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn the_wac_way_loads_one_composed_file() {
        let files = loaded_files(&root().join(WAC_MANIFEST), "order-app").unwrap();
        assert_eq!(files.len(), 1);
        assert!(
            files[0].ends_with("target/composed/order-app.wasm"),
            "{files:?}"
        );
    }

    /// The bytes loaded are the source's and every dependency's, each once.
    #[test]
    fn an_artifact_counts_the_source_and_each_dependency() {
        let dir = std::env::temp_dir().join(format!("nano-bench-ways-art-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("parts")).unwrap();
        std::fs::write(dir.join("gateway.wasm"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("parts/services.wasm"), [0u8; 32]).unwrap();
        std::fs::write(dir.join("parts/unused.wasm"), [0u8; 1000]).unwrap();
        let manifest = dir.join("spin.toml");
        std::fs::write(
            &manifest,
            r#"spin_manifest_version = 2
[application]
name = "a"
[[trigger.http]]
route = "/..."
component = "gw"
[component.gw]
source = "gateway.wasm"
[component.gw.dependencies]
"nano:orders@0.1.0" = { path = "parts/./services.wasm" }
[component.other]
source = "parts/unused.wasm"
"#,
        )
        .unwrap();
        let a = artifact(&dir, &manifest, "gw").unwrap();
        let files: Vec<(&str, u64)> = a.files.iter().map(|f| (f.path.as_str(), f.bytes)).collect();
        assert_eq!(files, [("gateway.wasm", 10), ("parts/services.wasm", 32)]);
        assert_eq!(a.bytes, 42);
        assert!(artifact(&dir, &manifest, "missing").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
