use crate::{wit_store, Error, OrderRecord};

/// The `store` import as a trait: the components call it through [`WitStore`], their unit tests
/// through [`crate::MemoryStore`].
pub trait Store {
    fn load(&self, id: &str) -> Result<Option<OrderRecord>, Error>;
    fn find_by_key(&self, idempotency_key: &str) -> Result<Option<OrderRecord>, Error>;
    fn save(&self, record: &OrderRecord) -> Result<(), Error>;
    fn discard(&self, id: &str) -> Result<(), Error>;
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
    fn save(&self, record: &OrderRecord) -> Result<(), Error> {
        wit_store::save(record)
    }
    fn discard(&self, id: &str) -> Result<(), Error> {
        wit_store::discard(id)
    }
}
