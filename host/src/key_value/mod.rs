//! The key-value capability: `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue@0.2.0-draft2`
//! (`store`, `atomics`, `batch`), as Spin 3.6.3 links them (spin `crates/factor-key-value`).
//!
//! - configuration: the runtime config's `[key_value_store.<label>]` tables ([`StoreConfig`]);
//!   without one, `default` is a SQLite file `.spin/sqlite_key_value.db` next to the manifest,
//!   as in Spin, so orders survive a restart;
//! - per-app state ([`KeyValueApp`]): one backend per label, shared by every instance, behind one
//!   trait ([`Backend`], as Spin's `Store`): a SQLite connection, or a Redis connection manager
//!   that reconnects after a Redis restart;
//! - per-instance state ([`KeyValueInstance`]): the labels this component may open, and the open
//!   stores in a resource table of its own;
//! - linking: [`add_to_linker`].
//!
//! Both interfaces open the same backends by label, so a component may mix them, as on Spin.

mod host;
mod redis;
mod sqlite;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use wasmtime::component::{HasSelf, Linker, ResourceTable};

use crate::secret::Secret;

pub use self::redis::RedisStore;
pub use self::sqlite::SqliteStore;

/// Bindings of just this capability's interfaces.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "nanohost:host/key-value",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": super::Store,
            "wasi:keyvalue/store.bucket": super::Store,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
    });
}

/// One `[key_value_store.<label>]` table of a runtime config.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// Spin's own store: SQLite in the file `path` (relative to the runtime config file), or
    /// in memory without a `path`.
    Spin {
        #[serde(default)]
        path: Option<PathBuf>,
    },
    /// The URL may carry a password (`redis://:<password>@host`): a `Secret`.
    Redis { url: Secret },
}

impl StoreConfig {
    pub fn validate(&self, label: &str) -> Result<()> {
        if let StoreConfig::Redis { url } = self {
            let shown = crate::redact::url(url.expose());
            let parsed = url::Url::parse(url.expose()).map_err(|e| {
                anyhow::anyhow!("key_value_store.{label}: url {shown:?} is not a valid URL: {e}")
            })?;
            if !matches!(parsed.scheme(), "redis" | "rediss") {
                bail!("key_value_store.{label}: url {shown:?} must start with redis://");
            }
        }
        Ok(())
    }
}

/// Where the stores live: what Spin calls the runtime config directory and the state directory.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    /// The directory of the runtime config file: relative `path`s are resolved against it.
    pub runtime_config_dir: Option<PathBuf>,
    /// `.spin` next to the manifest: the default store's file goes here. `None` keeps the
    /// default store in memory (tests and the benchmark ask for that explicitly).
    pub state_dir: Option<PathBuf>,
}

/// Every label's configuration: the runtime config's (relative SQLite paths resolved against its
/// directory), plus `default` if it does not name one.
pub fn effective_configs(
    configured: &BTreeMap<String, StoreConfig>,
    locations: &Locations,
) -> BTreeMap<String, StoreConfig> {
    let mut all = configured.clone();
    if let Some(dir) = &locations.runtime_config_dir {
        for config in all.values_mut() {
            if let StoreConfig::Spin { path: Some(p) } = config {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
    }
    all.entry("default".into())
        .or_insert_with(|| StoreConfig::Spin {
            path: locations
                .state_dir
                .as_ref()
                .map(|d| d.join("sqlite_key_value.db")),
        });
    all
}

/// A key-value backend, as Spin's `spin_factor_key_value::Store`: what both interfaces call on
/// an open store, whichever backend holds it (SQLite or Redis).
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError>;
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), BackendError>;
    async fn delete(&self, key: &str) -> Result<(), BackendError>;
    async fn exists(&self, key: &str) -> Result<bool, BackendError>;
    async fn get_keys(&self) -> Result<Vec<String>, BackendError>;
    /// All or nothing (SQLite: one transaction; Redis: one `MSET`), as in Spin.
    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), BackendError>;
    /// Every key in order, `None` where absent.
    async fn get_many(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, BackendError>;
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), BackendError>;
    /// Atomic: concurrent increments of one key each see a distinct result.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, BackendError>;
    /// Sets `key` to `new` if it still holds `old`. With `old` = `None` (the key was absent),
    /// Spin 3.6.3's SQLite store upserts without checking, so two racing writers both win;
    /// nanohost reproduces that rather than be kinder than Spin. Redis checks in both cases.
    async fn swap_if(
        &self,
        key: &str,
        old: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError>;
}

/// An open store: one label's backend, shared by every instance that opens the label.
#[derive(Clone)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    pub fn new(backend: impl Backend + 'static) -> Store {
        Store(Arc::new(backend))
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &(dyn Backend + 'static) {
        &*self.0
    }
}

/// The host side of a `cas` resource: the key and the value `current` saw.
pub struct Cas {
    store: Store,
    key: String,
    seen: Option<Option<Vec<u8>>>,
}

/// The configure stage's part for key-value: the store of each label a component that runs
/// lists (Spin's `KeyValueFactor::configure_app`).
#[derive(Debug, Clone, Default)]
pub struct KeyValuePlan {
    stores: BTreeMap<String, StoreConfig>,
}

impl KeyValuePlan {
    /// The stores `components` (`(id, key_value_stores)`) list, from the runtime config's
    /// tables (`configured`) and Spin's implicit `default`; every label must be defined.
    pub fn configure(
        configured: &BTreeMap<String, StoreConfig>,
        locations: &Locations,
        components: &[(&str, &[String])],
    ) -> Result<KeyValuePlan> {
        let all = effective_configs(configured, locations);
        let mut stores = BTreeMap::new();
        for (id, labels) in components {
            for label in labels.iter() {
                let Some(config) = all.get(label) else {
                    bail!(
                        "component {id:?} uses key-value store {label:?}, which is not defined: \
                         add [key_value_store.{label}] to the runtime config"
                    );
                };
                stores.insert(label.clone(), config.clone());
            }
        }
        Ok(KeyValuePlan { stores })
    }

    /// A plan of the given stores, as they are (the benchmark's in-memory `default`).
    pub fn of(stores: BTreeMap<String, StoreConfig>) -> KeyValuePlan {
        KeyValuePlan { stores }
    }
}

/// Per-app state: the backends of the labels some component uses.
pub struct KeyValueApp {
    stores: HashMap<String, Store>,
}

impl KeyValueApp {
    /// Opens the stores of the plan. SQLite files are created now (a bad path fails start-up, as
    /// in Spin); Redis connects on first use, so a Redis that is down at start-up is a 503 later,
    /// not a failed start (Spin does the same).
    pub fn new(plan: &KeyValuePlan) -> Result<KeyValueApp> {
        let mut stores = HashMap::new();
        for (label, config) in &plan.stores {
            let store = match config {
                StoreConfig::Spin { path } => Store::new(
                    SqliteStore::open(label, path.as_deref())
                        .with_context(|| format!("key-value store {label:?}"))?,
                ),
                StoreConfig::Redis { url } => Store::new(RedisStore::new(url)?),
            };
            stores.insert(label.clone(), store);
        }
        Ok(KeyValueApp { stores })
    }

    /// What one component may open: the stores of its `key_value_stores`.
    pub fn component(&self, labels: &[String]) -> Arc<ComponentStores> {
        Arc::new(ComponentStores {
            allowed: labels
                .iter()
                .filter_map(|l| Some((l.clone(), self.stores.get(l)?.clone())))
                .collect(),
        })
    }
}

/// The stores one component lists, resolved at start-up.
#[derive(Default)]
pub struct ComponentStores {
    allowed: HashMap<String, Store>,
}

/// Per-instance state.
pub struct KeyValueInstance {
    stores: Arc<ComponentStores>,
    table: ResourceTable,
}

impl KeyValueInstance {
    pub fn new(stores: Arc<ComponentStores>) -> KeyValueInstance {
        KeyValueInstance {
            stores,
            table: ResourceTable::new(),
        }
    }

    /// Spin answers `access-denied` for every label the component does not list.
    fn allowed_store(&self, label: &str) -> Option<Store> {
        self.stores.allowed.get(label).cloned()
    }
}

/// Links both interfaces; `get` finds this capability's state in the store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut KeyValueInstance,
) -> Result<()> {
    use bindings::fermyon::spin2_0_0::key_value;
    use bindings::wasi::keyvalue::{atomics, batch, store};
    key_value::add_to_linker::<T, HasSelf<KeyValueInstance>>(linker, get)?;
    store::add_to_linker::<T, HasSelf<KeyValueInstance>>(linker, get)?;
    atomics::add_to_linker::<T, HasSelf<KeyValueInstance>>(linker, get)?;
    batch::add_to_linker::<T, HasSelf<KeyValueInstance>>(linker, get)?;
    Ok(())
}

/// What a backend operation fails with; each interface maps it to its own error type.
#[derive(Debug, Clone)]
pub struct BackendError(pub String);

impl BackendError {
    fn new(e: impl std::fmt::Display) -> BackendError {
        BackendError(crate::redact::message(&e.to_string()))
    }
}

#[cfg(test)]
mod tests;
