//! nano-bench: composed vs networked, one command, one report (README.md, "Benchmark").
//!
//! `nano-bench run` starts the brokers, runs each shape's apps in a harness process (`nano-bench
//! host`, the nanohost library), drives the same load against each, measures the composed hop
//! with a micro-benchmark, and writes `report.md`, `results.json` and `latency.svg`.
//! `cargo xtask bench` builds everything and calls it.

mod chains;
mod client;
mod cpu;
mod harness;
mod load;
mod micro;
mod monolith;
mod openloop;
mod peers;
mod procs;
mod render;
mod report;
mod stats;
mod ways;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "nano-bench",
    about = "Composed vs networked nano-orders benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmark and write the report.
    Run(RunArgs),
    /// Render `report.md` and the charts again from a saved `results.json`.
    Render {
        /// The `results.json` of a run.
        results: PathBuf,
        /// Where to write them (default: beside `results.json`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// (internal) Run apps on nanohost in this process, with hop timing; driven over stdin.
    Host {
        /// `MANIFEST[@LISTEN]`, repeatable: each app is one nanohost `RunningHost`.
        #[arg(long = "app", required = true)]
        apps: Vec<String>,
        #[arg(long)]
        runtime_config: Option<PathBuf>,
    },
}

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// A shorter run (well under two minutes once built).
    #[arg(long)]
    quick: bool,
    /// A tiny run that only checks that everything works and the files are written.
    #[arg(long, conflicts_with = "quick")]
    smoke: bool,
    /// Which shapes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = Shape::value_variants().to_vec())]
    shapes: Vec<Shape>,
    /// Which phases, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = Phase::value_variants().to_vec())]
    phases: Vec<Phase>,
    /// Orders in the throughput phase and in the 64-client loss phase.
    #[arg(long)]
    requests: Option<u64>,
    /// Connections in the throughput phase.
    #[arg(long)]
    concurrency: Option<u64>,
    /// The order app's manifest in the peers phase, e.g. a copy of an older build to keep its
    /// figures as a baseline (default: spin.toml).
    #[arg(long, default_value = "spin.toml")]
    order_app: PathBuf,
    /// Where to write the results (default: bench/results/<UTC timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The workspace root (default: the current directory).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The command line to record in the report (default: this process's arguments).
    #[arg(long)]
    command_line: Option<String>,
    /// The build profile the binaries were built with, for the report.
    #[arg(long, default_value = "release")]
    profile: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// One component, every hop in-process; embedded key-value store.
    Composed,
    /// The same composed app with its key-value store in Redis (what the networked shapes use).
    ComposedRedisKv,
    /// Order app -> MQTT (Mosquitto) -> fulfilment app; store in Redis.
    Mqtt,
    /// Order app -> Redis pub/sub -> fulfilment app; store in Redis.
    Redis,
    /// Order app -> HTTP POST -> fulfilment app; store in Redis.
    Http,
}

impl Shape {
    fn description(self) -> &'static str {
        match self {
            Shape::Composed => "one composed component (order-app.wasm); embedded key-value store",
            Shape::ComposedRedisKv => {
                "one composed component (order-app.wasm); key-value store in Redis"
            }
            Shape::Mqtt => {
                "order-app-mqtt → Mosquitto (QoS 1) → fulfilment-mqtt (MQTT trigger); key-value store in Redis"
            }
            Shape::Redis => {
                "order-app-redis → Redis pub/sub → fulfilment-redis (Redis trigger); key-value store in Redis"
            }
            Shape::Http => {
                "order-app-http → HTTP POST /fulfil → fulfilment-http (HTTP trigger); key-value store in Redis"
            }
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Shape::Composed => "composed",
            Shape::ComposedRedisKv => "composed-redis-kv",
            Shape::Mqtt => "mqtt",
            Shape::Redis => "redis",
            Shape::Http => "http",
        }
    }
    /// The shape of shapes.toml whose apps it runs (composed-redis-kv: the composed app with its
    /// store in Redis).
    fn listed(self) -> &'static shapes::Shape {
        let name = match self {
            Shape::ComposedRedisKv => "composed",
            other => other.name(),
        };
        let listed = shapes::catalog().shape(name);
        listed.unwrap_or_else(|| panic!("shapes.toml has no shape {name}"))
    }

    /// The order app hands each order to a fulfilment app (over a broker or HTTP).
    pub fn networked(self) -> bool {
        self.listed().app(shapes::Role::Fulfilment).is_some()
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The parts of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// nanohost beside `wasmtime serve` (trivial component) and real Spin (order app).
    Peers,
    /// Per shape: accept, end to end, closed-loop throughput, lost orders.
    Shapes,
    /// Per shape: fixed arrival rates, latency from the intended send time.
    OpenLoop,
    /// The composed hop alone, from the host.
    Micro,
    /// Chains of N pass-through components: instantiation and call time against N; the hop
    /// against payload size.
    Chains,
    /// The composition tax: the composed app beside the same rules linked statically into one
    /// component (bench/fixtures/monolith); throughput, latency, instantiation, memory.
    Tax,
    /// Wac ahead of time against Spin's load-time `dependencies` (with and without the deny-all
    /// adapter): start-up on nanohost and every Spin, bytes loaded, instantiation, per request.
    Ways,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.to_possible_value().expect("no skipped variants");
        f.write_str(v.get_name())
    }
}

/// How much load each phase gets.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub mode: &'static str,
    pub warm_up: u64,
    /// Orders in each one-connection phase (accept, end to end).
    pub sequential: u64,
    pub concurrency: u64,
    pub throughput_orders: u64,
    pub loss_clients: u64,
    pub loss_orders: u64,
    pub micro_iterations: u64,
    pub poll_interval_us: u64,
    /// `NANOHOST_*` tuning variables passed on to the hosts (none: nanohost's defaults).
    pub host_env: Vec<(String, String)>,
    pub phases: Vec<Phase>,
    pub peers: peers::PeerSettings,
    /// Open loop: the offered rates, in order, orders/s.
    pub open_rates: Vec<f64>,
    pub open_seconds: f64,
    pub open_connections: u64,
    /// Details length of the open-loop sweep's orders, and of the per-hop run at 1,000/s.
    pub open_details_bytes: usize,
    pub hop_rate: f64,
    pub hop_details_bytes: usize,
    /// Chains: fresh instances per N, and call pairs per payload size.
    pub chain_iterations: u64,
    pub chain_pairs: u64,
}

impl Settings {
    fn from(args: &RunArgs) -> Settings {
        let (mode, warm_up, sequential, orders, loss, micro) = if args.smoke {
            ("smoke", 10, 5, 20, 20, 200)
        } else if args.quick {
            ("quick", 400, 400, 3000, 3000, 50_000)
        } else {
            ("full", 2000, 3000, 10_000, 10_000, 300_000)
        };
        let concurrency = args.concurrency.unwrap_or(if args.smoke { 2 } else { 16 });
        Settings {
            mode,
            warm_up,
            sequential,
            concurrency,
            throughput_orders: args.requests.unwrap_or(orders),
            loss_clients: if args.smoke { 4 } else { 64 },
            loss_orders: args.requests.unwrap_or(loss),
            micro_iterations: micro,
            poll_interval_us: load::POLL_INTERVAL.as_micros() as u64,
            host_env: std::env::vars()
                .filter(|(k, _)| k.starts_with("NANOHOST_"))
                .collect(),
            phases: args.phases.clone(),
            peers: peers::PeerSettings::new(mode),
            open_rates: if args.smoke {
                vec![100.0, 200.0]
            } else {
                vec![
                    500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0,
                ]
            },
            open_seconds: match mode {
                "smoke" => 0.3,
                "quick" => 1.5,
                _ => 4.0,
            },
            open_connections: if args.smoke { 4 } else { 64 },
            open_details_bytes: 32,
            hop_rate: if args.smoke { 100.0 } else { 1000.0 },
            hop_details_bytes: 1024,
            chain_iterations: match mode {
                "smoke" => 20,
                "quick" => 500,
                _ => 3000,
            },
            chain_pairs: match mode {
                "smoke" => 50,
                "quick" => 5000,
                _ => 20_000,
            },
        }
    }
    fn has(&self, p: Phase) -> bool {
        self.phases.contains(&p)
    }
    fn per_shape(&self) -> u64 {
        self.warm_up + 2 * self.sequential + self.throughput_orders + self.loss_orders
    }
}

/// Everything measured for one shape.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeResult {
    pub shape: Shape,
    pub description: String,
    pub accept: load::Summary,
    pub end_to_end: load::EndToEnd,
    pub throughput: load::Throughput,
    pub loss: load::Throughput,
    /// Networked shapes: hop timed inside the harness (publish → trigger), by message.
    pub hop: Option<HopResult>,
    pub open_loop: Option<OpenLoopResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopResult {
    pub sweep: openloop::Sweep,
    /// The run at `hop_rate` with `hop_details_bytes` orders.
    pub at_hop_rate: openloop::RatePoint,
    /// Networked shapes: the hop during that run, per message.
    pub hop: Option<HopResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HopResult {
    /// Host `publish` (or outbound HTTP request) entered → the trigger got the message.
    pub to_received: load::Summary,
    /// → the handler instance was created and its export is being called.
    pub to_handler: load::Summary,
    /// → the handler (fulfilment) returned.
    pub to_handler_end: load::Summary,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::Render { results, out } => render::rerender(&results, out.as_deref()),
        Cmd::Host {
            apps,
            runtime_config,
        } => apps
            .iter()
            .map(|a| harness::parse_app(a))
            .collect::<Result<Vec<_>>>()
            .and_then(|apps| harness::run(apps, runtime_config)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> Result<()> {
    let root = match &args.root {
        Some(r) => r.clone(),
        None => std::env::current_dir()?,
    };
    let settings = Settings::from(&args);
    let machine = report::machine();
    let stamp = report::utc_stamp();
    let out = match &args.out {
        Some(o) => o.clone(),
        None => root.join("bench/results").join(&stamp),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let command_line = args
        .command_line
        .clone()
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    eprintln!(
        "nano-bench: {} run, results in {}",
        settings.mode,
        out.display()
    );
    let tools = peers::Tools::find(&root);

    let run_shapes = settings.has(Phase::Shapes) || settings.has(Phase::OpenLoop);
    let shapes = if run_shapes {
        args.shapes.clone()
    } else {
        Vec::new()
    };
    let needs_redis = settings.has(Phase::Peers) || shapes.iter().any(|s| *s != Shape::Composed);
    let needs_mqtt = shapes.contains(&Shape::Mqtt);
    let redis = needs_redis.then(procs::start_redis).transpose()?;
    let mosquitto = needs_mqtt.then(procs::start_mosquitto).transpose()?;
    let redis_url = redis
        .as_ref()
        .map(|r| format!("redis://127.0.0.1:{}", r.port));
    let redis_config = out.join("runtime-config.redis.toml");
    if let Some(url) = &redis_url {
        std::fs::write(
            &redis_config,
            format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{url}\"\n"),
        )?;
    }

    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::new(settings.per_shape() * shapes.len() as u64 + 1)
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    let say = |line: String| {
        if pb.is_hidden() {
            eprintln!("{line}");
        } else {
            pb.println(line);
        }
    };
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let started = Instant::now();
    let peer_runs = if settings.has(Phase::Peers) {
        pb.set_message("hosts side by side");
        let place = peers::Place {
            rt: &client_rt,
            root: &root,
            out: &out,
            settings: &settings.peers,
        };
        redis_url.as_deref().context("Redis for the peers phase")?;
        let runs = peers::run(&place, &tools, &redis_config, &args.order_app)?;
        for r in &runs {
            say(peer_line(r));
        }
        runs
    } else {
        Vec::new()
    };

    let mut results = Vec::new();
    for &shape in &shapes {
        let r = run_shape(
            shape,
            &root,
            &out,
            &settings,
            redis_url.as_deref(),
            mosquitto.as_ref().map(|m| m.port),
            &redis_config,
            &client_rt,
            &pb,
        )
        .with_context(|| format!("shape {shape}"))?;
        if settings.has(Phase::Shapes) {
            say(format!(
                "{shape:>18}: accept p50 {:.0} µs, end-to-end p50 {:.0} µs, {:.0} orders/s at {} connections, lost {}",
                r.accept.p50_us,
                r.end_to_end.latency.p50_us,
                r.throughput.orders_per_s,
                r.throughput.concurrency,
                r.throughput.lost + r.loss.lost + r.end_to_end.lost
            ));
        }
        if let Some(o) = &r.open_loop {
            let pts: Vec<String> = o
                .sweep
                .points
                .iter()
                .map(|p| format!("{:.0}/s p99 {:.0} µs", p.offered, p.latency.p99_us))
                .collect();
            say(format!("{shape:>18}: open loop {}", pts.join(", ")));
        }
        results.push(r);
    }
    drop(mosquitto);
    drop(redis);

    let (mut micros, mut micros_1k, mut direct) = (Vec::new(), Vec::new(), None);
    if settings.has(Phase::Micro) {
        pb.set_message("micro-benchmark of the composed hop");
        let events_wasm = micro::compose(&root, "events-fulfil")?;
        let fulfil_wasm = micro::compose(&root, "fulfil-only")?;
        for concurrency_support in [false, true] {
            micros.push(client_rt.block_on(micro::run(
                &events_wasm,
                &fulfil_wasm,
                concurrency_support,
                settings.micro_iterations,
                micro::DETAILS,
            ))?);
        }
        // Dapr's per-hop figures are for 1 KB payloads.
        let kb = "x".repeat(settings.hop_details_bytes);
        micros_1k.push(client_rt.block_on(micro::run(
            &events_wasm,
            &fulfil_wasm,
            false,
            settings.micro_iterations,
            &kb,
        ))?);
        direct = Some(micro::direct(settings.micro_iterations)?);
    }
    let chains = if settings.has(Phase::Chains) {
        pb.set_message("chains of pass-through components");
        let composed = chains::compose_all(&root, &out)?;
        let c = client_rt.block_on(chains::run(
            &composed,
            settings.chain_iterations,
            settings.chain_pairs,
        ))?;
        for p in &c.points {
            say(format!(
                "chain N={:>2}: instantiate p50 {:.1} µs, call p50 {:.1} µs",
                p.n, p.instantiate.p50_us, p.call.p50_us
            ));
        }
        Some(c)
    } else {
        None
    };
    let tax = if settings.has(Phase::Tax) {
        Some(
            monolith::run(&root, &out, settings.mode, &client_rt, &pb, &say)
                .context("composition tax")?,
        )
    } else {
        None
    };
    let ways = if settings.has(Phase::Ways) {
        pb.set_message("wac against Spin's dependencies");
        Some(ways::run(&root, &out, settings.mode, &tools, &client_rt, &say).context("ways")?)
    } else {
        None
    };
    pb.inc(1);
    pb.finish_and_clear();

    let report = report::Report {
        title_stamp: stamp,
        command_line,
        settings,
        profile: args.profile.clone(),
        machine,
        versions: report::versions(&root, &tools),
        peers: peer_runs,
        spin_before: report::spin_before(&root),
        shapes: results,
        micro: micros,
        micro_1k: micros_1k,
        direct,
        chains,
        tax,
        ways,
        seconds: started.elapsed().as_secs_f64(),
    };
    report.write(&out)?;
    eprintln!(
        "nano-bench: wrote {}/report.md, results.json, latency.svg, open-loop.svg ({:.0} s)",
        out.display(),
        report.seconds
    );
    Ok(())
}

fn peer_line(r: &peers::PeerRun) -> String {
    match (&r.one_connection, &r.loaded, &r.skipped) {
        (Some(one), Some(l), _) => format!(
            "{:>16} | {}: p50 {:.0} µs (1 conn.), {:.0} req/s at {} conn.",
            r.host, r.workload, one.latency.p50_us, l.per_s, l.connections
        ),
        (_, _, Some(why)) => format!("{:>16} | {}: skipped: {why}", r.host, r.workload),
        _ => format!("{:>16} | {}: no result", r.host, r.workload),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_shape(
    shape: Shape,
    root: &Path,
    out: &Path,
    s: &Settings,
    redis_url: Option<&str>,
    mqtt_port: Option<u16>,
    redis_config: &Path,
    rt: &tokio::runtime::Runtime,
    pb: &ProgressBar,
) -> Result<ShapeResult> {
    pb.set_message(format!("{shape}: starting"));
    let http_port = procs::free_port();
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(url) = redis_url {
        env.push(("SPIN_VARIABLE_REDIS_ADDRESS".into(), url.to_string()));
    }
    if let Some(p) = mqtt_port {
        env.push((
            "SPIN_VARIABLE_MQTT_ADDRESS".into(),
            format!("mqtt://127.0.0.1:{p}"),
        ));
    }
    if shape.networked() {
        // Both apps of a networked shape sign and check "order placed" with one key, new per run
        // (an environment variable, not an argument that `ps` would show).
        env.push(("SPIN_VARIABLE_MESSAGE_KEY".into(), message_key()));
    }
    // A fulfilment app with an HTTP trigger (the http shape) listens on a port of its own, which
    // the order app posts to.
    let listed = shape.listed();
    let fulfilment = listed.app(shapes::Role::Fulfilment);
    let fulfil_port = fulfilment.filter(|a| a.http).map(|_| procs::free_port());
    if let Some(port) = fulfil_port {
        env.push((
            "SPIN_VARIABLE_FULFILMENT_ORIGIN".into(),
            format!("http://127.0.0.1:{port}"),
        ));
    }
    // The shape's apps as shapes.toml lists them: the order app on the load's port.
    let port = |app: &shapes::App| match app.role {
        shapes::Role::Order => Some(http_port),
        shapes::Role::Fulfilment => fulfil_port,
    };
    let apps: Vec<App> = listed
        .apps
        .iter()
        .map(|a| (a.manifest.clone().into(), port(a)))
        .collect();
    // Only the composed shape keeps its store embedded; every other in Redis.
    let config = (shape != Shape::Composed).then_some(redis_config);
    let description = shape.description();
    let log = out.join(format!("host-{shape}.log"));
    let mut harness = procs::Harness::start(&apps, config, &env, &log, root)?;
    let addr: SocketAddr = ([127, 0, 0, 1], http_port).into();

    let closed = s.has(Phase::Shapes);
    let result = rt.block_on(async {
        pb.set_message(format!("{shape}: warming up"));
        load::warm_up(addr, s.warm_up, s.concurrency, pb).await?;
        if !closed {
            return anyhow::Ok(Default::default());
        }
        pb.set_message(format!("{shape}: accept latency, 1 connection"));
        let accept = load::accept(addr, s.sequential, pb).await?;
        pb.set_message(format!("{shape}: end-to-end latency, 1 client"));
        harness.command("hop-on")?;
        let end_to_end = load::end_to_end(addr, s.sequential, pb).await?;
        let hops = harness.command("hop-off")?;
        pb.set_message(format!(
            "{shape}: throughput, {} connections",
            s.concurrency
        ));
        let throughput = load::throughput(addr, s.concurrency, s.throughput_orders, pb).await?;
        pb.set_message(format!(
            "{shape}: {} clients, counting lost orders",
            s.loss_clients
        ));
        let loss = load::throughput(addr, s.loss_clients, s.loss_orders, pb).await?;
        anyhow::Ok((accept, end_to_end, hops, throughput, loss))
    });
    let (accept, end_to_end, hops, throughput, loss) = result?;
    let open_loop = if s.has(Phase::OpenLoop) {
        pb.set_message(format!("{shape}: open loop"));
        let sweep = rt.block_on(openloop::sweep(
            addr,
            &s.open_rates,
            s.open_seconds,
            s.open_connections,
            s.open_details_bytes,
        ))?;
        pb.set_message(format!(
            "{shape}: open loop at {:.0}/s, {} B orders, hop timed",
            s.hop_rate, s.hop_details_bytes
        ));
        harness.command("hop-on")?;
        let at_hop_rate = rt.block_on(openloop::run_rate(
            addr,
            s.hop_rate,
            if s.mode == "smoke" {
                s.open_seconds
            } else {
                s.open_seconds.clamp(1.0, 5.0)
            },
            s.open_connections,
            s.hop_details_bytes,
        ))?;
        let hops = harness.command("hop-off")?;
        Some(OpenLoopResult {
            sweep,
            at_hop_rate,
            hop: shape.networked().then(|| hop_result(&hops)),
        })
    } else {
        None
    };
    harness.stop();

    let hop = (closed && shape.networked()).then(|| hop_result(&hops));
    Ok(ShapeResult {
        shape,
        description: description.to_string(),
        accept,
        end_to_end,
        throughput,
        loss,
        hop,
        open_loop,
    })
}

/// A manifest, and the port of its HTTP trigger if it has one.
type App = (PathBuf, Option<u16>);

/// A fresh random `message_key`: two v4 UUIDs, 244 random bits from the OS.
fn message_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn hop_result(hops: &serde_json::Value) -> HopResult {
    let mut h = [load::histogram(), load::histogram(), load::histogram()];
    if let Some(samples) = hops["hops"].as_array() {
        for s in samples {
            for (i, hist) in h.iter_mut().enumerate() {
                if let Some(ns) = s[i].as_u64() {
                    let _ = hist.record(ns.max(1));
                }
            }
        }
    }
    HopResult {
        to_received: load::summarize(&h[0]),
        to_handler: load::summarize(&h[1]),
        to_handler_end: load::summarize(&h[2]),
    }
}
