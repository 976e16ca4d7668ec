//! The wasm glue: `store` onto Spin key-value (`fermyon:spin/key-value` for reads and writes,
//! `wasi:keyvalue/atomics` for the claim; both reach the same `default` store in Spin).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nano:orders/kv-store",
});

use crate::stored::{self, claim_key, claim_note_key, index_key, order_key, pending_key};
use exports::nano::orders::store::{Guest, KeyClaim, PendingOrder};
use exports::nano::orders::types as wit;
use order_domain::{Error, OrderRecord, OrderStatus};
use spin_sdk::key_value::Store;
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store as wasi_kv};

const LABEL: &str = "default";

fn unavailable(e: impl std::fmt::Debug) -> Error {
    Error::Unavailable(format!("key-value store {LABEL:?}: {e:?}"))
}

fn open() -> Result<Store, Error> {
    Store::open(LABEL).map_err(unavailable)
}

fn load(store: &Store, id: &str) -> Result<Option<OrderRecord>, Error> {
    match store.get(&order_key(id)).map_err(unavailable)? {
        Some(bytes) => stored::decode(id, &bytes).map(Some),
        None => Ok(None),
    }
}

struct KvStore;

impl Guest for KvStore {
    fn load(id: String) -> Result<Option<wit::OrderRecord>, wit::Error> {
        Ok(load(&open()?, &id)?.map(to_wit))
    }

    fn find_by_key(key: String) -> Result<Option<wit::OrderRecord>, wit::Error> {
        let store = open()?;
        let found = match store.get(&index_key(&key)).map_err(unavailable)? {
            Some(id) => load(&store, &String::from_utf8_lossy(&id))?,
            None => None,
        };
        Ok(found.map(to_wit))
    }

    fn claim_key(key: String) -> Result<bool, wit::Error> {
        let bucket = wasi_kv::open(LABEL).map_err(unavailable)?;
        let count = atomics::increment(&bucket, &claim_key(&key), 1).map_err(unavailable)?;
        Ok(count == 1)
    }

    fn release_key(key: String) -> Result<(), wit::Error> {
        let store = open()?;
        // The claim first: a note without its claim is harmless, a claim without its note is
        // only noted again.
        store.delete(&claim_key(&key)).map_err(unavailable)?;
        Ok(store.delete(&claim_note_key(&key)).map_err(unavailable)?)
    }

    fn claims(limit: u32) -> Result<Vec<KeyClaim>, wit::Error> {
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

    fn note_claim(key: String, at: u64) -> Result<(), wit::Error> {
        Ok(open()?
            .set(&claim_note_key(&key), at.to_string().as_bytes())
            .map_err(unavailable)?)
    }

    fn save(record: wit::OrderRecord) -> Result<(), wit::Error> {
        Ok(save(&from_wit(record))?)
    }

    fn discard(record: wit::OrderRecord) -> Result<(), wit::Error> {
        Ok(discard(&from_wit(record))?)
    }

    fn pending(limit: u32) -> Result<Vec<PendingOrder>, wit::Error> {
        let keys = open()?.get_keys().map_err(unavailable)?;
        Ok(stored::outbox(keys, limit)
            .into_iter()
            .map(|(since, id)| PendingOrder { id, since })
            .collect())
    }

    fn clear_pending(entry: PendingOrder) -> Result<(), wit::Error> {
        Ok(open()?
            .delete(&pending_key(entry.since, &entry.id))
            .map_err(unavailable)?)
    }
}

fn save(record: &OrderRecord) -> Result<(), Error> {
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
    // One batch: on Spin's SQLite store one transaction (one commit instead of three), on Redis
    // one MSET; either way the outbox entry, the record and its index are written together.
    let bucket = wasi_kv::open(LABEL).map_err(unavailable)?;
    batch::set_many(&bucket, &writes).map_err(unavailable)?;
    if record.status == OrderStatus::Fulfilled {
        open()?.delete(&pending).map_err(unavailable)?;
    }
    Ok(())
}

fn discard(record: &OrderRecord) -> Result<(), Error> {
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

// The exported interfaces have their own generated Rust types (wit-bindgen's `with` reuses
// bindings for imports only); the rules above work on the domain's, which these map to and from.

fn to_wit(r: OrderRecord) -> wit::OrderRecord {
    wit::OrderRecord {
        order: wit::Order {
            id: r.order.id,
            details: r.order.details,
            placed_at: r.order.placed_at,
            idempotency_key: r.order.idempotency_key,
        },
        status: match r.status {
            OrderStatus::Accepted => wit::OrderStatus::Accepted,
            OrderStatus::Fulfilled => wit::OrderStatus::Fulfilled,
        },
        updated_at: r.updated_at,
    }
}

fn from_wit(r: wit::OrderRecord) -> OrderRecord {
    OrderRecord {
        order: order_domain::Order {
            id: r.order.id,
            details: r.order.details,
            placed_at: r.order.placed_at,
            idempotency_key: r.order.idempotency_key,
        },
        status: match r.status {
            wit::OrderStatus::Accepted => OrderStatus::Accepted,
            wit::OrderStatus::Fulfilled => OrderStatus::Fulfilled,
        },
        updated_at: r.updated_at,
    }
}

impl From<Error> for wit::Error {
    fn from(e: Error) -> wit::Error {
        match e {
            Error::Invalid(m) => wit::Error::Invalid(m),
            Error::NotFound(m) => wit::Error::NotFound(m),
            Error::Conflict(m) => wit::Error::Conflict(m),
            Error::Unavailable(m) => wit::Error::Unavailable(m),
        }
    }
}

export!(KvStore);
