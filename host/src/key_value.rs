//! `fermyon:spin/key-value@2.0.0`: the embedded store and the Redis backend.
//!
//! A component may open only the labels in its `key_value_stores` (else `access-denied`, as
//! in Spin); a label the host does not know gives `no-such-store`. The embedded store is a
//! process-wide in-memory map: fast, shared by all components that list the same label, and
//! gone when the host stops (Spin's default store is a SQLite file; this one does not persist).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redis::AsyncCommands;
use wasmtime::component::Resource;

use crate::bindings::spin_host::fermyon::spin2_0_0::key_value::{self, Error};
use crate::state::HostState;

/// The in-memory store behind the `spin` type.
#[derive(Default)]
pub struct MemoryStore {
    map: RwLock<HashMap<String, Vec<u8>>>,
}

impl MemoryStore {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts).
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Vec<u8>>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A configured store.
#[derive(Clone)]
pub enum KvBackend {
    Memory(Arc<MemoryStore>),
    Redis(redis::aio::MultiplexedConnection),
}

/// The host side of an open `store` resource.
pub struct StoreHandle {
    backend: KvBackend,
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

impl KvBackend {
    pub async fn get(&self, key: String) -> Result<Option<Vec<u8>>, Error> {
        match self {
            KvBackend::Memory(m) => Ok(m.read().get(&key).cloned()),
            KvBackend::Redis(c) => c.clone().get(key).await.map_err(other),
        }
    }

    pub async fn set(&self, key: String, value: Vec<u8>) -> Result<(), Error> {
        match self {
            KvBackend::Memory(m) => {
                m.write().insert(key, value);
                Ok(())
            }
            KvBackend::Redis(c) => c.clone().set(key, value).await.map_err(other),
        }
    }

    pub async fn delete(&self, key: String) -> Result<(), Error> {
        match self {
            KvBackend::Memory(m) => {
                m.write().remove(&key);
                Ok(())
            }
            KvBackend::Redis(c) => c.clone().del(key).await.map_err(other),
        }
    }

    pub async fn exists(&self, key: String) -> Result<bool, Error> {
        match self {
            KvBackend::Memory(m) => Ok(m.read().contains_key(&key)),
            KvBackend::Redis(c) => c.clone().exists(key).await.map_err(other),
        }
    }

    pub async fn get_keys(&self) -> Result<Vec<String>, Error> {
        match self {
            KvBackend::Memory(m) => Ok(m.read().keys().cloned().collect()),
            KvBackend::Redis(c) => c.clone().keys("*").await.map_err(other),
        }
    }
}

impl key_value::Host for HostState {}

impl key_value::HostStore for HostState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<StoreHandle>, Error>> {
        let Some(backend) = self.component.kv_stores.get(&label) else {
            // Spin answers `access-denied` for any label not in the component's list; a label
            // no runtime config defines says `no-such-store` here, which tells the developer
            // more (Spin rejects listing such a label at start-up, and so does nanohost).
            return Ok(Err(if self.component.kv_known.contains(&label) {
                Error::AccessDenied
            } else {
                Error::NoSuchStore
            }));
        };
        let handle = StoreHandle {
            backend: backend.clone(),
        };
        match self.table.push(handle) {
            Ok(r) => Ok(Ok(r)),
            Err(_) => Ok(Err(Error::StoreTableFull)),
        }
    }

    async fn get(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let b = self.table.get(&store)?.backend.clone();
        Ok(b.get(key).await)
    }

    async fn set(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let b = self.table.get(&store)?.backend.clone();
        Ok(b.set(key, value).await)
    }

    async fn delete(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let b = self.table.get(&store)?.backend.clone();
        Ok(b.delete(key).await)
    }

    async fn exists(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let b = self.table.get(&store)?.backend.clone();
        Ok(b.exists(key).await)
    }

    async fn get_keys(
        &mut self,
        store: Resource<StoreHandle>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let b = self.table.get(&store)?.backend.clone();
        Ok(b.get_keys().await)
    }

    async fn drop(&mut self, store: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}
