//! nano-bench: composed vs networked, one command, one report (issue 5, design.md sections 7-8).
//!
//! `nano-bench run` starts the brokers, runs each shape's apps in a harness process (`nano-bench
//! host`, the nanohost library), drives the same load against each, measures the composed hop
//! with a micro-benchmark, and writes `report.md`, `results.json` and `latency.svg`.
//! `cargo xtask bench` builds everything and calls it.

mod client;
mod harness;
mod load;
mod micro;
mod procs;
mod report;

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
    #[arg(long, value_delimiter = ',', default_values_t = Shape::all())]
    shapes: Vec<Shape>,
    /// Orders in the throughput phase and in the 64-client loss phase.
    #[arg(long)]
    requests: Option<u64>,
    /// Connections in the throughput phase.
    #[arg(long)]
    concurrency: Option<u64>,
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
    fn all() -> Vec<Shape> {
        vec![
            Shape::Composed,
            Shape::ComposedRedisKv,
            Shape::Mqtt,
            Shape::Redis,
            Shape::Http,
        ]
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
    pub fn networked(self) -> bool {
        matches!(self, Shape::Mqtt | Shape::Redis | Shape::Http)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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
        }
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
        Cmd::Host {
            apps,
            runtime_config,
        } => {
            init_host_logging();
            apps.iter()
                .map(|a| harness::parse_app(a))
                .collect::<Result<Vec<_>>>()
                .and_then(|apps| harness::run(apps, runtime_config))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_host_logging() {
    // Warnings and errors only: the hosts log nothing per request at this level.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
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

    let shapes = args.shapes.clone();
    let needs_redis = shapes.iter().any(|s| *s != Shape::Composed);
    let needs_mqtt = shapes.contains(&Shape::Mqtt);
    let redis = needs_redis.then(procs::start_redis).transpose()?;
    let mosquitto = needs_mqtt
        .then(|| procs::start_mosquitto(&out))
        .transpose()?;
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
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let started = Instant::now();
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
        let line = format!(
            "{shape:>18}: accept p50 {:.0} µs, end-to-end p50 {:.0} µs, {:.0} orders/s at {} connections, lost {}",
            r.accept.p50_us,
            r.end_to_end.latency.p50_us,
            r.throughput.orders_per_s,
            r.throughput.concurrency,
            r.throughput.lost + r.loss.lost + r.end_to_end.lost
        );
        if pb.is_hidden() {
            eprintln!("{line}");
        } else {
            pb.println(line);
        }
        results.push(r);
    }
    drop(mosquitto);
    drop(redis);

    pb.set_message("micro-benchmark of the composed hop");
    let events_wasm = micro::compose(&root, "events-fulfil")?;
    let fulfil_wasm = micro::compose(&root, "fulfil-only")?;
    let mut micros = Vec::new();
    for concurrency_support in [false, true] {
        micros.push(client_rt.block_on(micro::run(
            &events_wasm,
            &fulfil_wasm,
            concurrency_support,
            settings.micro_iterations,
        ))?);
    }
    let direct = micro::direct(settings.micro_iterations)?;
    pb.inc(1);
    pb.finish_and_clear();

    let report = report::Report {
        title_stamp: stamp,
        command_line,
        settings,
        profile: args.profile.clone(),
        machine,
        versions: report::versions(),
        shapes: results,
        micro: micros,
        direct,
        seconds: started.elapsed().as_secs_f64(),
    };
    report.write(&out)?;
    eprintln!(
        "nano-bench: wrote {}/report.md, results.json, latency.svg ({:.0} s)",
        out.display(),
        report.seconds
    );
    Ok(())
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
    let http_port = procs::free_port()?;
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
    let (apps, config, description): (Vec<App>, Option<&Path>, &str) =
        match shape {
            Shape::Composed => (
                vec![("spin.toml".into(), Some(http_port))],
                None,
                "one composed component (order-app.wasm); embedded key-value store",
            ),
            Shape::ComposedRedisKv => (
                vec![("spin.toml".into(), Some(http_port))],
                Some(redis_config),
                "one composed component (order-app.wasm); key-value store in Redis",
            ),
            Shape::Mqtt => (
                vec![
                    ("apps/order-app-mqtt/spin.toml".into(), Some(http_port)),
                    ("apps/fulfilment-mqtt/spin.toml".into(), None),
                ],
                Some(redis_config),
                "order-app-mqtt → Mosquitto (QoS 1) → fulfilment-mqtt (MQTT trigger); key-value store in Redis",
            ),
            Shape::Redis => (
                vec![
                    ("apps/order-app-redis/spin.toml".into(), Some(http_port)),
                    ("apps/fulfilment-redis/spin.toml".into(), None),
                ],
                Some(redis_config),
                "order-app-redis → Redis pub/sub → fulfilment-redis (Redis trigger); key-value store in Redis",
            ),
            Shape::Http => {
                let fulfil_port = procs::free_port()?;
                env.push((
                    "SPIN_VARIABLE_FULFILMENT_ORIGIN".into(),
                    format!("http://127.0.0.1:{fulfil_port}"),
                ));
                (
                    vec![
                        ("apps/order-app-http/spin.toml".into(), Some(http_port)),
                        ("apps/fulfilment-http/spin.toml".into(), Some(fulfil_port)),
                    ],
                    Some(redis_config),
                    "order-app-http → HTTP POST /fulfil → fulfilment-http (HTTP trigger); key-value store in Redis",
                )
            }
        };
    let log = out.join(format!("host-{shape}.log"));
    let mut harness = procs::Harness::start(&apps, config, &env, &log, root)?;
    let addr: SocketAddr = ([127, 0, 0, 1], http_port).into();

    let result = rt.block_on(async {
        pb.set_message(format!("{shape}: warming up"));
        load::warm_up(addr, s.warm_up, s.concurrency, pb).await?;
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
    harness.stop();

    let hop = shape.networked().then(|| hop_result(&hops));
    Ok(ShapeResult {
        shape,
        description: description.to_string(),
        accept,
        end_to_end,
        throughput,
        loss,
        hop,
    })
}

/// A manifest, and the port of its HTTP trigger if it has one.
type App = (PathBuf, Option<u16>);

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
