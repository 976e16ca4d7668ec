//! The composition tax (issue 13, item 2): the composed order app (`order-app.wasm`, six
//! components linked by wac) beside the same rules and adapters linked statically into ONE
//! component (`bench/fixtures/monolith`: the same crates with their WIT glue left out, so no
//! component boundary inside), both on nanohost with its in-memory store.
//!
//! - Wire contract: both apps get the same requests (placed, looked up, every refusal the
//!   gateway owns) and must give the same answers; the run stops if they do not. This runs in
//!   every mode, so `cargo xtask test` (the smoke run) keeps the monolith honest.
//! - Over HTTP, one harness process serving both apps: rounds in which each app gets, in turn
//!   (the order alternating), accept latency on one connection, end to end (POST until a GET says
//!   fulfilled) and closed-loop throughput. Figures are medians over rounds; the throughput
//!   ratio is the median of each round's composed ÷ monolith, so drift in the machine's load
//!   hits both sides of a pair alike.
//! - In process, from wasmtime with nanohost's engine configuration (pooling allocator): per
//!   instance, a new store and instantiation (timed), then one `POST /order` through
//!   `wasi:http/incoming-handler` (timed), and what the instance holds: its core instances,
//!   memories and tables (the pooling allocator's counts while it is alive) and its linear memory
//!   (every memory's size, summed by a store limiter, at instantiation and after the request).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use indicatif::ProgressBar;
use serde::Serialize;
use wasmtime::component::Component;
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::WasiHttpView;

use nanohost::HostState;

use crate::load::{self, histogram, summarize, EndToEnd, Summary, Throughput};
use crate::{cpu, procs};

/// The composed app and its manifest (the root `spin.toml`), and the monolith's.
const COMPOSED_WASM: &str = "target/composed/order-app.wasm";
pub const MONOLITH_WASM: &str = "target/wasm32-wasip2/wasm-monolith/bench_monolith.wasm";
const MONOLITH_MANIFEST: &str = "bench/fixtures/monolith/spin.toml";
/// The WASIp3 build of the composed app (`docs/wasip3.md`): the same components, a WASIp3 edge
/// that answers 202 before it fulfils, and instances that nanohost reuses as Spin 4 does.
const P3_WASM: &str = "target/composed/order-app-p3.wasm";
const P3_MANIFEST: &str = "apps/order-app-p3/spin.toml";
/// The WASIp3 build's rules linked into one component (`bench/fixtures/monolith-p3`): the same
/// edge code, reused by the host as the composed WASIp3 build is. The target's comparison.
pub const MONOLITH_P3_WASM: &str = "target/wasm32-wasip2/wasm-monolith/bench_monolith_p3.wasm";
const MONOLITH_P3_MANIFEST: &str = "bench/fixtures/monolith-p3/spin.toml";

/// Cross-component calls of one `POST /order` (no idempotency key) in the composed app, from the
/// code paths: gateway → `intake.place`; receiver → `store.save`, → `events.order-placed`;
/// events-local → `fulfilment.fulfil`; fulfilment → `store.load`, → `store.save`. Each lifts and
/// lowers the order or its record (the details string copied into the callee's memory and back).
pub const BOUNDARY_CALLS_PER_POST: u64 = 6;

#[derive(Debug, Clone, Serialize)]
pub struct TaxSettings {
    pub rounds: u64,
    /// Per app and round: sequential POSTs (accept), orders end to end, orders under load.
    pub accept: u64,
    pub end_to_end: u64,
    pub orders: u64,
    pub connections: u64,
    pub warm_up: u64,
    /// In process: instances per app (each instantiated once and sent one POST).
    pub instances: u64,
}

impl TaxSettings {
    pub fn new(mode: &str) -> TaxSettings {
        match mode {
            "smoke" => TaxSettings {
                rounds: 1,
                accept: 5,
                end_to_end: 5,
                orders: 20,
                connections: 2,
                warm_up: 6,
                instances: 4,
            },
            "quick" => TaxSettings {
                rounds: 3,
                accept: 300,
                end_to_end: 300,
                orders: 2000,
                connections: 16,
                warm_up: 400,
                instances: 500,
            },
            _ => TaxSettings {
                rounds: 6,
                accept: 500,
                end_to_end: 500,
                orders: 4000,
                connections: 16,
                warm_up: 2000,
                instances: 3000,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub accept: Summary,
    pub end_to_end: EndToEnd,
    pub throughput: Throughput,
    /// CPU time during the throughput run: the harness process (every app's host; only this
    /// app had requests) and this process (the client), seconds.
    pub host_cpu_s: f64,
    pub client_cpu_s: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Memory {
    /// Sum of the sizes of every linear memory of the instance right after instantiation (the
    /// modules' initial sizes), bytes.
    pub linear_bytes_instantiated: u64,
    /// The same after one `POST /order` (memories grow with `memory.grow`), median and largest
    /// over the instances.
    pub linear_bytes_after_request: u64,
    pub linear_bytes_after_request_max: u64,
    /// Held by one live instance, as the pooling allocator counts them.
    pub core_instances: u64,
    pub component_instances: u64,
    pub memories: u64,
    pub tables: u64,
    /// Bytes the pool keeps resident in the slots of ended instances (`*_keep_resident`), after
    /// the last one: what a warm slot costs between requests.
    pub pool_resident_bytes_after: u64,
    /// Instances alive at once (each after one `POST /order`) in a pool sized as nanohost sizes
    /// it for 16 instances, before one more fails; and the error that stopped it.
    pub live_in_pool_of_16: u64,
    pub live_stopped_by: String,
    /// Resident memory the process gained per live instance beyond the first (pages the instance
    /// touched in its own slots: memories, tables, instance state), from `/proc/self/smaps_rollup`.
    pub resident_bytes_per_live_instance: u64,
    /// The component file, and its compiled code (shared by every instance, not per instance).
    pub component_bytes: u64,
    pub compiled_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InProcess {
    pub instances: u64,
    /// New store + instantiation.
    pub instantiate: Summary,
    /// `incoming-handler.handle` of one `POST /order` until it returns (the 202 is set before).
    pub handle: Summary,
    /// The same request again on the same instance: what every call pays, without the first
    /// call's cold start (fresh memories' pages, each component's runtime set-up).
    pub handle_again: Summary,
    /// Dropping the store after the two requests: the pool resets the instance's slots
    /// (memories, tables) for the next one.
    pub drop: Summary,
    /// One instance's whole life (new store, instantiation, two requests, drop): wall clock,
    /// and this process's CPU time (every thread, the key-value store's included). Wall minus
    /// CPU is time spent waiting, mostly for the store's thread to be woken and to answer.
    pub cycle: Summary,
    pub cycle_cpu: Summary,
    /// Minor page faults of new store + instantiation + the first request, median.
    pub page_faults: u64,
    pub memory: Memory,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppTax {
    pub app: String,
    pub manifest: String,
    pub wasm: String,
    pub rounds: Vec<Round>,
    /// Medians over the rounds.
    pub accept_p50_us: f64,
    pub accept_p99_us: f64,
    pub end_to_end_p50_us: f64,
    pub end_to_end_p99_us: f64,
    pub orders_per_s: f64,
    pub lost: u64,
    pub errors: u64,
    /// Medians over the rounds of the harness's CPU per order in the throughput run, of the CPUs
    /// it kept busy meanwhile (CPU time ÷ wall time; the machine has `machine.cores`), and of
    /// the client's CPU per order.
    pub host_cpu_us_per_order: f64,
    pub host_cpus: f64,
    pub client_cpu_us_per_order: f64,
    /// Measured for the WASIp2 apps only (the WASIp3 build's figures are in [`Reuse`]).
    pub in_process: Option<InProcess>,
}

/// The WASIp3 build in nanohost's pool (one engine as nanohost makes it for an app with a WASIp3
/// component, sized for 16 instances): what one instance holds and how many fit.
#[derive(Debug, Clone, Serialize)]
pub struct Reuse {
    /// New store + instantiation of one instance (it then serves many requests).
    pub instantiate: Summary,
    pub core_instances: u64,
    pub memories: u64,
    pub live_in_pool_of_16: u64,
    pub live_stopped_by: String,
    /// Spin 4's default `--max-instance-concurrent-reuse-count` (nanohost's too).
    pub concurrent_per_instance: u64,
    /// Requests held at once: live instances × requests per instance.
    pub requests_held: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tax {
    pub settings: TaxSettings,
    /// The wire-contract cases both apps answered alike.
    pub contract_cases: Vec<String>,
    pub composed: AppTax,
    pub monolith: AppTax,
    /// composed ÷ monolith orders/s, per round, and their median.
    pub throughput_ratios: Vec<f64>,
    pub throughput_ratio: f64,
    /// The WASIp3 build with instance reuse (Spin 4's defaults), over HTTP beside the others.
    pub p3: AppTax,
    /// p3 ÷ monolith orders/s, per round, and their median.
    pub p3_throughput_ratios: Vec<f64>,
    pub p3_throughput_ratio: f64,
    pub p3_reuse: Reuse,
    /// The WASIp3 monolith, reused as the WASIp3 build is: the comparison the target is about.
    pub monolith_p3: AppTax,
    /// p3 ÷ monolith-p3 orders/s, per round, and their median.
    pub p3_vs_monolith_p3_ratios: Vec<f64>,
    pub p3_vs_monolith_p3_ratio: f64,
    pub monolith_p3_reuse: Reuse,
    pub boundary_calls_per_post: u64,
}

/// The monolith is built by `cargo xtask bench`; anything else is a setup error worth stopping
/// for (the phase was asked for).
pub fn run(
    root: &Path,
    out: &Path,
    mode: &str,
    rt: &tokio::runtime::Runtime,
    pb: &ProgressBar,
    say: &dyn Fn(String),
) -> Result<Tax> {
    let s = TaxSettings::new(mode);
    for wasm in [COMPOSED_WASM, MONOLITH_WASM, P3_WASM, MONOLITH_P3_WASM] {
        ensure!(
            root.join(wasm).exists(),
            "{wasm} is not built (cargo xtask bench builds it)"
        );
    }
    let ports = [0; APPS].map(|_| procs::free_port());
    let apps = [
        (PathBuf::from("spin.toml"), Some(ports[0])),
        (PathBuf::from(MONOLITH_MANIFEST), Some(ports[1])),
        (PathBuf::from(P3_MANIFEST), Some(ports[2])),
        (PathBuf::from(MONOLITH_P3_MANIFEST), Some(ports[3])),
    ];
    let config = crate::peers::memory_config(out, "nanohost")?;
    let harness =
        procs::Harness::start(&apps, Some(&config), &[], &out.join("host-tax.log"), root)?;
    let addrs: [SocketAddr; APPS] = ports.map(|p| ([127, 0, 0, 1], p).into());

    pb.set_message("composition tax: wire contract");
    let contract_cases = same_contract(addrs[0], addrs[1])?;
    say(format!(
        "composition tax: the monolith answers the wire contract as the composed app does ({} cases)",
        contract_cases.len()
    ));
    let p3_cases = same_contract(addrs[0], addrs[2]).context("the WASIp3 build")?;
    ensure!(
        p3_cases == contract_cases,
        "the WASIp3 build ran other cases"
    );
    say("composition tax: so does the WASIp3 build".into());
    let p3_monolith_cases = same_contract(addrs[2], addrs[3])
        .context("the WASIp3 monolith against the WASIp3 build")?;
    ensure!(
        p3_monolith_cases == contract_cases,
        "the WASIp3 monolith ran other cases"
    );
    say("composition tax: and the WASIp3 monolith".into());

    let rounds = rt.block_on(http_rounds(&s, &addrs, harness.pid(), pb))?;
    harness.stop();

    pb.set_message("composition tax: instantiation and memory per instance");
    let [composed_rounds, monolith_rounds, p3_rounds, monolith_p3_rounds] = rounds;
    let inproc = rt.block_on(in_process(
        &[root.join(COMPOSED_WASM), root.join(MONOLITH_WASM)],
        s.instances,
    ))?;
    let [composed_in, monolith_in] = inproc;
    let p3_reuse = rt.block_on(reuse(&root.join(P3_WASM), s.instances))?;
    let monolith_p3_reuse = rt.block_on(reuse(&root.join(MONOLITH_P3_WASM), s.instances))?;
    let ratios = |a: &[Round], to: &[Round]| -> Vec<f64> {
        a.iter()
            .zip(to)
            .map(|(c, m)| c.throughput.orders_per_s / m.throughput.orders_per_s.max(1e-9))
            .collect()
    };
    let throughput_ratios = ratios(&composed_rounds, &monolith_rounds);
    let p3_throughput_ratios = ratios(&p3_rounds, &monolith_rounds);
    let p3_vs_monolith_p3_ratios = ratios(&p3_rounds, &monolith_p3_rounds);
    let composed = app_tax(
        "composed (order-app.wasm, 6 components linked by wac)",
        "spin.toml",
        COMPOSED_WASM,
        composed_rounds,
        Some(composed_in),
    );
    let monolith = app_tax(
        "monolith (bench_monolith.wasm, one component)",
        MONOLITH_MANIFEST,
        MONOLITH_WASM,
        monolith_rounds,
        Some(monolith_in),
    );
    let p3 = app_tax(
        "WASIp3 build (order-app-p3.wasm, instances reused)",
        P3_MANIFEST,
        P3_WASM,
        p3_rounds,
        None,
    );
    let monolith_p3 = app_tax(
        "WASIp3 monolith (bench_monolith_p3.wasm, one component, instances reused)",
        MONOLITH_P3_MANIFEST,
        MONOLITH_P3_WASM,
        monolith_p3_rounds,
        None,
    );
    let tax = Tax {
        p3_vs_monolith_p3_ratio: median(&p3_vs_monolith_p3_ratios),
        p3_vs_monolith_p3_ratios,
        monolith_p3,
        monolith_p3_reuse,
        throughput_ratio: median(&throughput_ratios),
        throughput_ratios,
        p3_throughput_ratio: median(&p3_throughput_ratios),
        p3_throughput_ratios,
        p3,
        p3_reuse,
        settings: s,
        contract_cases,
        composed,
        monolith,
        boundary_calls_per_post: BOUNDARY_CALLS_PER_POST,
    };
    for a in [&tax.composed, &tax.monolith, &tax.p3, &tax.monolith_p3] {
        say(format!(
            "composition tax: {}: accept p50 {:.0} µs, end to end p50 {:.0} µs, {:.0} orders/s, host CPU {:.0} µs per order on {:.2} CPUs{}",
            a.app,
            a.accept_p50_us,
            a.end_to_end_p50_us,
            a.orders_per_s,
            a.host_cpu_us_per_order,
            a.host_cpus,
            a.in_process.as_ref().map_or(String::new(), |i| format!(
                ", instantiate p50 {:.1} µs, {} KiB linear memory after a POST",
                i.instantiate.p50_us,
                i.memory.linear_bytes_after_request / 1024
            ))
        ));
    }
    say(format!(
        "composition tax: composed ÷ monolith throughput {:.3}, WASIp3 build (reuse) ÷ monolith {:.3} (medians of {} rounds)",
        tax.throughput_ratio,
        tax.p3_throughput_ratio,
        tax.throughput_ratios.len()
    ));
    say(format!(
        "composition tax: reuse on both sides, WASIp3 build ÷ WASIp3 monolith {:.3}",
        tax.p3_vs_monolith_p3_ratio
    ));
    let r = &tax.p3_reuse;
    say(format!(
        "composition tax: nanohost's pool for 16 instances holds {} WASIp2 composed requests, {} WASIp3 ({} instances × {})",
        tax.composed.in_process.as_ref().map_or(0, |i| i.memory.live_in_pool_of_16),
        r.requests_held, r.live_in_pool_of_16, r.concurrent_per_instance
    ));
    Ok(tax)
}

fn app_tax(
    app: &str,
    manifest: &str,
    wasm: &str,
    rounds: Vec<Round>,
    in_process: Option<InProcess>,
) -> AppTax {
    let of = |f: &dyn Fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    AppTax {
        app: app.into(),
        manifest: manifest.into(),
        wasm: wasm.into(),
        accept_p50_us: of(&|r| r.accept.p50_us),
        accept_p99_us: of(&|r| r.accept.p99_us),
        end_to_end_p50_us: of(&|r| r.end_to_end.latency.p50_us),
        end_to_end_p99_us: of(&|r| r.end_to_end.latency.p99_us),
        orders_per_s: of(&|r| r.throughput.orders_per_s),
        host_cpu_us_per_order: of(&|r| per_order_us(r.host_cpu_s, r)),
        host_cpus: of(&|r| r.host_cpu_s / r.throughput.seconds.max(1e-9)),
        client_cpu_us_per_order: of(&|r| per_order_us(r.client_cpu_s, r)),
        lost: rounds
            .iter()
            .map(|r| r.end_to_end.lost + r.throughput.lost)
            .sum(),
        errors: rounds.iter().map(|r| r.throughput.errors).sum(),
        rounds,
        in_process,
    }
}

fn per_order_us(cpu_s: f64, r: &Round) -> f64 {
    cpu_s * 1e6 / (r.throughput.orders.max(1) as f64)
}

/// The apps of the phase: WASIp2 composed, WASIp2 monolith, WASIp3 composed, WASIp3 monolith.
const APPS: usize = 4;

/// Rounds over HTTP: each app in turn (the order rotating, so drift hits them alike) gets accept
/// latency, end to end and closed-loop throughput; during the throughput run the CPU time of the
/// harness (`host`) and of this process (the client) is taken.
async fn http_rounds(
    s: &TaxSettings,
    addrs: &[SocketAddr; APPS],
    host: u32,
    pb: &ProgressBar,
) -> Result<[Vec<Round>; APPS]> {
    let mut rounds: [Vec<Round>; APPS] = Default::default();
    for addr in addrs {
        load::warm_up(*addr, s.warm_up, s.connections, pb).await?;
    }
    for r in 0..s.rounds {
        pb.set_message(format!("composition tax: round {} of {}", r + 1, s.rounds));
        let order: [usize; APPS] = std::array::from_fn(|i| (i + r as usize) % APPS);
        for i in order {
            let addr = addrs[i];
            let accept = load::accept(addr, s.accept, pb).await?;
            let end_to_end = load::end_to_end(addr, s.end_to_end, pb).await?;
            let (host_before, client_before) = (cpu::of_process(host)?, cpu::of_self());
            // Read when the last order is answered: the GETs that count lost orders after it
            // are left out.
            let (throughput, (host_after, client_after)) =
                load::throughput_then(addr, s.connections, s.orders, pb, || {
                    (cpu::of_process(host), cpu::of_self())
                })
                .await?;
            let host_cpu_s = (host_after? - host_before).as_secs_f64();
            let client_cpu_s = (client_after - client_before).as_secs_f64();
            rounds[i].push(Round {
                accept,
                end_to_end,
                throughput,
                host_cpu_s,
                client_cpu_s,
            });
        }
    }
    Ok(rounds)
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

// ---- The wire contract, both apps alike ----

/// One request on a fresh connection (`Connection: close`), so each case stands alone.
fn exchange(addr: SocketAddr, sent: &wire_contract::Sent) -> Result<wire_contract::Answer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        sent.method,
        sent.path,
        sent.body.len()
    )
    .into_bytes();
    for (name, value) in &sent.headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(&sent.body);
    stream.write_all(&request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let end = (raw.windows(4).position(|w| w == b"\r\n\r\n"))
        .with_context(|| format!("no end of headers in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    let headers = lines
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Ok(wire_contract::Answer {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// Every case of `testing/contract/cases.toml` on one app: the names of the cases, and the
/// status of each step. Fails on the first answer that breaks the contract. (The store is
/// nanohost's in-memory one inside the harness process, which this cannot look into: the
/// "stores nothing" cases are counted by host/tests/order_app.rs and the shim check.)
fn contract(addr: SocketAddr, key: &str) -> Result<Vec<(String, Vec<u16>)>> {
    let mut seen = Vec::new();
    for case in wire_contract::cases() {
        let mut run = wire_contract::Run::new(key);
        let mut statuses = Vec::new();
        for step in &case.step {
            // The WASIp2 apps fulfil before the 202, so `eventually` holds at once there; the
            // WASIp3 build fulfils just after it, so such a step may be asked again (2 s).
            let (patience, pause) = (Duration::from_secs(2), Duration::from_millis(5));
            let answer = run
                .step_blocking(step, patience, |sent| exchange(addr, sent), pause)
                .with_context(|| case.name.clone())?;
            statuses.push(answer.status);
        }
        seen.push((case.name, statuses));
    }
    Ok(seen)
}

/// Both apps pass every case with the same status codes.
fn same_contract(composed: SocketAddr, monolith: SocketAddr) -> Result<Vec<String>> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // Each comparison its own idempotency key: the composed app is asked more than once.
    let key = format!(
        "tax-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    );
    let a = contract(composed, &key).context("the composed app breaks the wire contract")?;
    let b = contract(monolith, &key).context("the monolith breaks the wire contract")?;
    if a != b {
        bail!("the apps answer differently: composed {a:?}, monolith {b:?}");
    }
    Ok(a.into_iter().map(|(what, _)| what).collect())
}

// ---- In process: instantiation and memory per instance ----

/// Linear memory bytes and memories of the instance being measured. Instances are measured one
/// at a time on one thread, so process-wide counters reset per instance are exact.
static LINEAR_BYTES: AtomicU64 = AtomicU64::new(0);
static MEMORIES: AtomicU64 = AtomicU64::new(0);

/// Counts what the store's memories grow to; refuses what nanohost's limit would.
struct Counting;

impl ResourceLimiter for Counting {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > nanohost::Limits::default().max_memory_bytes {
            return Ok(false);
        }
        // A memory is created as a growth from 0 to its initial size.
        if current == 0 {
            MEMORIES.fetch_add(1, Ordering::Relaxed);
        }
        LINEAR_BYTES.fetch_add((desired - current) as u64, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

pub(crate) struct Prepared {
    engine: Engine,
    pre: ProxyPre<HostState>,
    ctx: nanohost::InstanceBuilder,
    component_bytes: u64,
    compiled_bytes: u64,
}

pub(crate) struct Samples {
    pub(crate) instantiate: hdrhistogram::Histogram<u64>,
    pub(crate) handle: hdrhistogram::Histogram<u64>,
    pub(crate) handle_again: hdrhistogram::Histogram<u64>,
    drop: hdrhistogram::Histogram<u64>,
    cycle: hdrhistogram::Histogram<u64>,
    cycle_cpu: hdrhistogram::Histogram<u64>,
    faults: Vec<u64>,
    linear_instantiated: Vec<u64>,
    linear_after: Vec<u64>,
    /// Core instances, component instances, memories, tables (the pool's counts).
    pub(crate) pool: [u64; 4],
    memories: u64,
}

impl Samples {
    pub(crate) fn new() -> Samples {
        Samples {
            instantiate: histogram(),
            handle: histogram(),
            handle_again: histogram(),
            drop: histogram(),
            cycle: histogram(),
            cycle_cpu: histogram(),
            faults: Vec::new(),
            linear_instantiated: Vec::new(),
            linear_after: Vec::new(),
            pool: [0; 4],
            memories: 0,
        }
    }
}

/// One engine per app (nanohost's configuration), so each pool's counts are that app's alone.
fn prepare(wasm: &Path) -> Result<Prepared> {
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    prepare_binary(&bytes).with_context(|| format!("cannot compile {}", wasm.display()))
}

/// [`prepare`] for a component in memory (one Spin links at load, say).
pub(crate) fn prepare_binary(bytes: &[u8]) -> Result<Prepared> {
    let engine = crate::micro::engine(false)?;
    let linker = nanohost::linker(&engine, false)?;
    let component = Component::from_binary(&engine, bytes).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let image = component.image_range();
    let compiled_bytes = (image.end as usize - image.start as usize) as u64;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
    Ok(Prepared {
        engine,
        pre,
        ctx: crate::micro::ctx()?,
        component_bytes: bytes.len() as u64,
        compiled_bytes,
    })
}

/// One `POST /order` through `wasi:http/incoming-handler` on a live instance; its time.
async fn post(
    store: &mut wasmtime::Store<HostState>,
    proxy: &wasmtime_wasi_http::p2::bindings::Proxy,
) -> Result<Duration> {
    let body = Full::new(Bytes::from_static(br#"{"details": "2 x espresso"}"#))
        .map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
    let request = hyper::Request::post("http://127.0.0.1/order")
        .header("content-type", "application/json")
        .body(body)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let request = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)?;
    let out = store.data_mut().http().new_response_outparam(tx)?;
    let t = Instant::now();
    proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, request, out)
        .await?;
    let took = t.elapsed();
    let response = rx
        .await
        .context("no response")?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    ensure!(
        response.status() == 202,
        "POST /order answered {}",
        response.status()
    );
    Ok(took)
}

/// Minor page faults of this thread so far (/proc/thread-self/stat, field 10).
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| {
            // The command name (field 2) may hold spaces; the fields after it do not.
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

/// One instance: new store, instantiate (timed), one `POST /order` (timed), its memory and page
/// faults; then the same request again on the same instance (timed), which separates what a
/// fresh instance pays on its first call from what every call pays. The store (the live
/// instance) is returned, so a caller can keep it alive.
pub(crate) async fn one(p: &Prepared, s: &mut Samples) -> Result<wasmtime::Store<HostState>> {
    LINEAR_BYTES.store(0, Ordering::Relaxed);
    MEMORIES.store(0, Ordering::Relaxed);
    let faults = minor_faults();
    let t = Instant::now();
    let mut store = crate::micro::store(&p.engine, &p.ctx);
    store.limiter(|_| Box::leak(Box::new(Counting)));
    let proxy = p.pre.instantiate_async(&mut store).await?;
    let _ = s.instantiate.record((t.elapsed().as_nanos() as u64).max(1));
    s.linear_instantiated
        .push(LINEAR_BYTES.load(Ordering::Relaxed));
    if let Some(m) = p.engine.pooling_allocator_metrics() {
        s.pool = [
            m.core_instances(),
            m.component_instances(),
            m.memories() as u64,
            m.tables() as u64,
        ];
    }
    s.memories = MEMORIES.load(Ordering::Relaxed);
    let first = post(&mut store, &proxy).await?;
    s.faults.push(minor_faults().saturating_sub(faults));
    let _ = s.handle.record((first.as_nanos() as u64).max(1));
    s.linear_after.push(LINEAR_BYTES.load(Ordering::Relaxed));
    let again = post(&mut store, &proxy).await?;
    let _ = s.handle_again.record((again.as_nanos() as u64).max(1));
    Ok(store)
}

/// The process's resident memory (`Rss:` of /proc/self/smaps_rollup), bytes.
fn resident_bytes() -> Result<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .context("no Rss in /proc/self/smaps_rollup")
}

/// Live instances, each after one `POST /order`, on a fresh engine (cold pool slots), until the
/// pool refuses one: how many fit, what stopped them, and the resident memory each added. The
/// first instance is left out of the memory figure: it also pages in the shared compiled code.
async fn live(wasm: &Path) -> Result<(u64, String, u64)> {
    let p = prepare(wasm)?;
    let mut s = Samples::new();
    let mut alive = vec![one(&p, &mut s).await?];
    let before = resident_bytes()?;
    let stopped_by = loop {
        if alive.len() >= 256 {
            break "256 instances (the measurement's own cap)".to_string();
        }
        match one(&p, &mut s).await {
            Ok(store) => alive.push(store),
            Err(e) => break format!("{e:#}"),
        }
    };
    let after = resident_bytes()?;
    let extra = alive.len() as u64 - 1;
    let per = after.saturating_sub(before) / extra.max(1);
    Ok((alive.len() as u64, stopped_by, per))
}

/// Both apps, instance after instance, alternating, so drift hits both alike.
async fn in_process(wasm: &[PathBuf; 2], instances: u64) -> Result<[InProcess; 2]> {
    let prepared = [prepare(&wasm[0])?, prepare(&wasm[1])?];
    let new = Samples::new;
    let mut samples = [new(), new()];
    // A tenth more as warm-up (code paged in, pool slots warm), dropped.
    let warm = instances / 10;
    for i in 0..instances + warm {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for a in order {
            let (t, cpu_at) = (Instant::now(), cpu::of_self());
            let store = one(&prepared[a], &mut samples[a]).await?;
            let dropping = Instant::now();
            drop(store);
            let ns = |d: Duration| (d.as_nanos() as u64).max(1);
            let s = &mut samples[a];
            let _ = s.drop.record(ns(dropping.elapsed()));
            let _ = s.cycle.record(ns(t.elapsed()));
            let _ = s.cycle_cpu.record(ns(cpu::of_self() - cpu_at));
        }
        if i + 1 == warm {
            samples = [new(), new()];
        }
    }
    let live = [live(&wasm[0]).await?, live(&wasm[1]).await?];
    let result = |p: &Prepared, s: &Samples, live: &(u64, String, u64)| {
        let mut after = s.linear_after.clone();
        after.sort_unstable();
        InProcess {
            instances,
            instantiate: summarize(&s.instantiate),
            handle: summarize(&s.handle),
            handle_again: summarize(&s.handle_again),
            drop: summarize(&s.drop),
            cycle: summarize(&s.cycle),
            cycle_cpu: summarize(&s.cycle_cpu),
            page_faults: {
                let mut f = s.faults.clone();
                f.sort_unstable();
                f.get(f.len() / 2).copied().unwrap_or(0)
            },
            memory: Memory {
                linear_bytes_instantiated: s.linear_instantiated.iter().copied().max().unwrap_or(0),
                linear_bytes_after_request: after.get(after.len() / 2).copied().unwrap_or(0),
                linear_bytes_after_request_max: after.last().copied().unwrap_or(0),
                core_instances: s.pool[0],
                component_instances: s.pool[1],
                memories: s.pool[2].max(s.memories),
                tables: s.pool[3],
                pool_resident_bytes_after: p
                    .engine
                    .pooling_allocator_metrics()
                    .map(|m| m.unused_memory_bytes_resident() as u64)
                    .unwrap_or(0),
                live_in_pool_of_16: live.0,
                live_stopped_by: live.1.clone(),
                resident_bytes_per_live_instance: live.2,
                component_bytes: p.component_bytes,
                compiled_bytes: p.compiled_bytes,
            },
        }
    };
    Ok([
        result(&prepared[0], &samples[0], &live[0]),
        result(&prepared[1], &samples[1], &live[1]),
    ])
}

/// The WASIp3 build in nanohost's pool: `instances` instantiations (timed, each dropped), then
/// instances kept alive until the pool refuses one. No request is sent: each instance serves
/// requests over HTTP in the rounds above; here only what it holds counts.
async fn reuse(wasm: &Path, instances: u64) -> Result<Reuse> {
    let engine = crate::micro::engine(true)?;
    let linker = nanohost::linker(&engine, true)?;
    let component = Component::from_file(&engine, wasm)
        .map_err(|e| anyhow::anyhow!("cannot compile {}: {e:#}", wasm.display()))?;
    let pre = linker.instantiate_pre(&component)?;
    let ctx = crate::micro::ctx()?;
    let mut timed = histogram();
    let mut counts = [0; 2];
    for _ in 0..instances.max(1) {
        let mut store = crate::micro::store(&engine, &ctx);
        let t = Instant::now();
        let instance = pre.instantiate_async(&mut store).await?;
        let _ = timed.record((t.elapsed().as_nanos() as u64).max(1));
        if let Some(m) = engine.pooling_allocator_metrics() {
            counts = [m.core_instances(), m.memories() as u64];
        }
        drop((instance, store));
    }
    let mut alive = Vec::new();
    let stopped_by = loop {
        if alive.len() >= 256 {
            break "256 instances (the measurement's own cap)".to_string();
        }
        let mut store = crate::micro::store(&engine, &ctx);
        match pre.instantiate_async(&mut store).await {
            Ok(_) => alive.push(store),
            Err(e) => break format!("{e:#}"),
        }
    };
    let concurrent = match nanohost::InstanceReuse::default().max_instance_concurrent_reuse_count {
        nanohost::Draw::Value(n) => n as u64,
        other => bail!("Spin's default concurrent reuse count is no longer one value: {other:?}"),
    };
    Ok(Reuse {
        instantiate: summarize(&timed),
        core_instances: counts[0],
        memories: counts[1],
        live_in_pool_of_16: alive.len() as u64,
        live_stopped_by: stopped_by,
        concurrent_per_instance: concurrent,
        requests_held: alive.len() as u64 * concurrent,
    })
}
