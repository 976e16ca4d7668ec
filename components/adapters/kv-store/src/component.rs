//! The wasm glue: the exported `store` onto [`SPIN_STORE`], mapping the export's own WIT types.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nano:orders/kv-store",
});

use crate::SPIN_STORE;
use exports::nano::orders::store::{Guest, KeyClaim, PendingOrder};
use exports::nano::orders::types as wit;
use order_domain::{Error, OrderRecord, OrderStatus, Store};

struct KvStore;

impl Guest for KvStore {
    fn load(id: String) -> Result<Option<wit::OrderRecord>, wit::Error> {
        Ok(SPIN_STORE.load(&id)?.map(to_wit))
    }

    fn find_by_key(key: String) -> Result<Option<wit::OrderRecord>, wit::Error> {
        Ok(SPIN_STORE.find_by_key(&key)?.map(to_wit))
    }

    fn claim_key(key: String) -> Result<bool, wit::Error> {
        Ok(SPIN_STORE.claim_key(&key)?)
    }

    fn release_key(key: String) -> Result<(), wit::Error> {
        Ok(SPIN_STORE.release_key(&key)?)
    }

    fn claim_epoch(key: String) -> Result<u64, wit::Error> {
        Ok(SPIN_STORE.claim_epoch(&key)?)
    }

    fn revoke_claim(key: String) -> Result<(), wit::Error> {
        Ok(SPIN_STORE.revoke_claim(&key)?)
    }

    fn claims(limit: u32) -> Result<Vec<KeyClaim>, wit::Error> {
        Ok(SPIN_STORE
            .claims(limit)?
            .into_iter()
            .map(|c| KeyClaim {
                idempotency_key: c.idempotency_key,
                indexed: c.indexed,
                noted_at: c.noted_at,
            })
            .collect())
    }

    fn note_claim(key: String, at: u64) -> Result<(), wit::Error> {
        Ok(SPIN_STORE.note_claim(&key, at)?)
    }

    fn save(record: wit::OrderRecord) -> Result<(), wit::Error> {
        Ok(SPIN_STORE.save(&from_wit(record))?)
    }

    fn discard(record: wit::OrderRecord) -> Result<(), wit::Error> {
        Ok(SPIN_STORE.discard(&from_wit(record))?)
    }

    fn pending(after: Option<u64>, limit: u32) -> Result<Vec<PendingOrder>, wit::Error> {
        Ok(SPIN_STORE
            .pending(after, limit)?
            .into_iter()
            .map(|p| PendingOrder {
                id: p.id,
                since: p.since,
                idempotency_key: p.idempotency_key,
                attempts: p.attempts,
                not_before: p.not_before,
                position: p.position,
            })
            .collect())
    }

    fn defer_pending(
        entry: PendingOrder,
        attempts: u32,
        not_before: u64,
    ) -> Result<(), wit::Error> {
        Ok(SPIN_STORE.defer_pending(&from_wit_entry(entry), attempts, not_before)?)
    }

    fn clear_pending(entry: PendingOrder) -> Result<(), wit::Error> {
        Ok(SPIN_STORE.clear_pending(&from_wit_entry(entry))?)
    }

    fn take_lease(name: String) -> Result<bool, wit::Error> {
        Ok(SPIN_STORE.take_lease(&name)?)
    }

    fn free_lease(name: String) -> Result<(), wit::Error> {
        Ok(SPIN_STORE.free_lease(&name)?)
    }

    fn purge_fulfilled(before: u64, limit: u32) -> Result<u32, wit::Error> {
        Ok(SPIN_STORE.purge_fulfilled(before, limit)?)
    }
}

fn from_wit_entry(e: PendingOrder) -> order_domain::PendingOrder {
    order_domain::PendingOrder {
        id: e.id,
        since: e.since,
        idempotency_key: e.idempotency_key,
        attempts: e.attempts,
        not_before: e.not_before,
        position: e.position,
    }
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
