//! The composed hop alone: a component-model call from `events-local` into `fulfilment`,
//! inside one composed component, timed from the host with a monotonic clock.
//!
//! Two bench-only compositions (`bench/compositions/*.wac`) hold the same fulfilment and
//! kv-store as the order app:
//! - (a) `events-fulfil`: exports `events` (events-local → fulfilment → kv-store);
//! - (b) `fulfil-only`: exports `fulfilment` (fulfilment → kv-store).
//!
//! Both also export kv-store's `store`, used once to save the order. Then, in one instance
//! each, (a) `order-placed` and (b) `fulfil` run many times on that same stored order (after
//! the first call, fulfilling is a no-op: one key-value read and a JSON decode). The hop is
//! median(a) − median(b): what going through `events-local` and one more component boundary
//! adds. A direct Rust call of the same rule (`fulfilment::fulfil` on `order_domain::
//! MemoryStore`) shows the floor without any component model.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use wasmtime::component::Component;
use wasmtime::{Engine, Store};

use nanohost::{HostState, InstanceBuilder};

use crate::load::{histogram, summarize, Summary};

/// Host bindings for a world `$world` (WIT text `$inline`): one call per shape of component.
macro_rules! exporting {
    ($module:ident, $world:literal, $inline:literal) => {
        mod $module {
            wasmtime::component::bindgen!({
                path: "../wit",
                inline: $inline,
                world: $world,
                exports: { default: async },
            });
        }
    };
}

exporting!(
    events_app,
    "nano:bench/events-app",
    "package nano:bench; world events-app { export nano:orders/types@0.1.0; \
     export nano:orders/events@0.1.0; export nano:orders/store@0.1.0; }"
);
exporting!(
    fulfil_app,
    "nano:bench/fulfil-app",
    "package nano:bench; world fulfil-app { export nano:orders/types@0.1.0; \
     export nano:orders/fulfilment@0.1.0; export nano:orders/store@0.1.0; }"
);

/// The accepted order every call reads, as an `OrderRecord` of the types in `$types` (each set
/// of bindings, and `order_domain`, has its own types for the same WIT record).
macro_rules! stored_order {
    ($($types:ident)::+, $details:expr) => {{
        use $($types)::+::{Order, OrderRecord, OrderStatus};
        OrderRecord {
            order: Order {
                id: ORDER_ID.into(),
                details: $details.into(),
                placed_at: 1,
                idempotency_key: None,
            },
            status: OrderStatus::Accepted,
            updated_at: 1,
        }
    }};
}

/// An instance of `$wasm` (bindings `$app::$World`) in a store of its own, with the order saved
/// through its `store` export: `(store, bindings, record)`.
macro_rules! instance_with_order {
    ($app:ident::$world:ident, $engine:expr, $linker:expr, $wasm:expr, $details:expr) => {{
        let component = Component::new($engine, $wasm)?;
        let mut store = store($engine, &ctx()?);
        let app = $app::$world::instantiate_async(&mut store, &component, $linker).await?;
        let record = stored_order!($app::exports::nano::orders::types, $details);
        app.nano_orders_store()
            .call_save(&mut store, &record)
            .await?
            .map_err(|e| anyhow::anyhow!("save: {e:?}"))?;
        (store, app, record)
    }};
}

/// The order's details in the default run.
pub const DETAILS: &str = "2 x espresso";

pub const ORDER_ID: &str = "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11";

#[derive(Debug, Clone, Serialize, Default)]
pub struct Micro {
    pub concurrency_support: bool,
    /// Bytes of the order's details.
    pub details_bytes: usize,
    pub iterations: u64,
    /// (a) `events.order-placed` through events-local into fulfilment.
    pub order_placed: Summary,
    /// (b) `fulfilment.fulfil` called directly.
    pub fulfil: Summary,
    /// Median of the paired differences (a) − (b), nanoseconds.
    pub hop_ns: f64,
    /// Its bootstrap 95% interval.
    pub hop_ci95_ns: (f64, f64),
    /// The 90th and 99th percentiles of the paired differences.
    pub hop_p90_ns: f64,
    pub hop_p99_ns: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Direct {
    pub iterations: u64,
    /// `fulfilment::fulfil` on `order_domain::MemoryStore`, no component model.
    pub fulfil: Summary,
}

/// The engine nanohost uses (`nanohost::engine::config`), with `concurrency_support` as asked.
pub(crate) fn engine(concurrency_support: bool) -> Result<Engine> {
    let limits = nanohost::Limits {
        max_instances: 16,
        ..nanohost::Limits::default()
    };
    let mut config = nanohost::engine_config(&limits);
    config.concurrency_support(concurrency_support);
    Ok(Engine::new(&config)?)
}

/// What a component of `spin.toml` gets: an in-memory (SQLite) key-value store labelled
/// `default`. Made once and shared by the stores that should see the same data.
pub(crate) fn ctx() -> Result<InstanceBuilder> {
    InstanceBuilder::in_memory()
}

/// A new store (one per instance, as nanohost makes one per request) on `ctx`.
pub(crate) fn store(engine: &Engine, ctx: &InstanceBuilder) -> Store<HostState> {
    let mut store = ctx.store(engine);
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

/// Composes `bench/compositions/<name>.wac` with the `composition` crate.
pub fn compose(root: &Path, name: &str) -> Result<Vec<u8>> {
    let wac = root.join("bench/compositions").join(format!("{name}.wac"));
    composition::compose(&wac, &root.join("target/wac-deps"))
        .with_context(|| format!("cannot compose {}", wac.display()))
}

pub async fn run(
    events_wasm: &[u8],
    fulfil_wasm: &[u8],
    concurrency_support: bool,
    iterations: u64,
    details: &str,
) -> Result<Micro> {
    let engine = engine(concurrency_support)?;
    let linker = nanohost::linker(&engine, false)?;

    // (a)
    let (mut store_a, app, record) = instance_with_order!(
        events_app::EventsApp,
        &engine,
        &linker,
        events_wasm,
        details
    );
    let events = app.nano_orders_events();
    let ev_order = events_app::exports::nano::orders::events::Order {
        id: record.order.id.clone(),
        details: record.order.details.clone(),
        placed_at: record.order.placed_at,
        idempotency_key: None,
    };
    // (b)
    let (mut store_b, app, _) = instance_with_order!(
        fulfil_app::FulfilApp,
        &engine,
        &linker,
        fulfil_wasm,
        details
    );
    let fulfilment = app.nano_orders_fulfilment();
    let id = ORDER_ID.to_string();
    // Interleaved, the order alternating, so that drift and noise (the SQLite store behind
    // both) hit (a) and (b) alike; the hop is the median of the pairs' differences.
    let (mut ha, mut hb) = (histogram(), histogram());
    let mut diffs = Vec::with_capacity(iterations as usize);
    let timed = interleaved(
        iterations,
        async || {
            let r = events.call_order_placed(&mut store_a, &ev_order).await?;
            r.map_err(|e| anyhow::anyhow!("order-placed failed: {e:?}"))
        },
        async || {
            let r = fulfilment.call_fulfil(&mut store_b, &id).await?;
            r.map(drop)
                .map_err(|e| anyhow::anyhow!("fulfil failed: {e:?}"))
        },
    )
    .await?;
    for &[da, db] in &timed {
        let _ = ha.record(da);
        let _ = hb.record(db);
        diffs.push(da as f64 - db as f64);
    }
    let hop = crate::stats::paired(&diffs, 0x5eed_0000_0000_0a0b);
    Ok(Micro {
        concurrency_support,
        details_bytes: details.len(),
        iterations,
        hop_ns: hop.median_ns,
        hop_ci95_ns: hop.ci95_ns,
        hop_p90_ns: hop.p90_ns,
        hop_p99_ns: hop.p99_ns,
        order_placed: summarize(&ha),
        fulfil: summarize(&hb),
    })
}

/// `pairs` timed pairs of calls of `a` and `b` back to back, after a tenth as many for warm-up,
/// the order alternating so that drift and noise hit both alike: each pair's times, ns.
pub(crate) async fn interleaved(
    pairs: u64,
    mut a: impl AsyncFnMut() -> Result<()>,
    mut b: impl AsyncFnMut() -> Result<()>,
) -> Result<Vec<[u64; 2]>> {
    let warm = pairs / 10;
    let mut timed = Vec::with_capacity(pairs as usize);
    for i in 0..pairs + warm {
        let mut t = [0u64; 2];
        for k in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let start = Instant::now();
            if k == 0 {
                a().await?;
            } else {
                b().await?;
            }
            t[k] = (start.elapsed().as_nanos() as u64).max(1);
        }
        if i >= warm {
            timed.push(t);
        }
    }
    Ok(timed)
}

/// The same rule as a plain Rust call.
pub fn direct(iterations: u64) -> Result<Direct> {
    use order_domain::{MemoryStore, Store};
    let store = MemoryStore::default();
    store
        .save(&stored_order!(order_domain, DETAILS))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut h = histogram();
    for i in 0..iterations + iterations / 10 {
        let t = Instant::now();
        let r = std::hint::black_box(fulfilment::fulfil(
            &store,
            2,
            std::hint::black_box(ORDER_ID),
        ));
        let d = t.elapsed();
        r.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if i >= iterations / 10 {
            let _ = h.record((d.as_nanos() as u64).max(1));
        }
    }
    Ok(Direct {
        iterations,
        fulfil: summarize(&h),
    })
}
