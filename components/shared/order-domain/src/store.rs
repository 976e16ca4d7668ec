use crate::{wit_store, Error, KeyClaim, Order, OrderRecord, PendingOrder, Timestamp};

/// Declares the [`Store`] trait and [`WitStore`]'s implementation of it, which calls the `store`
/// import's function of the same name: the import's functions listed once.
macro_rules! store_import {
    ($($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        /// The `store` import as a trait: the components call it through [`WitStore`], their
        /// unit tests through [`crate::MemoryStore`]. What each call promises is written on the
        /// WIT interface (`wit/orders.wit`, `store`).
        pub trait Store {
            $($(#[$doc])* fn $name(&self $(, $arg: $ty)*) -> $ret;)*
        }

        /// The store this component imports (wired by composition to the kv-store adapter).
        pub struct WitStore;

        impl Store for WitStore {
            $(fn $name(&self $(, $arg: $ty)*) -> $ret {
                wit_store::$name($($arg),*)
            })*
        }
    };
}

store_import! {
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
        not_before: Timestamp
    ) -> Result<(), Error>;
    fn clear_pending(&self, entry: &PendingOrder) -> Result<(), Error>;
    fn take_lease(&self, name: &str) -> Result<bool, Error>;
    fn free_lease(&self, name: &str) -> Result<(), Error>;
    fn purge_fulfilled(&self, before: Timestamp, limit: u32) -> Result<u32, Error>;
    fn claims(&self, limit: u32) -> Result<Vec<KeyClaim>, Error>;
    fn note_claim(&self, idempotency_key: &str, at: Timestamp) -> Result<(), Error>;
}

/// The `events` import as a trait (the receiver and the sweeper announce through it), so the rules
/// can be tested without a transport. Each component implements it on its own `events` binding.
pub trait Events {
    fn order_placed(&self, order: &Order) -> Result<(), Error>;
}
