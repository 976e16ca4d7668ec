use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};

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
    /// By position, as the adapter numbers them: in the order they were put in.
    outbox: RefCell<BTreeMap<u64, PendingOrder>>,
    /// The outbox position each order's accepted save wrote.
    positions: RefCell<HashMap<String, u64>>,
    /// Ids of orders saved fulfilled, in that order (what retention walks).
    fulfilled: RefCell<BTreeMap<u64, String>>,
    last_position: Cell<u64>,
    leases: RefCell<HashSet<String>>,
    epochs: RefCell<HashMap<String, u64>>,
    /// Runs once at the start of the next `save`: what other callers do while this one's store
    /// connection stalls.
    #[allow(clippy::type_complexity)]
    pub during_next_save: RefCell<Option<Box<dyn FnOnce(&MemoryStore) + Send>>>,
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

    pub fn is_leased(&self, name: &str) -> bool {
        self.leases.borrow().contains(name)
    }

    /// Puts an entry in the outbox with no record behind it, as a writer that died between the
    /// two writes of `save` leaves it.
    pub fn put_orphan_pending(&self, id: &str, since: Timestamp) {
        self.enqueue(id, since, None, 0, 0);
    }

    /// Writes the record and its outbox entry but not its key index, as a writer that died (or a
    /// failed save whose cleanup failed) between the two leaves it.
    pub fn put_half_stored(&self, record: &OrderRecord) {
        let order = &record.order;
        let key = order.idempotency_key.clone();
        let position = self.enqueue(&order.id, order.placed_at, key, 0, 0);
        self.positions
            .borrow_mut()
            .insert(order.id.clone(), position);
        self.records
            .borrow_mut()
            .insert(record.order.id.clone(), record.clone());
    }

    fn next_position(&self) -> u64 {
        self.last_position.set(self.last_position.get() + 1);
        self.last_position.get()
    }

    fn enqueue(
        &self,
        id: &str,
        since: Timestamp,
        idempotency_key: Option<String>,
        attempts: u32,
        not_before: Timestamp,
    ) -> u64 {
        let position = self.next_position();
        let entry = PendingOrder {
            id: id.into(),
            since,
            idempotency_key,
            attempts,
            not_before,
            position,
        };
        self.outbox.borrow_mut().insert(position, entry);
        position
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

    fn claim_epoch(&self, idempotency_key: &str) -> Result<u64, Error> {
        self.check()?;
        Ok(self
            .epochs
            .borrow()
            .get(idempotency_key)
            .copied()
            .unwrap_or(0))
    }

    fn revoke_claim(&self, idempotency_key: &str) -> Result<(), Error> {
        self.check()?;
        *self
            .epochs
            .borrow_mut()
            .entry(idempotency_key.into())
            .or_insert(0) += 1;
        self.release_key(idempotency_key)
    }

    fn save(&self, record: &OrderRecord) -> Result<(), Error> {
        let stall = self.during_next_save.borrow_mut().take();
        if let Some(others) = stall {
            others(self);
        }
        self.check()?;
        if let Some(left) = self.saves_left.get() {
            if left == 0 {
                return Err(Error::Unavailable("store went away".into()));
            }
            self.saves_left.set(Some(left - 1));
        }
        let order = &record.order;
        let id = order.id.clone();
        if record.status == OrderStatus::Accepted {
            let key = order.idempotency_key.clone();
            let position = self.enqueue(&id, order.placed_at, key, 0, 0);
            self.positions.borrow_mut().insert(id.clone(), position);
        } else {
            let position = self.next_position();
            self.fulfilled.borrow_mut().insert(position, id.clone());
        }
        self.records.borrow_mut().insert(id.clone(), record.clone());
        if let Some(key) = &order.idempotency_key {
            self.keys.borrow_mut().insert(key.clone(), id.clone());
        }
        if record.status == OrderStatus::Fulfilled {
            if let Some(position) = self.positions.borrow_mut().remove(&id) {
                self.outbox.borrow_mut().remove(&position);
            }
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
        if let Some(position) = self.positions.borrow_mut().remove(id) {
            self.outbox.borrow_mut().remove(&position);
        }
        Ok(())
    }

    fn pending(&self, after: Option<u64>, limit: u32) -> Result<Vec<PendingOrder>, Error> {
        self.check()?;
        let from = after.map_or(0, |p| p + 1);
        Ok(self
            .outbox
            .borrow()
            .range(from..)
            .take(limit as usize)
            .map(|(_, entry)| entry.clone())
            .collect())
    }

    fn defer_pending(
        &self,
        entry: &PendingOrder,
        attempts: u32,
        not_before: Timestamp,
    ) -> Result<(), Error> {
        self.check()?;
        let key = entry.idempotency_key.clone();
        let position = self.enqueue(&entry.id, entry.since, key, attempts, not_before);
        let mut positions = self.positions.borrow_mut();
        if positions.get(&entry.id) == Some(&entry.position) {
            positions.insert(entry.id.clone(), position);
        }
        self.outbox.borrow_mut().remove(&entry.position);
        Ok(())
    }

    fn clear_pending(&self, entry: &PendingOrder) -> Result<(), Error> {
        self.check()?;
        self.outbox.borrow_mut().remove(&entry.position);
        Ok(())
    }

    fn take_lease(&self, name: &str) -> Result<bool, Error> {
        self.check()?;
        Ok(self.leases.borrow_mut().insert(name.into()))
    }

    fn free_lease(&self, name: &str) -> Result<(), Error> {
        self.check()?;
        self.leases.borrow_mut().remove(name);
        Ok(())
    }

    fn purge_fulfilled(&self, before: Timestamp, limit: u32) -> Result<u32, Error> {
        self.check()?;
        let mut purged = 0;
        while purged < limit {
            let Some((position, id)) = self.fulfilled.borrow_mut().pop_first() else {
                break;
            };
            let record = self.records.borrow().get(&id).cloned();
            match record {
                Some(r) if r.status == OrderStatus::Fulfilled && r.updated_at >= before => {
                    // The rest were fulfilled later still.
                    self.fulfilled.borrow_mut().insert(position, id);
                    break;
                }
                Some(r) if r.status == OrderStatus::Fulfilled => {
                    if let Some(key) = &r.order.idempotency_key {
                        let mut keys = self.keys.borrow_mut();
                        if keys.get(key) == Some(&id) {
                            keys.remove(key);
                        }
                        self.claims.borrow_mut().remove(key);
                        self.claim_notes.borrow_mut().remove(key);
                    }
                    self.records.borrow_mut().remove(&id);
                    purged += 1;
                }
                _ => {}
            }
        }
        Ok(purged)
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
    /// Announcements of these orders fail (the transport refuses them, e.g. too large).
    pub refused: RefCell<HashSet<String>>,
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
        if self.refused.borrow().contains(&order.id) {
            return Err(Error::Unavailable("message refused".into()));
        }
        self.placed.borrow_mut().push(order.clone());
        Ok(())
    }
}
