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

#[cfg(test)]
pub fn new_engine(limits: &Limits) -> Result<Engine> {
    Engine::new(&config(limits)).map_err(anyhow::Error::from)
}

/// [`new_engine`] for an app with a WASIp3 component (`wasip3`): those run on
/// component-model-async, which WASIp2-only apps do without (see the module's comment).
pub fn new_engine_for(limits: &Limits, wasip3: bool) -> Result<Engine> {
    let mut config = config(limits);
    config.concurrency_support(wasip3);
    Engine::new(&config).map_err(anyhow::Error::from)
}

/// The engine configuration behind [`new_engine`]; the benchmark builds on it to compare
/// `concurrency_support` on and off with everything else equal.
pub fn config(limits: &Limits) -> Config {
    sized_config(limits, &PoolTotals::of(limits), PoolShare::PER_COMPONENT)
}

/// [`config`] with a pool of `totals`, of which one component may hold `per_component`.
pub fn sized_config(limits: &Limits, totals: &PoolTotals, per_component: PoolShare) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.concurrency_support(false);

    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(totals.component_instances as u32)
        .total_core_instances(totals.core_instances as u32)
        .total_memories(totals.memories as u32)
        .total_tables(totals.tables as u32)
        .total_stacks(totals.stacks as u32)
        .max_core_instances_per_component(per_component.core_instances)
        .max_memories_per_component(per_component.memories)
        .max_tables_per_component(per_component.tables)
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

/// A share of the pool: what one component may hold at most, or what one instance holds on
/// average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShare {
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
}

impl PoolShare {
    /// The most one component may hold in nanohost: room for a composed app of a few components.
    pub const PER_COMPONENT: PoolShare = PoolShare {
        core_instances: 64,
        memories: 16,
        tables: 64,
    };

    /// What nanohost reserves per instance. A composed app (wac plug) holds a core instance per
    /// sub-module and a memory per sub-component: these are the headroom for that;
    /// [`Footprint`] says what one takes.
    pub const PER_INSTANCE: PoolShare = PoolShare {
        core_instances: 8,
        memories: 2,
        tables: 8,
    };
}

/// What the pooling allocator holds in all, shared by every instance of every component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolTotals {
    pub component_instances: u64,
    pub core_instances: u64,
    pub memories: u64,
    pub tables: u64,
    pub stacks: u64,
}

impl PoolTotals {
    pub fn of(limits: &Limits) -> PoolTotals {
        PoolTotals::room_for(limits.max_instances, PoolShare::PER_INSTANCE)
    }

    /// Room for `instances` at once, each holding `each`.
    pub fn room_for(instances: u32, each: PoolShare) -> PoolTotals {
        let n = u64::from(instances);
        PoolTotals {
            component_instances: n,
            core_instances: n * u64::from(each.core_instances),
            memories: n * u64::from(each.memories),
            tables: n * u64::from(each.tables),
            stacks: n,
        }
    }

    /// How many instances of that footprint the pool holds at once: the scarcest resource
    /// decides. A footprint that takes none of anything leaves `component_instances`.
    pub fn instances_of(&self, one: &Footprint) -> u64 {
        [
            (self.component_instances, one.component_instances),
            (self.core_instances, one.core_instances),
            (self.memories, one.memories),
            (self.tables, one.tables),
            (self.stacks, one.stacks),
        ]
        .into_iter()
        .filter(|(_, need)| *need > 0)
        .map(|(total, need)| total / need)
        .min()
        .unwrap_or(self.component_instances)
    }
}

/// What one instance of a component takes from the pool (measured at load: `App::load`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub component_instances: u64,
    pub core_instances: u64,
    pub memories: u64,
    pub tables: u64,
    pub stacks: u64,
}

impl Footprint {
    /// What the pool's live counts say is in use now.
    pub fn in_use(metrics: &wasmtime::PoolingAllocatorMetrics) -> Footprint {
        Footprint {
            component_instances: metrics.component_instances(),
            core_instances: metrics.core_instances(),
            memories: metrics.memories() as u64,
            tables: metrics.tables() as u64,
            stacks: metrics.stacks() as u64,
        }
    }

    /// What `self` holds beyond `before`.
    pub fn since(&self, before: &Footprint) -> Footprint {
        Footprint {
            component_instances: self
                .component_instances
                .saturating_sub(before.component_instances),
            core_instances: self.core_instances.saturating_sub(before.core_instances),
            memories: self.memories.saturating_sub(before.memories),
            tables: self.tables.saturating_sub(before.tables),
            stacks: self.stacks.saturating_sub(before.stacks),
        }
    }

    /// Each resource the larger of the two: an instance of either fits in it.
    pub fn max(&self, other: &Footprint) -> Footprint {
        Footprint {
            component_instances: self.component_instances.max(other.component_instances),
            core_instances: self.core_instances.max(other.core_instances),
            memories: self.memories.max(other.memories),
            tables: self.tables.max(other.tables),
            stacks: self.stacks.max(other.stacks),
        }
    }
}

impl std::fmt::Display for Footprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} memories, {} core instances, {} tables, {} stacks, {} component instances",
            self.memories, self.core_instances, self.tables, self.stacks, self.component_instances
        )
    }
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

/// Installs the time limits on a store that serves many requests (a reused WASIp3 instance):
/// the guest yields to tokio at every tick and is never stopped here, since each request's
/// limit is kept by the trigger (`WorkerState::on_request_start` and the worker's expiration).
pub fn apply_yield_only<T: 'static>(store: &mut Store<T>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn footprint(memories: u64, core_instances: u64, tables: u64) -> Footprint {
        Footprint {
            component_instances: 1,
            core_instances,
            memories,
            tables,
            stacks: 1,
        }
    }

    /// `(max_instances, footprint, instances the pool holds)`.
    #[test]
    fn the_scarcest_resource_decides_how_many_instances_fit() {
        let cases = [
            // The composed order app on the default pool: its 6 memories bind.
            (1000, footprint(6, 23, 12), 333),
            // Core instances bind when memories are few.
            (1000, footprint(1, 100, 1), 80),
            // A plain component: one of each, the component instances bind.
            (1000, footprint(1, 1, 1), 1000),
            (10, footprint(2, 8, 8), 10),
            (10, footprint(3, 8, 8), 6),
            // Nothing measured (a component that could not be instantiated at load).
            (10, Footprint::default(), 10),
        ];
        for (max_instances, one, holds) in cases {
            let totals = PoolTotals::of(&Limits {
                max_instances,
                ..Limits::default()
            });
            assert_eq!(totals.instances_of(&one), holds, "{one}");
        }
    }

    /// What `App::load` measures: the pool's live counts around one instantiation.
    #[test]
    fn a_component_s_footprint_is_what_its_instance_takes_from_the_pool() {
        let engine = new_engine(&Limits::default()).unwrap();
        let metrics = engine
            .pooling_allocator_metrics()
            .expect("a pooling engine");
        // Two instances of a module with a memory and a table, one without: as `wac plug`
        // leaves a composed component, with a core instance per sub-module.
        let component = wasmtime::component::Component::new(
            &engine,
            r#"(component
                (core module $m (memory 1) (table 1 funcref))
                (core module $empty)
                (core instance (instantiate $m))
                (core instance (instantiate $m))
                (core instance (instantiate $empty)))"#,
        )
        .unwrap();
        let linker = wasmtime::component::Linker::<()>::new(&engine);
        let measured = crate::block_on(async {
            let before = Footprint::in_use(&metrics);
            let mut store = Store::new(&engine, ());
            linker
                .instantiate_async(&mut store, &component)
                .await
                .unwrap();
            Footprint::in_use(&metrics).since(&before)
        });
        assert_eq!(
            (
                measured.component_instances,
                measured.core_instances,
                measured.memories,
                measured.tables
            ),
            (1, 3, 2, 2),
            "{measured}"
        );
        assert_eq!(
            Footprint::in_use(&metrics).memories,
            0,
            "freed with the store"
        );
        assert_eq!(
            footprint(6, 1, 0).max(&footprint(1, 23, 7)),
            footprint(6, 23, 7)
        );
    }
}
