//! `store` on Spin's key-value store. Which backend holds the data (embedded or Redis) is the
//! runtime config's choice, not this code's.
//!
//! Layout: `order:<id>` holds the record as versioned JSON; `idempotency:<key>` holds the id of
//! the order that key placed. The record is written before its key, so a key never points at
//! nothing that was not there a moment before.

wit_bindgen::generate!({
    path: "../../wit",
    world: "nano:orders/kv-store",
});

use exports::nano::orders::store::Guest;
use exports::nano::orders::types::{Error, Order, OrderRecord, OrderStatus};
use serde::{Deserialize, Serialize};
use spin_sdk::key_value::Store;

const LABEL: &str = "default";

/// The stored form. `v` lets a later release read what an earlier one wrote.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    id: String,
    details: String,
    placed_at: u64,
    idempotency_key: Option<String>,
    status: String,
    updated_at: u64,
}

impl From<&OrderRecord> for Stored {
    fn from(r: &OrderRecord) -> Self {
        Stored {
            v: 1,
            id: r.order.id.clone(),
            details: r.order.details.clone(),
            placed_at: r.order.placed_at,
            idempotency_key: r.order.idempotency_key.clone(),
            status: match r.status {
                OrderStatus::Accepted => "accepted",
                OrderStatus::Fulfilled => "fulfilled",
            }
            .into(),
            updated_at: r.updated_at,
        }
    }
}

impl TryFrom<Stored> for OrderRecord {
    type Error = Error;
    fn try_from(s: Stored) -> Result<Self, Error> {
        let status = match (s.v, s.status.as_str()) {
            (1, "accepted") => OrderStatus::Accepted,
            (1, "fulfilled") => OrderStatus::Fulfilled,
            (v, status) => {
                return Err(corrupt(&s.id, format!("version {v} status {status:?}")));
            }
        };
        Ok(OrderRecord {
            order: Order {
                id: s.id,
                details: s.details,
                placed_at: s.placed_at,
                idempotency_key: s.idempotency_key,
            },
            status,
            updated_at: s.updated_at,
        })
    }
}

fn corrupt(id: &str, why: String) -> Error {
    Error::Unavailable(format!("stored record of order {id} is unreadable: {why}"))
}

fn unavailable(e: impl std::fmt::Debug) -> Error {
    Error::Unavailable(format!("key-value store {LABEL:?}: {e:?}"))
}

fn open() -> Result<Store, Error> {
    Store::open(LABEL).map_err(unavailable)
}

fn order_key(id: &str) -> String {
    format!("order:{id}")
}

fn idempotency_key(key: &str) -> String {
    format!("idempotency:{key}")
}

fn load(store: &Store, id: &str) -> Result<Option<OrderRecord>, Error> {
    let Some(bytes) = store.get(&order_key(id)).map_err(unavailable)? else {
        return Ok(None);
    };
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| corrupt(id, e.to_string()))?;
    OrderRecord::try_from(stored).map(Some)
}

struct KvStore;

impl Guest for KvStore {
    fn load(id: String) -> Result<Option<OrderRecord>, Error> {
        load(&open()?, &id)
    }

    fn find_by_key(key: String) -> Result<Option<OrderRecord>, Error> {
        let store = open()?;
        match store.get(&idempotency_key(&key)).map_err(unavailable)? {
            Some(id) => load(&store, &String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn save(record: OrderRecord) -> Result<(), Error> {
        let store = open()?;
        let json = serde_json::to_vec(&Stored::from(&record)).map_err(unavailable)?;
        store
            .set(&order_key(&record.order.id), &json)
            .map_err(unavailable)?;
        if let Some(key) = &record.order.idempotency_key {
            store
                .set(&idempotency_key(key), record.order.id.as_bytes())
                .map_err(unavailable)?;
        }
        Ok(())
    }

    fn discard(id: String) -> Result<(), Error> {
        let store = open()?;
        if let Some(record) = load(&store, &id)? {
            if let Some(key) = &record.order.idempotency_key {
                store.delete(&idempotency_key(key)).map_err(unavailable)?;
            }
        }
        store.delete(&order_key(&id)).map_err(unavailable)
    }
}

export!(KvStore);
