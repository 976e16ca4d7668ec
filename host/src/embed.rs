//! Components run outside a manifest, the way nanohost runs them: its engine configuration, its
//! linker, and a store per instance. The benchmark measures instantiation and calls with these
//! (`bench/src/{micro,monolith,chains}.rs`), so that what it measures is what `nanohost up` does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store};

use crate::engine::{PoolShare, PoolTotals};
use crate::key_value::{KeyValueApp, KeyValuePlan, StoreConfig};
use crate::state::{ComponentCtx, HostState, Shared};
use crate::Limits;

/// nanohost's engine configuration for `limits` (pooling allocator, epoch interruption, no
/// component-model-async); a caller may change it before building its engine (the benchmark
/// turns `concurrency_support` on, or sizes the pool for its chains).
pub fn engine_config(limits: &Limits) -> wasmtime::Config {
    crate::engine::config(limits)
}

/// [`engine_config`] with a pool sized for `instances` at once, each of which may hold
/// `per_instance` (the benchmark's chains of 17 components need more than nanohost allows one).
pub fn sized_engine_config(
    limits: &Limits,
    instances: u32,
    per_instance: PoolShare,
) -> wasmtime::Config {
    let totals = PoolTotals::room_for(instances, per_instance);
    crate::engine::sized_config(limits, &totals, per_instance)
}

/// Everything nanohost offers a component, linked once for every instantiation; with `wasip3`,
/// WASI 0.3.0 too (the engine must then support component-model-async).
pub fn linker(engine: &Engine, wasip3: bool) -> Result<Linker<HostState>> {
    crate::app::linker_for(engine, wasip3)
}

/// Makes the stores of one component's instances. The component gets what a component of this
/// project's `spin.toml` gets from nanohost: the key-value store `default`, here an in-memory
/// SQLite database shared by every store this builder makes; no variables, no outbound hosts.
#[derive(Clone)]
pub struct InstanceBuilder {
    ctx: Arc<ComponentCtx>,
}

impl InstanceBuilder {
    /// A component with an in-memory `default` store of its own.
    pub fn in_memory() -> Result<InstanceBuilder> {
        let stores = BTreeMap::from([("default".to_string(), StoreConfig::Spin { path: None })]);
        let key_value = KeyValueApp::new(&KeyValuePlan::of(stores))?;
        let ctx = ComponentCtx {
            id: "embedded".into(),
            allowed_hosts: Default::default(),
            key_value: key_value.component(&["default".to_string()]),
            variables: Arc::new(HashMap::new()),
            environment: Vec::new(),
            max_memory_bytes: Limits::default().max_memory_bytes,
            shared: Arc::new(Shared::default()),
        };
        Ok(InstanceBuilder { ctx: Arc::new(ctx) })
    }

    /// A new store for one instance (nanohost makes one per request), without a time limit:
    /// the caller sets its epoch deadline and limiter if it wants them.
    pub fn store(&self, engine: &Engine) -> Store<HostState> {
        Store::new(engine, HostState::new(self.ctx.clone()))
    }
}

/// What nanohost reads for one component of a manifest: its source and, in name order, the
/// components Spin's `[component.<id>.dependencies]` links into it at load.
#[derive(Debug, Clone)]
pub struct ComponentFiles {
    pub source: std::path::PathBuf,
    pub dependencies: Vec<std::path::PathBuf>,
    /// `dependencies_inherit_configuration`: without it, Spin puts a deny-all adapter between
    /// the dependencies and the host (nanohost refuses such a component).
    pub inherit_configuration: bool,
}

impl ComponentFiles {
    /// Reads `manifest` (validated as `nanohost up` validates it) for `component`.
    pub fn of(manifest: &std::path::Path, component: &str) -> Result<ComponentFiles> {
        let m = crate::manifest::Manifest::from_file(manifest)?;
        anyhow::ensure!(
            m.component.contains_key(component),
            "{} has no component {component:?}",
            manifest.display()
        );
        let dir = manifest.parent().unwrap_or(std::path::Path::new("."));
        Ok(ComponentFiles {
            source: m.source_path(dir, component),
            dependencies: m
                .dependencies(dir, component)
                .into_values()
                .map(|d| d.path)
                .collect(),
            inherit_configuration: m.component[component].dependencies_inherit_configuration,
        })
    }
}

/// The component nanohost compiles for `component` of `manifest`: its source with its
/// dependencies linked in, as `nanohost up` (and `spin up`) link them at every start.
pub fn link_at_load(manifest: &std::path::Path, component: &str) -> Result<Vec<u8>> {
    let m = crate::manifest::Manifest::from_file(manifest)?;
    let dir = manifest.parent().unwrap_or(std::path::Path::new("."));
    let source = std::fs::read(m.source_path(dir, component))?;
    let inherit = m.component[component].dependencies_inherit_configuration;
    crate::dependencies::compose(component, source, &m.dependencies(dir, component), inherit)
}
