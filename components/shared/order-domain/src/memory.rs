use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};

use crate::{
    Error, Events, KeyClaim, Order, OrderRecord, OrderStatus, PendingOrder, Store, Timestamp,
};

/// An in-memory [`Store`] for unit tests that keeps the same layout rules as the kv-store adapter
/// (outbox entry before an accepted record, removed after a fulfilled one), with switches that make
/// calls fail as an unreachable backend would.
#[derive(Default)]
pub struct MemoryStore {
    records: RefCell<HashMap<String, OrderRecord>>,
    keys: RefCell<HashMap<String, String>>,
    claims: RefCell<HashMap<String, i64>>,
    claim_notes: RefCell<HashMap<String, Timestamp>>,
    /// (since, id): ordered as the adapter lists them, oldest first.
    outbox: RefCell<BTreeSet<(u64, String)>>,
    /// Every call fails.
    pub down: Cell<bool>,
    /// `save` fails after this many more successful calls (`None`: never). Models a backend that
    /// goes away in the middle of a request.
    pub saves_left: Cell<Option<u32>>,
    /// `find_by_key` misses this many more times: a caller that looked just before another one's
    /// key index was written.
    pub key_misses: Cell<u32>,
    /// Every `discard` fails: the backend went away for good during the request.
    pub discards_fail: Cell<bool>,
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

    pub fn outbox_len(&self) -> usize {
        self.outbox.borrow().len()
    }

    pub fn is_claimed(&self, key: &str) -> bool {
        self.claims.borrow().contains_key(key)
    }

    /// Puts an entry in the outbox with no record behind it, as a writer that died between the
    /// two writes of `save` leaves it.
    pub fn put_orphan_pending(&self, entry: &PendingOrder) {
        self.outbox
            .borrow_mut()
            .insert((entry.since, entry.id.clone()));
    }

    /// Writes the record and its outbox entry but not its key index, as a writer that died (or a
    /// failed save whose cleanup failed) between the two leaves it.
    pub fn put_half_stored(&self, record: &OrderRecord) {
        self.outbox
            .borrow_mut()
            .insert((record.order.placed_at, record.order.id.clone()));
        self.records
            .borrow_mut()
            .insert(record.order.id.clone(), record.clone());
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
        if self.key_misses.get() > 0 {
            self.key_misses.set(self.key_misses.get() - 1);
            return Ok(None);
        }
        let id = self.keys.borrow().get(idempotency_key).cloned();
        Ok(id.and_then(|id| self.records.borrow().get(&id).cloned()))
    }

    fn claim_key(&self, idempotency_key: &str) -> Result<bool, Error> {
        self.check()?;
        let mut claims = self.claims.borrow_mut();
        let count = claims.entry(idempotency_key.to_string()).or_insert(0);
        *count += 1;
        Ok(*count == 1)
    }

    fn release_key(&self, idempotency_key: &str) -> Result<(), Error> {
        self.check()?;
        self.claims.borrow_mut().remove(idempotency_key);
        self.claim_notes.borrow_mut().remove(idempotency_key);
        Ok(())
    }

    fn save(&self, record: &OrderRecord) -> Result<(), Error> {
        self.check()?;
        if let Some(left) = self.saves_left.get() {
            if left == 0 {
                return Err(Error::Unavailable("store went away".into()));
            }
            self.saves_left.set(Some(left - 1));
        }
        let id = record.order.id.clone();
        let entry = (record.order.placed_at, id.clone());
        if record.status == OrderStatus::Accepted {
            self.outbox.borrow_mut().insert(entry.clone());
        }
        self.records.borrow_mut().insert(id.clone(), record.clone());
        if let Some(key) = &record.order.idempotency_key {
            self.keys.borrow_mut().insert(key.clone(), id);
        }
        if record.status == OrderStatus::Fulfilled {
            self.outbox.borrow_mut().remove(&entry);
        }
        Ok(())
    }

    fn discard(&self, record: &OrderRecord) -> Result<(), Error> {
        self.check()?;
        if self.discards_fail.get() {
            return Err(Error::Unavailable("still down".into()));
        }
        let id = &record.order.id;
        if let Some(key) = &record.order.idempotency_key {
            let mut keys = self.keys.borrow_mut();
            if keys.get(key) == Some(id) {
                keys.remove(key);
            }
        }
        self.records.borrow_mut().remove(id);
        self.outbox
            .borrow_mut()
            .remove(&(record.order.placed_at, id.clone()));
        Ok(())
    }

    fn pending(&self, limit: u32) -> Result<Vec<PendingOrder>, Error> {
        self.check()?;
        Ok(self
            .outbox
            .borrow()
            .iter()
            .take(limit as usize)
            .map(|(since, id)| PendingOrder {
                id: id.clone(),
                since: *since,
            })
            .collect())
    }

    fn clear_pending(&self, entry: &PendingOrder) -> Result<(), Error> {
        self.check()?;
        self.outbox
            .borrow_mut()
            .remove(&(entry.since, entry.id.clone()));
        Ok(())
    }

    fn claims(&self, limit: u32) -> Result<Vec<KeyClaim>, Error> {
        self.check()?;
        let mut keys: Vec<String> = self.claims.borrow().keys().cloned().collect();
        keys.sort();
        keys.truncate(limit as usize);
        Ok(keys
            .into_iter()
            .map(|key| KeyClaim {
                indexed: self.find_by_key(&key).ok().flatten().is_some(),
                noted_at: self.claim_notes.borrow().get(&key).copied(),
                idempotency_key: key,
            })
            .collect())
    }

    fn note_claim(&self, idempotency_key: &str, at: Timestamp) -> Result<(), Error> {
        self.check()?;
        self.claim_notes
            .borrow_mut()
            .insert(idempotency_key.to_string(), at);
        Ok(())
    }
}

/// [`Events`] for unit tests: records each announced order, or fails as a broker that is down.
#[derive(Default)]
pub struct MemoryEvents {
    pub placed: RefCell<Vec<Order>>,
    /// Every announcement fails.
    pub fail: Cell<bool>,
}

impl MemoryEvents {
    /// The ids of the announced orders, in order.
    pub fn ids(&self) -> Vec<String> {
        self.placed.borrow().iter().map(|o| o.id.clone()).collect()
    }
}

impl Events for MemoryEvents {
    fn order_placed(&self, order: &Order) -> Result<(), Error> {
        if self.fail.get() {
            return Err(Error::Unavailable("broker down".into()));
        }
        self.placed.borrow_mut().push(order.clone());
        Ok(())
    }
}
