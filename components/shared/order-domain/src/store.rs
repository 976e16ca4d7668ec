use crate::{wit_store, Error, KeyClaim, Order, OrderRecord, PendingOrder, Timestamp};

/// The `store` import as a trait: the components call it through [`WitStore`], their unit tests
/// through [`crate::MemoryStore`]. What each call promises is written on the WIT interface
/// (`wit/orders.wit`, `store`).
pub trait Store {
    fn load(&self, id: &str) -> Result<Option<OrderRecord>, Error>;
    fn find_by_key(&self, idempotency_key: &str) -> Result<Option<OrderRecord>, Error>;
    fn claim_key(&self, idempotency_key: &str) -> Result<bool, Error>;
    fn release_key(&self, idempotency_key: &str) -> Result<(), Error>;
    fn claim_epoch(&self, idempotency_key: &str) -> Result<u64, Error>;
    fn revoke_claim(&self, idempotency_key: &str) -> Result<(), Error>;
    fn save(&self, record: &OrderRecord) -> Result<(), Error>;
    fn discard(&self, record: &OrderRecord) -> Result<(), Error>;
    fn pending(&self, after: Option<u64>, limit: u32) -> Result<Vec<PendingOrder>, Error>;
    fn defer_pending(
        &self,
        entry: &PendingOrder,
        attempts: u32,
        not_before: Timestamp,
    ) -> Result<(), Error>;
    fn clear_pending(&self, entry: &PendingOrder) -> Result<(), Error>;
    fn take_lease(&self, name: &str) -> Result<bool, Error>;
    fn free_lease(&self, name: &str) -> Result<(), Error>;
    fn purge_fulfilled(&self, before: Timestamp, limit: u32) -> Result<u32, Error>;
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
    fn claim_epoch(&self, idempotency_key: &str) -> Result<u64, Error> {
        wit_store::claim_epoch(idempotency_key)
    }
    fn revoke_claim(&self, idempotency_key: &str) -> Result<(), Error> {
        wit_store::revoke_claim(idempotency_key)
    }
    fn save(&self, record: &OrderRecord) -> Result<(), Error> {
        wit_store::save(record)
    }
    fn discard(&self, record: &OrderRecord) -> Result<(), Error> {
        wit_store::discard(record)
    }
    fn pending(&self, after: Option<u64>, limit: u32) -> Result<Vec<PendingOrder>, Error> {
        wit_store::pending(after, limit)
    }
    fn defer_pending(
        &self,
        entry: &PendingOrder,
        attempts: u32,
        not_before: Timestamp,
    ) -> Result<(), Error> {
        wit_store::defer_pending(entry, attempts, not_before)
    }
    fn take_lease(&self, name: &str) -> Result<bool, Error> {
        wit_store::take_lease(name)
    }
    fn free_lease(&self, name: &str) -> Result<(), Error> {
        wit_store::free_lease(name)
    }
    fn purge_fulfilled(&self, before: Timestamp, limit: u32) -> Result<u32, Error> {
        wit_store::purge_fulfilled(before, limit)
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
