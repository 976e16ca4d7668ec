//! Opening an app: the plan's components (see `plan`) compiled, each with its capabilities.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use crate::allowed_hosts::AllowedHosts;
use crate::dependencies::Dependency;
use crate::engine::{Footprint, Limits};
use crate::expressions::{Resolver, Template};
use crate::key_value::{KeyValueApp, KeyValuePlan};
use crate::manifest::{ComponentSource, Manifest};
use crate::secret::Value;
use crate::state::{ComponentCtx, HostState, Shared, Stores};

/// Where the default key-value store lives (Spin's `--state-dir`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateDir {
    /// `.spin` next to the manifest, as in Spin.
    #[default]
    Beside,
    /// A folder of the caller's.
    Path(std::path::PathBuf),
    /// No folder: the default store is an in-memory SQLite database (tests, benchmark).
    InMemory,
}

/// What one `[component.<id>]` gets, resolved by the configure stage.
#[derive(Debug, Clone, Default)]
pub(crate) struct ComponentPlan {
    /// `source` as written in the manifest.
    pub source_as_written: Option<String>,
    /// `source` resolved against the manifest's folder.
    pub source: PathBuf,
    pub allowed_hosts: Arc<AllowedHosts>,
    /// `allowed_outbound_hosts` with their templates resolved (as written where one does not).
    pub allowed_outbound_hosts: Vec<String>,
    /// Application variables the component's templates refer to.
    pub uses_variables: BTreeSet<String>,
    /// The component's `variables` table, resolved (an entry made from a secret is secret).
    pub variables: Arc<HashMap<String, Value>>,
    pub key_value_stores: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub dependencies: BTreeMap<String, Dependency>,
    pub inherit_configuration: bool,
    /// Whether a trigger runs it: only those are compiled, as in Spin.
    pub used: bool,
}

impl ComponentPlan {
    /// Component `id`'s configuration, and what is wrong with it (its parts that fail are left
    /// empty). `ids` are all the app's components, which `*.spin.internal` stands for.
    pub(crate) fn configure(
        manifest: &Manifest,
        id: &str,
        resolver: &Resolver,
        ids: &[String],
        manifest_dir: &Path,
    ) -> (ComponentPlan, Vec<anyhow::Error>) {
        let decl = &manifest.component[id];
        let mut problems = Vec::new();
        let allowed_hosts = AllowedHosts::parse(&decl.allowed_outbound_hosts, resolver, ids)
            .unwrap_or_else(|e| {
                problems.push(e);
                AllowedHosts::default()
            });
        let variables = resolver
            .component_variables(&decl.variables)
            .unwrap_or_else(|e| {
                problems.push(e);
                HashMap::new()
            });
        let templates = decl.variables.values().chain(&decl.allowed_outbound_hosts);
        let uses_variables = templates
            .filter_map(|t| Template::parse(t).ok())
            .flat_map(|t| t.variables().map(str::to_string).collect::<Vec<_>>())
            .collect();
        let plan = ComponentPlan {
            source_as_written: match &decl.source {
                ComponentSource::Path(p) => Some(p.clone()),
                ComponentSource::Remote(_) => None,
            },
            source: manifest.source_path(manifest_dir, id),
            allowed_hosts: Arc::new(allowed_hosts),
            allowed_outbound_hosts: decl
                .allowed_outbound_hosts
                .iter()
                .map(|h| shown_host(resolver, h))
                .collect(),
            uses_variables,
            variables: Arc::new(variables),
            key_value_stores: decl.key_value_stores.clone(),
            environment: decl.environment.clone().into_iter().collect(),
            dependencies: manifest.dependencies(manifest_dir, id),
            inherit_configuration: decl.dependencies_inherit_configuration,
            used: false,
        };
        (plan, problems)
    }
}

/// An `allowed_outbound_hosts` entry as `check` shows it: resolved, or as written where it does
/// not resolve or a secret went into it.
fn shown_host(resolver: &Resolver, entry: &str) -> String {
    match resolver.value(entry) {
        Ok(Value::Plain(host)) => host,
        Ok(Value::Secret(_)) | Err(_) => entry.to_string(),
    }
}

pub struct LoadedComponent {
    pub ctx: Arc<ComponentCtx>,
    pub component: Component,
}

pub struct App {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    pub components: HashMap<String, LoadedComponent>,
    pub limits: Limits,
    /// Makes the store of each instance.
    pub stores: Stores,
    /// What one instance of each used component takes from the pooling allocator, measured at
    /// load; a component that could not be instantiated then has none (its trigger says why).
    pub footprints: HashMap<String, Footprint>,
    /// The HTTP components that export a WASIp3 handler (`wasip3::HTTP_HANDLER`): the HTTP
    /// trigger reuses their instances.
    pub wasip3: BTreeSet<String>,
    /// The first fatal error of a trigger (a lost Redis subscription): the host stops on it.
    failure: tokio::sync::watch::Sender<Option<String>>,
}

/// Which HTTP components are WASIp3 handlers, read from their exports before compiling: only
/// then does the engine pay for component-model-async.
fn wasip3_handlers(
    components: &BTreeMap<String, ComponentPlan>,
    http_components: &[String],
) -> Result<BTreeSet<String>> {
    let mut wasip3 = BTreeSet::new();
    for id in http_components {
        let path = &components[id].source;
        let Ok(bytes) = std::fs::read(path) else {
            continue; // Reported with the other components, when they are compiled.
        };
        let kind = crate::wasip3::handler_kind(&bytes)
            .with_context(|| format!("component {id:?} ({})", path.display()))?;
        if kind == crate::wasip3::HandlerKind::Wasip3 {
            wasip3.insert(id.clone());
        }
    }
    Ok(wasip3)
}

/// Compiles component `id`, its dependencies linked first, on every start, as `spin up` does
/// (Spin's crates/compose).
fn compile(engine: &Engine, id: &str, plan: &ComponentPlan) -> Result<Component> {
    let path = &plan.source;
    let component = if plan.dependencies.is_empty() {
        Component::from_file(engine, path).map_err(anyhow::Error::from)
    } else {
        std::fs::read(path)
            .map_err(anyhow::Error::from)
            .and_then(|source| {
                crate::dependencies::compose(
                    id,
                    source,
                    &plan.dependencies,
                    plan.inherit_configuration,
                )
            })
            .with_context(|| format!("failed to resolve dependencies for component {id:?}"))
            .and_then(|bytes| Component::from_binary(engine, &bytes).map_err(anyhow::Error::from))
    };
    component.with_context(|| format!("component {id:?}: cannot load {}", path.display()))
}

/// Everything Spin offers a component, linked once and shared by every instantiation; with WASI 0.3.0 (`wasi:cli`, `wasi:clocks`, ..., `wasi:http`) too when `wasip3`
/// (the engine must then support component-model-async: `engine::new_engine_for`), with Spin 4's
/// `spin:variables@3.0.0`. The Spin 2.0.0 interfaces are linked for both: a WASIp3 component
/// calls them synchronously.
pub fn linker_for(engine: &Engine, wasip3: bool) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    if wasip3 {
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        crate::variables::add_v3_to_linker(&mut linker, |s: &mut HostState| &mut s.variables)?;
    }
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // Not wasi-http's `add_to_linker_async`: it re-adds WASI interfaces ("defined twice").
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::outbound_http::add_to_linker(&mut linker)?;
    // One call per capability, each handing over only its own per-instance state.
    crate::key_value::add_to_linker(&mut linker, |s: &mut HostState| &mut s.key_value)?;
    crate::variables::add_to_linker(&mut linker, |s: &mut HostState| &mut s.variables)?;
    crate::outbound_redis::add_to_linker(&mut linker, |s: &mut HostState| &mut s.redis)?;
    crate::outbound_mqtt::add_to_linker(&mut linker, |s: &mut HostState| &mut s.mqtt)?;
    // Type-only interfaces the trigger worlds import (spin-sdk and spin-mqtt components
    // import them alongside their exports); an empty instance satisfies them.
    linker.instance("fermyon:spin/redis-types")?;
    linker.instance("spin:mqtt-trigger/spin-mqtt-types")?;
    Ok(linker)
}

impl App {
    /// Opens what the plan's components and key-value part say: the stores, the compiled
    /// components (only those a trigger runs, as in Spin), each with its capabilities.
    /// `http_components` are the components HTTP triggers run (WASIp3 ones are served with reuse).
    pub(crate) async fn open(
        components: &BTreeMap<String, ComponentPlan>,
        key_value: &KeyValuePlan,
        http_components: &[String],
        limits: Limits,
    ) -> Result<App> {
        let key_value = KeyValueApp::new(key_value)?;
        let wasip3 = wasip3_handlers(components, http_components)?;
        let engine = crate::engine::new_engine_for(&limits, !wasip3.is_empty())?;
        let shared = Arc::new(Shared::default());
        let mut compiling = Vec::new();
        for (id, plan) in components.iter().filter(|(_, c)| c.used) {
            let ctx = Arc::new(ComponentCtx {
                id: id.clone(),
                allowed_hosts: plan.allowed_hosts.clone(),
                key_value: key_value.component(&plan.key_value_stores),
                variables: plan.variables.clone(),
                environment: plan.environment.clone(),
                max_memory_bytes: limits.max_memory_bytes,
                shared: shared.clone(),
            });
            if !plan.source.is_file() {
                bail!(
                    "component {id:?}: source {} does not exist (build it first)",
                    plan.source.display()
                );
            }
            let (engine, id, plan) = (engine.clone(), id.clone(), plan.clone());
            compiling.push(tokio::task::spawn_blocking(move || {
                let component = compile(&engine, &id, &plan)?;
                anyhow::Ok((id, LoadedComponent { ctx, component }))
            }));
        }
        let mut loaded = HashMap::new();
        for c in compiling {
            let (id, component) = c.await??;
            loaded.insert(id, component);
        }
        let mut app = App {
            linker: linker_for(&engine, !wasip3.is_empty())?,
            wasip3,
            stores: Stores::new(engine.clone(), limits.timeout),
            engine,
            components: loaded,
            limits,
            footprints: HashMap::new(),
            failure: tokio::sync::watch::Sender::new(None),
        };
        app.footprints = app.measure_footprints().await;
        Ok(app)
    }

    /// Instantiates each component once, alone, and reads what the pool's live counts grew by:
    /// a composed component takes a memory per sub-component and a core instance per module
    /// instance, which only the compiled component knows. Runs before any trigger starts, so
    /// nothing else holds a slot meanwhile.
    async fn measure_footprints(&self) -> HashMap<String, Footprint> {
        let Some(metrics) = self.engine.pooling_allocator_metrics() else {
            return HashMap::new();
        };
        let mut footprints = HashMap::new();
        for (id, loaded) in &self.components {
            let Ok(pre) = self.linker.instantiate_pre(&loaded.component) else {
                continue;
            };
            let before = Footprint::in_use(&metrics);
            let mut store = self.store(&loaded.ctx, &Default::default());
            match pre.instantiate_async(&mut store).await {
                Ok(_) => {
                    let footprint = Footprint::in_use(&metrics).since(&before);
                    tracing::debug!(component = %id, "one instance takes {footprint}");
                    footprints.insert(id.clone(), footprint);
                }
                Err(e) => tracing::warn!(component = %id, "cannot instantiate it at load: {e:#}"),
            }
        }
        footprints
    }

    /// Ends the app with `why` (logged now; `RunningHost::failed` returns it).
    pub fn fail(&self, why: String) {
        tracing::error!("{why}");
        self.failure.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(why);
                true
            } else {
                false
            }
        });
    }

    /// Resolves with the first fatal error.
    pub async fn failed(&self) -> String {
        let mut rx = self.failure.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Pre-instantiates component `id` for a trigger: `typed` checks that it exports what the
    /// trigger calls (`ProxyPre::new`, `RedisTriggerPre::new`, ...); `expects` says what that is,
    /// for the start-up error.
    pub fn prepare<P>(
        &self,
        id: &str,
        typed: impl FnOnce(wasmtime::component::InstancePre<HostState>) -> wasmtime::Result<P>,
        expects: &str,
    ) -> Result<(Arc<ComponentCtx>, P)> {
        let loaded = self.component(id);
        let pre = self
            .linker
            .instantiate_pre(&loaded.component)
            .and_then(typed)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| {
                format!("component {id:?} cannot be used here: it must {expects} and import only what nanohost provides")
            })?;
        Ok((loaded.ctx.clone(), pre))
    }

    pub fn component(&self, id: &str) -> &LoadedComponent {
        &self.components[id]
    }

    /// A fresh store for one request or message.
    pub fn store(
        &self,
        ctx: &Arc<ComponentCtx>,
        chaining: &crate::outbound_http::ServiceChaining,
    ) -> wasmtime::Store<HostState> {
        self.stores.store(ctx, chaining)
    }
}
