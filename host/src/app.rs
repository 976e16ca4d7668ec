//! Loading an app: manifest + runtime config → compiled components with their capabilities.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use crate::allowed_hosts::AllowedHosts;
use crate::engine::{Footprint, Limits};
use crate::expressions::Resolver;
use crate::manifest::Manifest;
use crate::runtime_config::RuntimeConfig;
use crate::state::{ComponentCtx, HostState, Shared};

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

/// Choices about an app that are not in its manifest or runtime config.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub state_dir: StateDir,
    /// Run only these components and their triggers (`spin up -c`); empty: all.
    pub components: Vec<String>,
}

pub struct LoadedComponent {
    pub ctx: Arc<ComponentCtx>,
    pub component: Component,
}

pub struct App {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    pub manifest: Manifest,
    pub resolver: Resolver,
    pub components: HashMap<String, LoadedComponent>,
    pub shared: Arc<Shared>,
    pub limits: Limits,
    /// What one instance of each used component takes from the pooling allocator, measured at
    /// load; a component that could not be instantiated then has none (its trigger says why).
    pub footprints: HashMap<String, Footprint>,
    /// The HTTP components that export a WASIp3 handler (`wasip3::HTTP_HANDLER`): the HTTP
    /// trigger reuses their instances.
    pub wasip3: BTreeSet<String>,
    /// The first fatal error of a trigger (a lost Redis subscription): the host stops on it.
    failure: tokio::sync::watch::Sender<Option<String>>,
}

/// Everything Spin offers a component, linked once and shared by every instantiation (the
/// benchmark links its micro-benchmark components with it too).
pub fn linker(engine: &Engine) -> Result<Linker<HostState>> {
    linker_for(engine, false)
}

/// [`linker`], with WASI 0.3.0 (`wasi:cli`, `wasi:clocks`, ..., `wasi:http`) too when `wasip3`
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
    pub async fn load(
        manifest_path: &Path,
        runtime_config_path: Option<&Path>,
        variables: &[(String, String)],
        limits: Limits,
        options: &LoadOptions,
    ) -> Result<App> {
        let runtime_config = match runtime_config_path {
            Some(p) => RuntimeConfig::from_file(p)?,
            None => RuntimeConfig::default(),
        };
        let mut manifest = Manifest::from_file(manifest_path)?;
        manifest.retain_components(&options.components).context(
            "failed to resolve application with only components selected with --component",
        )?;
        let manifest_dir = manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        // Explicit values (`--variable`) win over SPIN_VARIABLE_* in the environment, as in Spin.
        let mut explicit = HashMap::new();
        for (name, value) in variables {
            if !manifest.variables.contains_key(name) {
                tracing::warn!("variable {name:?} is not declared in [variables]; ignored");
            }
            explicit.insert(
                format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
                value.clone(),
            );
        }
        let resolver = Resolver::new(&manifest.variables, |k| {
            explicit.get(k).cloned().or_else(|| std::env::var(k).ok())
        })
        .with_context(|| format!("cannot start {}", manifest_path.display()))?;

        // Only components some trigger uses are compiled, as in Spin.
        let used: BTreeSet<String> = manifest
            .trigger
            .http
            .iter()
            .map(|t| &t.component)
            .chain(manifest.trigger.redis.iter().map(|t| &t.component))
            .chain(manifest.trigger.mqtt.iter().map(|t| &t.component))
            .map(|c| Manifest::component_id(c).to_string())
            .collect();

        // Key-value stores: open only the ones some used component lists.
        let locations = crate::key_value::Locations {
            runtime_config_dir: runtime_config_path
                .and_then(Path::parent)
                .map(Path::to_path_buf),
            state_dir: match &options.state_dir {
                StateDir::Beside => Some(manifest_dir.join(".spin")),
                StateDir::Path(p) => Some(p.clone()),
                StateDir::InMemory => None,
            },
        };
        let store_cfgs =
            crate::key_value::effective_configs(&runtime_config.key_value_store, &locations);
        let wanted: BTreeSet<String> = used
            .iter()
            .flat_map(|id| manifest.component[id].key_value_stores.iter().cloned())
            .collect();
        for id in &used {
            for label in &manifest.component[id].key_value_stores {
                if !store_cfgs.contains_key(label) {
                    bail!(
                        "component {id:?} uses key-value store {label:?}, which is not defined: \
                         add [key_value_store.{label}] to the runtime config"
                    );
                }
            }
        }
        let key_value = crate::key_value::KeyValueApp::new(&store_cfgs, wanted)?;

        // Which HTTP components are WASIp3 handlers, read from their exports before compiling:
        // only then does the engine pay for component-model-async.
        let http_components: BTreeSet<&str> = manifest
            .trigger
            .http
            .iter()
            .map(|t| Manifest::component_id(&t.component))
            .collect();
        let mut wasip3 = BTreeSet::new();
        for id in http_components {
            let path = manifest.source_path(&manifest_dir, id);
            let Ok(bytes) = std::fs::read(&path) else {
                continue; // Reported below, with the other components.
            };
            let kind = crate::wasip3::handler_kind(&bytes)
                .with_context(|| format!("component {id:?} ({})", path.display()))?;
            if kind == crate::wasip3::HandlerKind::Wasip3 {
                wasip3.insert(id.to_string());
            }
        }
        let engine = crate::engine::new_engine_for(&limits, !wasip3.is_empty())?;
        let shared = Arc::new(Shared::default());

        // Every component of the manifest, used or not, as Spin expands `*.spin.internal`.
        let component_ids: Vec<String> = manifest.component.keys().cloned().collect();
        let mut compiling = Vec::new();
        for id in &used {
            let decl = &manifest.component[id];
            let allowed_hosts =
                AllowedHosts::parse(&decl.allowed_outbound_hosts, &resolver, &component_ids)
                    .with_context(|| format!("component {id:?}"))?;
            let variables = resolver
                .component_variables(&decl.variables)
                .with_context(|| format!("component {id:?}"))?;
            let ctx = Arc::new(ComponentCtx {
                id: id.clone(),
                allowed_hosts: Arc::new(allowed_hosts),
                key_value: key_value.component(&decl.key_value_stores),
                variables: Arc::new(variables),
                environment: decl.environment.clone().into_iter().collect(),
                max_memory_bytes: limits.max_memory_bytes,
                shared: shared.clone(),
            });
            let path = manifest.source_path(&manifest_dir, id);
            if !path.is_file() {
                bail!(
                    "component {id:?}: source {} does not exist (build it first)",
                    path.display()
                );
            }
            let engine = engine.clone();
            let id = id.clone();
            let dependencies = manifest.dependencies(&manifest_dir, &id);
            let inherit = decl.dependencies_inherit_configuration;
            compiling.push(tokio::task::spawn_blocking(move || {
                let component = if dependencies.is_empty() {
                    Component::from_file(&engine, &path).map_err(anyhow::Error::from)
                } else {
                    // Linked on every start, as `spin up` does (Spin's crates/compose).
                    std::fs::read(&path)
                        .map_err(anyhow::Error::from)
                        .and_then(|source| {
                            crate::dependencies::compose(&id, source, &dependencies, inherit)
                        })
                        .with_context(|| {
                            format!("failed to resolve dependencies for component {id:?}")
                        })
                        .and_then(|bytes| {
                            Component::from_binary(&engine, &bytes).map_err(anyhow::Error::from)
                        })
                }
                .with_context(|| format!("component {id:?}: cannot load {}", path.display()))?;
                anyhow::Ok((id, LoadedComponent { ctx, component }))
            }));
        }
        let mut components = HashMap::new();
        for c in compiling {
            let (id, loaded) = c.await??;
            components.insert(id, loaded);
        }

        let mut app = App {
            linker: linker_for(&engine, !wasip3.is_empty())?,
            wasip3,
            engine,
            manifest,
            resolver,
            components,
            shared,
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
        let mut store = wasmtime::Store::new(
            &self.engine,
            HostState::with_chaining(ctx.clone(), chaining.clone()),
        );
        store.limiter(|s| &mut s.limits);
        crate::engine::apply_deadline(&mut store, self.limits.timeout);
        store
    }
}
