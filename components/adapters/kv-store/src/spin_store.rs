//! [`SpinStore`] ([`SPIN_STORE`]): the `store` rules ([`crate::orders`]) on Spin's key-value store
//! `default` (`fermyon:spin/key-value` for reads and writes, `wasi:keyvalue/atomics` for counters,
//! `wasi:keyvalue/batch` for batches; all three reach the same store in Spin). The component
//! exports it over WIT; a program that links the business rules statically
//! (bench/fixtures/monolith) calls it directly.

use crate::orders::{Backend, KvStore};
use order_domain::Error;
use spin_sdk::key_value;
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store as wasi_kv};

const LABEL: &str = "default";

fn unavailable(e: impl std::fmt::Debug) -> Error {
    Error::Unavailable(format!("key-value store {LABEL:?}: {e:?}"))
}

/// Opens the store on every call, as Spin's key-value API expects of a short-lived instance.
pub struct SpinBackend;

fn open() -> Result<key_value::Store, Error> {
    key_value::Store::open(LABEL).map_err(unavailable)
}

fn bucket() -> Result<wasi_kv::Bucket, Error> {
    wasi_kv::open(LABEL).map_err(unavailable)
}

thread_local! {
    static STARTED: std::time::Instant = std::time::Instant::now();
}

impl Backend for SpinBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        open()?.get(key).map_err(unavailable)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        open()?.set(key, value).map_err(unavailable)
    }
    fn delete(&self, key: &str) -> Result<(), Error> {
        open()?.delete(key).map_err(unavailable)
    }
    fn exists(&self, key: &str) -> Result<bool, Error> {
        open()?.exists(key).map_err(unavailable)
    }
    fn set_many(&self, items: &[(String, Vec<u8>)]) -> Result<(), Error> {
        batch::set_many(&bucket()?, items).map_err(unavailable)
    }
    fn delete_many(&self, keys: &[String]) -> Result<(), Error> {
        batch::delete_many(&bucket()?, keys).map_err(unavailable)
    }
    fn keys(&self) -> Result<Vec<String>, Error> {
        open()?.get_keys().map_err(unavailable)
    }
    fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        atomics::increment(&bucket()?, key, delta).map_err(unavailable)
    }
    fn now_ms(&self) -> u64 {
        order_domain::now_millis()
    }
    fn monotonic_ms(&self) -> u64 {
        STARTED.with(|started| started.elapsed().as_millis() as u64)
    }
}

/// The `store` rules on Spin's `default` store.
pub type SpinStore = KvStore<SpinBackend>;

/// The one [`SpinStore`]: it holds no state (each call opens the store), so a constant serves.
pub const SPIN_STORE: SpinStore = KvStore(SpinBackend);
