use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::{Error, OrderRecord, Store};

/// An in-memory [`Store`] for unit tests, with a switch that makes every call fail as an
/// unreachable backend would.
#[derive(Default)]
pub struct MemoryStore {
    records: RefCell<HashMap<String, OrderRecord>>,
    keys: RefCell<HashMap<String, String>>,
    pub down: Cell<bool>,
}

impl MemoryStore {
    pub fn len(&self) -> usize {
        self.records.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn key_count(&self) -> usize {
        self.keys.borrow().len()
    }

    fn check(&self) -> Result<(), Error> {
        if self.down.get() {
            return Err(Error::Unavailable("store is down".into()));
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    fn load(&self, id: &str) -> Result<Option<OrderRecord>, Error> {
        self.check()?;
        Ok(self.records.borrow().get(id).cloned())
    }

    fn find_by_key(&self, idempotency_key: &str) -> Result<Option<OrderRecord>, Error> {
        self.check()?;
        let id = self.keys.borrow().get(idempotency_key).cloned();
        Ok(id.and_then(|id| self.records.borrow().get(&id).cloned()))
    }

    fn save(&self, record: &OrderRecord) -> Result<(), Error> {
        self.check()?;
        let id = record.order.id.clone();
        if let Some(key) = &record.order.idempotency_key {
            self.keys.borrow_mut().insert(key.clone(), id.clone());
        }
        self.records.borrow_mut().insert(id, record.clone());
        Ok(())
    }

    fn discard(&self, id: &str) -> Result<(), Error> {
        self.check()?;
        if let Some(record) = self.records.borrow_mut().remove(id) {
            if let Some(key) = record.order.idempotency_key {
                self.keys.borrow_mut().remove(&key);
            }
        }
        Ok(())
    }
}
