//! [`SpinStore`]: the `store` rules on Spin's key-value store `default` (`fermyon:spin/key-value`
//! for reads and writes, `wasi:keyvalue/atomics` for the claim, `wasi:keyvalue/batch` for the
//! save; all three reach the same store in Spin). The component exports it over WIT; a program
//! that links the business rules statically (bench/fixtures/monolith) calls it directly.

use crate::stored::{self, claim_key, claim_note_key, index_key, order_key, pending_key};
use order_domain::{Error, KeyClaim, OrderRecord, OrderStatus, PendingOrder, Store, Timestamp};
use spin_sdk::key_value;
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store as wasi_kv};

const LABEL: &str = "default";

/// Opens the store on every call, as Spin's key-value API expects of a short-lived instance.
pub struct SpinStore;

fn unavailable(e: impl std::fmt::Debug) -> Error {
    Error::Unavailable(format!("key-value store {LABEL:?}: {e:?}"))
}

fn open() -> Result<key_value::Store, Error> {
    key_value::Store::open(LABEL).map_err(unavailable)
}

fn load(store: &key_value::Store, id: &str) -> Result<Option<OrderRecord>, Error> {
    match store.get(&order_key(id)).map_err(unavailable)? {
        Some(bytes) => stored::decode(id, &bytes).map(Some),
        None => Ok(None),
    }
}

impl Store for SpinStore {
    fn load(&self, id: &str) -> Result<Option<OrderRecord>, Error> {
        load(&open()?, id)
    }

    fn find_by_key(&self, key: &str) -> Result<Option<OrderRecord>, Error> {
        let store = open()?;
        match store.get(&index_key(key)).map_err(unavailable)? {
            Some(id) => load(&store, &String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn claim_key(&self, key: &str) -> Result<bool, Error> {
        let bucket = wasi_kv::open(LABEL).map_err(unavailable)?;
        let count = atomics::increment(&bucket, &claim_key(key), 1).map_err(unavailable)?;
        Ok(count == 1)
    }

    fn release_key(&self, key: &str) -> Result<(), Error> {
        let store = open()?;
        // The claim first: a note without its claim is harmless, a claim without its note is
        // only noted again.
        store.delete(&claim_key(key)).map_err(unavailable)?;
        store.delete(&claim_note_key(key)).map_err(unavailable)
    }

    fn save(&self, record: &OrderRecord) -> Result<(), Error> {
        let id = &record.order.id;
        let pending = pending_key(record.order.placed_at, id);
        let mut writes = Vec::with_capacity(3);
        if record.status == OrderStatus::Accepted {
            writes.push((pending.clone(), id.as_bytes().to_vec()));
        }
        writes.push((order_key(id), stored::encode(record)));
        if let Some(key) = &record.order.idempotency_key {
            // Also on the fulfilled save: it repairs an index whose first writer died before it.
            writes.push((index_key(key), id.as_bytes().to_vec()));
        }
        // One batch: on Spin's SQLite store one transaction (one commit instead of three), on
        // Redis one MSET; either way the outbox entry, the record and its index are written
        // together.
        let bucket = wasi_kv::open(LABEL).map_err(unavailable)?;
        batch::set_many(&bucket, &writes).map_err(unavailable)?;
        if record.status == OrderStatus::Fulfilled {
            open()?.delete(&pending).map_err(unavailable)?;
        }
        Ok(())
    }

    fn discard(&self, record: &OrderRecord) -> Result<(), Error> {
        let store = open()?;
        let id = &record.order.id;
        if let Some(key) = &record.order.idempotency_key {
            let index = store.get(&index_key(key)).map_err(unavailable)?;
            if index.as_deref() == Some(id.as_bytes()) {
                store.delete(&index_key(key)).map_err(unavailable)?;
            }
        }
        store.delete(&order_key(id)).map_err(unavailable)?;
        store
            .delete(&pending_key(record.order.placed_at, id))
            .map_err(unavailable)
    }

    fn pending(&self, limit: u32) -> Result<Vec<PendingOrder>, Error> {
        let keys = open()?.get_keys().map_err(unavailable)?;
        Ok(stored::outbox(keys, limit)
            .into_iter()
            .map(|(since, id)| PendingOrder { id, since })
            .collect())
    }

    fn clear_pending(&self, entry: &PendingOrder) -> Result<(), Error> {
        open()?
            .delete(&pending_key(entry.since, &entry.id))
            .map_err(unavailable)
    }

    fn claims(&self, limit: u32) -> Result<Vec<KeyClaim>, Error> {
        let store = open()?;
        let keys = store.get_keys().map_err(unavailable)?;
        let mut claims = Vec::new();
        for key in stored::claimed_keys(keys, limit) {
            let indexed = store.exists(&index_key(&key)).map_err(unavailable)?;
            let noted_at = match store.get(&claim_note_key(&key)).map_err(unavailable)? {
                Some(bytes) => stored::decode_time(&bytes),
                None => None,
            };
            claims.push(KeyClaim {
                idempotency_key: key,
                indexed,
                noted_at,
            });
        }
        Ok(claims)
    }

    fn note_claim(&self, key: &str, at: Timestamp) -> Result<(), Error> {
        open()?
            .set(&claim_note_key(key), at.to_string().as_bytes())
            .map_err(unavailable)
    }
}
