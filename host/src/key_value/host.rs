//! The guest-facing functions of both key-value interfaces, on [`KeyValueInstance`].

use wasmtime::component::Resource;

use super::bindings::fermyon::spin2_0_0::key_value as spin_kv;
use super::bindings::wasi::keyvalue::{atomics, batch, store};
use super::{BackendError, Cas, KeyValueInstance, Store};

type WResult<T> = wasmtime::Result<T>;

fn spin_err(e: BackendError) -> spin_kv::Error {
    spin_kv::Error::Other(e.0)
}

fn wasi_err(e: BackendError) -> store::Error {
    store::Error::Other(e.0)
}

impl KeyValueInstance {
    fn store(&self, r: &Resource<Store>) -> WResult<Store> {
        Ok(self.table.get(r)?.clone())
    }

    /// A new resource for the store of `label`: `denied` when the component does not list it,
    /// `full()` when the resource table is full.
    fn open_store<E>(
        &mut self,
        label: &str,
        denied: E,
        full: impl FnOnce() -> E,
    ) -> WResult<Result<Resource<Store>, E>> {
        let Some(store) = self.allowed_store(label) else {
            return Ok(Err(denied));
        };
        Ok(self.table.push(store).map_err(|_| full()))
    }
}

/// `get`, `set`, `delete`, `exists` and `drop` of a store: the same in both interfaces but for the
/// error type (`$err`, made from a [`BackendError`] by `$map`).
macro_rules! store_methods {
    ($err:ty, $map:expr) => {
        async fn get(
            &mut self,
            s: Resource<Store>,
            key: String,
        ) -> WResult<Result<Option<Vec<u8>>, $err>> {
            Ok(self.store(&s)?.get(&key).await.map_err($map))
        }

        async fn set(
            &mut self,
            s: Resource<Store>,
            key: String,
            value: Vec<u8>,
        ) -> WResult<Result<(), $err>> {
            Ok(self.store(&s)?.set(&key, &value).await.map_err($map))
        }

        async fn delete(&mut self, s: Resource<Store>, key: String) -> WResult<Result<(), $err>> {
            Ok(self.store(&s)?.delete(&key).await.map_err($map))
        }

        async fn exists(&mut self, s: Resource<Store>, key: String) -> WResult<Result<bool, $err>> {
            Ok(self.store(&s)?.exists(&key).await.map_err($map))
        }

        async fn drop(&mut self, s: Resource<Store>) -> WResult<()> {
            self.table.delete(s)?;
            Ok(())
        }
    };
}

impl spin_kv::Host for KeyValueInstance {}

impl spin_kv::HostStore for KeyValueInstance {
    async fn open(&mut self, label: String) -> WResult<Result<Resource<Store>, spin_kv::Error>> {
        let full = || spin_kv::Error::StoreTableFull;
        self.open_store(&label, spin_kv::Error::AccessDenied, full)
    }

    store_methods!(spin_kv::Error, spin_err);

    async fn get_keys(
        &mut self,
        s: Resource<Store>,
    ) -> WResult<Result<Vec<String>, spin_kv::Error>> {
        Ok(self.store(&s)?.get_keys().await.map_err(spin_err))
    }
}

impl store::Host for KeyValueInstance {
    async fn open(&mut self, identifier: String) -> WResult<Result<Resource<Store>, store::Error>> {
        let full = || store::Error::Other("store table full".into());
        self.open_store(&identifier, store::Error::AccessDenied, full)
    }
}

impl store::HostBucket for KeyValueInstance {
    store_methods!(store::Error, wasi_err);

    /// Every key at once, as in Spin, which refuses a cursor.
    async fn list_keys(
        &mut self,
        b: Resource<Store>,
        cursor: Option<String>,
    ) -> WResult<Result<store::KeyResponse, store::Error>> {
        if cursor.is_some() {
            return Ok(Err(store::Error::Other(
                "list_keys: cursor not supported".into(),
            )));
        }
        Ok(self
            .store(&b)?
            .get_keys()
            .await
            .map(|keys| store::KeyResponse { keys, cursor: None })
            .map_err(wasi_err))
    }
}

impl atomics::Host for KeyValueInstance {
    async fn increment(
        &mut self,
        b: Resource<Store>,
        key: String,
        delta: i64,
    ) -> WResult<Result<i64, store::Error>> {
        Ok(self
            .store(&b)?
            .increment(&key, delta)
            .await
            .map_err(wasi_err))
    }

    /// Spin's semantics: without a `current` first, the swap is a plain write.
    async fn swap(
        &mut self,
        c: Resource<Cas>,
        value: Vec<u8>,
    ) -> WResult<Result<(), atomics::CasError>> {
        let cas = self.table.get(&c)?;
        let (store, key, seen) = (cas.store.clone(), cas.key.clone(), cas.seen.clone());
        let outcome = match seen {
            None => store.set(&key, &value).await.map(|()| true),
            Some(old) => store.swap_if(&key, old.as_deref(), &value).await,
        };
        match outcome {
            Ok(true) => {
                self.table.delete(c)?;
                Ok(Ok(()))
            }
            Ok(false) => Ok(Err(atomics::CasError::CasFailed(c))),
            Err(e) => {
                self.table.delete(c)?;
                Ok(Err(atomics::CasError::StoreError(wasi_err(e))))
            }
        }
    }
}

impl atomics::HostCas for KeyValueInstance {
    async fn new(
        &mut self,
        b: Resource<Store>,
        key: String,
    ) -> WResult<Result<Resource<Cas>, store::Error>> {
        let store = self.store(&b)?;
        let cas = Cas {
            store,
            key,
            seen: None,
        };
        Ok(self
            .table
            .push(cas)
            .map_err(|_| store::Error::Other("cas table full".into())))
    }

    async fn current(
        &mut self,
        c: Resource<Cas>,
    ) -> WResult<Result<Option<Vec<u8>>, store::Error>> {
        let cas = self.table.get(&c)?;
        let value = match cas.store.get(&cas.key).await {
            Ok(v) => v,
            Err(e) => return Ok(Err(wasi_err(e))),
        };
        self.table.get_mut(&c)?.seen = Some(value.clone());
        Ok(Ok(value))
    }

    async fn drop(&mut self, c: Resource<Cas>) -> WResult<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

/// As Spin: an empty batch is answered without reaching the store.
impl batch::Host for KeyValueInstance {
    async fn get_many(
        &mut self,
        b: Resource<Store>,
        keys: Vec<String>,
    ) -> WResult<Result<Vec<(String, Option<Vec<u8>>)>, store::Error>> {
        let store = self.store(&b)?;
        if keys.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        Ok(store.get_many(keys).await.map_err(wasi_err))
    }

    async fn set_many(
        &mut self,
        b: Resource<Store>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> WResult<Result<(), store::Error>> {
        let store = self.store(&b)?;
        if key_values.is_empty() {
            return Ok(Ok(()));
        }
        Ok(store.set_many(key_values).await.map_err(wasi_err))
    }

    async fn delete_many(
        &mut self,
        b: Resource<Store>,
        keys: Vec<String>,
    ) -> WResult<Result<(), store::Error>> {
        let store = self.store(&b)?;
        if keys.is_empty() {
            return Ok(Ok(()));
        }
        Ok(store.delete_many(keys).await.map_err(wasi_err))
    }
}
