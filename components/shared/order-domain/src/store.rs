use crate::{wit_store, Error, KeyClaim, Order, OrderRecord, PendingOrder, Timestamp};

/// The `store` import as a trait: the components call it through [`WitStore`], their unit tests
/// through [`crate::MemoryStore`]. What each call promises is written on the WIT interface
/// (`wit/orders.wit`, `store`).
pub trait Store {
    fn load(&self, id: &str) -> Result<Option<OrderRecord>, Error>;
    fn find_by_key(&self, idempotency_key: &str) -> Result<Option<OrderRecord>, Error>;
    fn claim_key(&self, idempotency_key: &str) -> Result<bool, Error>;
    fn release_key(&self, idempotency_key: &str) -> Result<(), Error>;
    fn save(&self, record: &OrderRecord) -> Result<(), Error>;
    fn discard(&self, record: &OrderRecord) -> Result<(), Error>;
    fn pending(&self, limit: u32) -> Result<Vec<PendingOrder>, Error>;
    fn clear_pending(&self, entry: &PendingOrder) -> Result<(), Error>;
    fn claims(&self, limit: u32) -> Result<Vec<KeyClaim>, Error>;
    fn note_claim(&self, idempotency_key: &str, at: Timestamp) -> Result<(), Error>;
}

/// The store this component imports (wired by composition to the kv-store adapter).
pub struct WitStore;

impl Store for WitStore {
    fn load(&self, id: &str) -> Result<Option<OrderRecord>, Error> {
        wit_store::load(id)
    }
    fn find_by_key(&self, idempotency_key: &str) -> Result<Option<OrderRecord>, Error> {
        wit_store::find_by_key(idempotency_key)
    }
    fn claim_key(&self, idempotency_key: &str) -> Result<bool, Error> {
        wit_store::claim_key(idempotency_key)
    }
    fn release_key(&self, idempotency_key: &str) -> Result<(), Error> {
        wit_store::release_key(idempotency_key)
    }
    fn save(&self, record: &OrderRecord) -> Result<(), Error> {
        wit_store::save(record)
    }
    fn discard(&self, record: &OrderRecord) -> Result<(), Error> {
        wit_store::discard(record)
    }
    fn pending(&self, limit: u32) -> Result<Vec<PendingOrder>, Error> {
        wit_store::pending(limit)
    }
    fn clear_pending(&self, entry: &PendingOrder) -> Result<(), Error> {
        wit_store::clear_pending(entry)
    }
    fn claims(&self, limit: u32) -> Result<Vec<KeyClaim>, Error> {
        wit_store::claims(limit)
    }
    fn note_claim(&self, idempotency_key: &str, at: Timestamp) -> Result<(), Error> {
        wit_store::note_claim(idempotency_key, at)
    }
}

/// The `events` import as a trait (the receiver and the sweeper announce through it), so the rules
/// can be tested without a transport. Each component implements it on its own `events` binding.
pub trait Events {
    fn order_placed(&self, order: &Order) -> Result<(), Error>;
}
