//! The wasmtime engine and the per-instance limits.
//!
//! Spin's semantics: a fresh instance per request from a pre-instantiated component. The pooling
//! allocator makes that instantiation a few microseconds; `concurrency_support(false)` skips the
//! component-model-async bookkeeping that WASIp2 components never use (worth +11-13% req/s on a
//! trivial component on 2 cores). Each instance gets a memory limit and a time limit, so a runaway guest
//! fails alone and the host keeps serving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

/// How often the epoch ticks. A guest stuck in a loop yields to tokio at this interval, so it
/// cannot starve other requests on the same worker thread, and is stopped within one tick of
/// its time limit.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits applied to every instance.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum size of each linear memory of an instance, in bytes.
    pub max_memory_bytes: usize,
    /// Wall-clock limit for one request or message, including time spent waiting on I/O.
    pub timeout: Duration,
    /// Instances that may exist at once (the pooling allocator reserves slots for them).
    pub max_instances: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 128 << 20,
            timeout: Duration::from_secs(30),
            max_instances: 1000,
        }
    }
}

pub fn new_engine(limits: &Limits) -> Result<Engine> {
    Engine::new(&config(limits)).map_err(anyhow::Error::from)
}

/// The engine configuration behind [`new_engine`]; the benchmark builds on it to compare
/// `concurrency_support` on and off with everything else equal.
pub fn config(limits: &Limits) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.concurrency_support(false);

    let n = limits.max_instances;
    let mut pool = PoolingAllocationConfig::new();
    // A composed app (wac plug) holds one core instance and memory per sub-component.
    pool.total_component_instances(n)
        .total_core_instances(n * 8)
        .total_memories(n * 2)
        .total_tables(n * 8)
        .total_stacks(n)
        .max_core_instances_per_component(64)
        .max_memories_per_component(16)
        .max_tables_per_component(64)
        .max_memory_size(limits.max_memory_bytes)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20);
    tune_pool_from_env(&mut pool);
    // Resetting a slot normally `madvise`s its memory away, so the next instance on it
    // page-faults everything it touches again: a composed app has several memories and paid
    // ~35% of its request time for that here. With Linux's PAGEMAP_SCAN (6.7+) wasmtime resets
    // only the dirtied pages in place and keeps them resident (POST /order: ~3,100 → ~5,200
    // req/s on 2 cores). Without the ioctl, keep-resident means a memset of the whole region
    // per instance, which is slower than madvise: leave it off then.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(wasmtime::Enabled::Yes)
            .linear_memory_keep_resident(8 << 20)
            .table_keep_resident(1 << 20);
    }
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Opt-in pool tuning for experiments (README.md, "Benchmark"); unset, nothing changes. Applied
/// before the PAGEMAP_SCAN settings in [`new_engine`], which win where the kernel has it.
/// - `NANOHOST_POOL_KEEP_RESIDENT=<bytes>`: reset that much of each linear memory and table with
///   `memset` instead of `madvise`, so a reused slot takes no page faults
///   (`linear_memory_keep_resident`, `table_keep_resident`).
/// - `NANOHOST_POOL_DECOMMIT_BATCH=<n>`: decommit slots in batches of n (fewer TLB shootdowns).
fn tune_pool_from_env(pool: &mut PoolingAllocationConfig) {
    let number = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    if let Some(bytes) = number("NANOHOST_POOL_KEEP_RESIDENT") {
        pool.linear_memory_keep_resident(bytes)
            .table_keep_resident(bytes);
    }
    if let Some(n) = number("NANOHOST_POOL_DECOMMIT_BATCH") {
        pool.decommit_batch_size(n.max(1));
    }
}

/// Installs the time limit on a fresh store. The guest yields to tokio at every tick and traps
/// once `timeout` has passed since the store was made.
pub fn apply_deadline<T: 'static>(store: &mut Store<T>, timeout: Duration) {
    let start = Instant::now();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if start.elapsed() >= timeout {
            Err(wasmtime::Error::msg(format!(
                "time limit of {} ms exceeded",
                timeout.as_millis()
            )))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("nanohost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
