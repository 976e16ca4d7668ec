//! The `store` rules on any key-value backend with Spin's operations ([`Backend`]): the wasm
//! adapter runs them on Spin's key-value store, the native tests on a map that counts calls.
//!
//! Spin's key-value API has no ordered or prefix listing, so what a sweep walks is kept in
//! numbered lists ([`List`]): the outbox, the idempotency claims and the fulfilled orders (for
//! retention). An item is `<list>:<n>`, its number `n` from the atomic counter `<list>-seq`;
//! a cursor `<list>-cursor` tells where the first item that may still be present is. Walking a list
//! reads from the cursor to the counter, so its cost follows the items written lately and those
//! still in it, never the number of orders stored.
//!
//! The cursor passes an absent number only once that number was handed out at least [`SETTLE_MS`]
//! ago, and a writer whose item took longer than [`FRESH_MS`] from its number to its write writes
//! it again under a new number: so no item is ever written behind the cursor, where no walk would
//! find it.

use crate::stored::{
    self, claim_epoch_key, claim_key, claim_note_key, claim_order_key, index_key, order_key,
};
use order_domain::{Error, KeyClaim, OrderRecord, OrderStatus, PendingOrder, Store, Timestamp};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;

/// What the rules need of a key-value store: Spin's `key-value`, `wasi:keyvalue/atomics` and
/// `batch` calls, and the clocks.
pub trait Backend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), Error>;
    fn delete(&self, key: &str) -> Result<(), Error>;
    fn exists(&self, key: &str) -> Result<bool, Error>;
    /// Spin: one transaction on SQLite, one MSET on Redis.
    fn set_many(&self, items: &[(String, Vec<u8>)]) -> Result<(), Error>;
    fn delete_many(&self, keys: &[String]) -> Result<(), Error>;
    /// Every key of the store (Spin's `get-keys`; `KEYS *` on Redis). Only the one-time move of an
    /// earlier release's outbox calls it ([`KvStore::move_v1_outbox`]).
    fn keys(&self) -> Result<Vec<String>, Error>;
    /// Atomic on every backend; an absent key counts from 0. `delta` 0 reads a counter (the
    /// stored form of a counter differs between backends, so it is never read with `get`).
    fn increment(&self, key: &str, delta: i64) -> Result<i64, Error>;
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Milliseconds on a clock that never goes back (for how long a write took).
    fn monotonic_ms(&self) -> u64;
}

/// An item whose write landed later than this after its number was handed out is written again.
pub const FRESH_MS: u64 = 10_000;
/// A cursor passes an absent number only when it was handed out at least this long ago.
pub const SETTLE_MS: u64 = 30_000;
/// Tries of a list write before it gives up (each slower than [`FRESH_MS`]).
const TRIES: u32 = 4;

thread_local! {
    /// The claim epoch this instance last read for each key (the receiver reads it just before
    /// it claims the key), and the epochs of the keys it then won: its save records its order
    /// under that epoch ([`claim_order_key`]). An instance serves one request.
    static EPOCH_READ: RefCell<HashMap<String, u64>> = RefCell::default();
    static CLAIMED_AT: RefCell<HashMap<String, u64>> = RefCell::default();
}

/// A numbered list in the store.
#[derive(Clone, Copy)]
pub struct List(pub &'static str);

pub const OUTBOX: List = List("outbox");
pub const CLAIMS: List = List("claims");
pub const FULFILLED: List = List("fulfilled");

/// Where a list's walk starts, and what it knows about numbers handed out.
#[derive(Debug, Default, Serialize, Deserialize, Clone, Copy, PartialEq)]
struct Cursor {
    /// Numbers below this are gone.
    next: u64,
    /// Numbers up to this were handed out at least [`SETTLE_MS`] ago.
    settled: u64,
    /// The counter as read at `mark_at`; it becomes `settled` [`SETTLE_MS`] later.
    mark: u64,
    mark_at: u64,
}

/// A walk's findings: the items present (number, value), and up to where numbers are settled.
struct Walk {
    items: Vec<(u64, Vec<u8>)>,
    settled: u64,
}

impl List {
    pub fn item(self, n: u64) -> String {
        format!("{}:{n}", self.0)
    }
    fn counter(self) -> String {
        format!("{}-seq", self.0)
    }
    fn cursor(self) -> String {
        format!("{}-cursor", self.0)
    }

    /// Appends `value` with `also(n)` written in the same batch; answers its number.
    fn push_with(
        self,
        b: &impl Backend,
        value: &[u8],
        also: impl Fn(u64) -> Vec<(String, Vec<u8>)>,
    ) -> Result<u64, Error> {
        let started = b.monotonic_ms();
        let n = next_number(b, self)?;
        let mut writes = vec![(self.item(n), value.to_vec())];
        writes.extend(also(n));
        b.set_many(&writes)?;
        if b.monotonic_ms().saturating_sub(started) >= FRESH_MS {
            // A walk may have passed `n` while it was absent: write the item again where walks
            // still look (the first copy is harmless: its readers find the same order).
            self.push(b, value)?;
        }
        Ok(n)
    }

    /// Appends `value`; answers when (on the monotonic clock) its number was handed out.
    fn push(self, b: &impl Backend, value: &[u8]) -> Result<u64, Error> {
        for _ in 0..TRIES {
            let started = b.monotonic_ms();
            let n = next_number(b, self)?;
            b.set(&self.item(n), value)?;
            if b.monotonic_ms().saturating_sub(started) < FRESH_MS {
                return Ok(started);
            }
        }
        Err(Error::Unavailable(format!(
            "key-value store: writing to the {} list took over {FRESH_MS} ms {TRIES} times",
            self.0
        )))
    }

    /// Up to `limit` items after `after` (or from the cursor), in number order. A walk from the
    /// cursor also moves the cursor past the absent numbers it settled.
    fn walk(self, b: &impl Backend, after: Option<u64>, limit: usize) -> Result<Walk, Error> {
        let mut cursor: Cursor = match b.get(&self.cursor())? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            None => Cursor::default(),
        };
        cursor.next = cursor.next.max(1);
        let head = b.increment(&self.counter(), 0)?.max(0) as u64;
        let start = after.map_or(cursor.next, |a| a.saturating_add(1).max(cursor.next));
        let mut items = Vec::new();
        let mut first_present = None;
        let mut n = start;
        while n <= head && items.len() < limit {
            if let Some(value) = b.get(&self.item(n))? {
                first_present.get_or_insert(n);
                items.push((n, value));
            }
            n += 1;
        }
        let now = b.now_ms();
        if after.is_none() && now >= cursor.mark_at.saturating_add(SETTLE_MS) {
            let mut moved = cursor;
            moved.settled = moved.settled.max(cursor.mark);
            let gone_below = first_present.unwrap_or(n);
            moved.next = cursor.next.max(gone_below.min(moved.settled + 1));
            moved.mark = head;
            moved.mark_at = now;
            b.set(
                &self.cursor(),
                &serde_json::to_vec(&moved).expect("numbers"),
            )?;
            cursor = moved;
        }
        Ok(Walk {
            items,
            settled: cursor.settled,
        })
    }
}

fn next_number(b: &impl Backend, list: List) -> Result<u64, Error> {
    Ok(b.increment(&list.counter(), 1)?.max(1) as u64)
}

/// An outbox item's value.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Entry {
    id: String,
    since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    not_before: u64,
}

impl Entry {
    fn of(order: &order_domain::Order) -> Entry {
        Entry {
            id: order.id.clone(),
            since: order.placed_at,
            key: order.idempotency_key.clone(),
            attempts: 0,
            not_before: 0,
        }
    }
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("strings and numbers serialize")
    }
}

/// The `store` rules on a backend.
pub struct KvStore<B>(pub B);

/// Set once the outbox of releases before the numbered lists has been moved into [`OUTBOX`].
const V1_OUTBOX_MOVED: &str = "outbox-v1-moved";

impl<B: Backend> KvStore<B> {
    /// Releases before the numbered lists kept the outbox as `pending:<placed_at>:<id>` keys,
    /// found by listing the store. The first sweep on a store that is not yet marked lists it once
    /// more and moves every such entry whose order is still `accepted` into [`OUTBOX`], so an
    /// order accepted before an upgrade is still announced; then it marks the store and no sweep
    /// lists it again. An entry is deleted only after it is moved, so a sweep that fails half-way
    /// moves the rest next time (an entry moved twice is announced twice: harmless).
    fn move_v1_outbox(&self) -> Result<(), Error> {
        if self.0.exists(V1_OUTBOX_MOVED)? {
            return Ok(());
        }
        for key in self.0.keys()? {
            let Some((_, id)) = stored::parse_v1_pending_key(&key) else {
                continue;
            };
            if let Some(record) = self.load(&id)? {
                if record.status == OrderStatus::Accepted {
                    OUTBOX.push(&self.0, &Entry::of(&record.order).encode())?;
                }
            }
            self.0.delete(&key)?;
        }
        self.0.set(V1_OUTBOX_MOVED, b"1")
    }

    fn load_with_position(&self, id: &str) -> Result<Option<(OrderRecord, Option<u64>)>, Error> {
        match self.0.get(&order_key(id))? {
            Some(bytes) => {
                let record = stored::decode(id, &bytes)?;
                Ok(Some((record, stored::outbox_position(&bytes))))
            }
            None => Ok(None),
        }
    }

    /// Removes the index of `key` if it points at `id`.
    fn unindex(&self, key: &str, id: &str) -> Result<(), Error> {
        let index = self.0.get(&index_key(key))?;
        if index.as_deref() == Some(id.as_bytes()) {
            self.0.delete(&index_key(key))?;
        }
        Ok(())
    }
}

impl<B: Backend> KvStore<B> {
    /// [`Self::unindex`] for an order taken back. Its save may have overwritten the index of the
    /// order the key's current claimant placed (this one's claim was revoked while it stored: the
    /// receiver fences it out), so the index goes back to that order rather than away: without
    /// it, the key would lead nowhere, and once its claim were freed a retry would make a second
    /// order.
    fn unindex_for_the_claimant(&self, key: &str, id: &str) -> Result<(), Error> {
        if self.0.get(&index_key(key))?.as_deref() != Some(id.as_bytes()) {
            return Ok(());
        }
        let epoch = self.claim_epoch(key)?;
        match self.0.get(&claim_order_key(key, epoch))? {
            Some(other)
                if other != id.as_bytes()
                    && self
                        .0
                        .exists(&order_key(&String::from_utf8_lossy(&other)))? =>
            {
                self.0.set(&index_key(key), &other)
            }
            _ => self.0.delete(&index_key(key)),
        }
    }
}

impl<B: Backend> Store for KvStore<B> {
    fn load(&self, id: &str) -> Result<Option<OrderRecord>, Error> {
        Ok(self.load_with_position(id)?.map(|(r, _)| r))
    }

    fn find_by_key(&self, key: &str) -> Result<Option<OrderRecord>, Error> {
        match self.0.get(&index_key(key))? {
            Some(id) => self.load(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn claim_key(&self, key: &str) -> Result<bool, Error> {
        // Listed before it is claimed: a claim whose claimant dies is found by the sweeper.
        let started = CLAIMS.push(&self.0, key.as_bytes())?;
        let won = self.0.increment(&claim_key(key), 1)? == 1;
        if let Some(epoch) = EPOCH_READ.with(|read| read.borrow().get(key).copied()) {
            if won {
                CLAIMED_AT.with(|claimed| claimed.borrow_mut().insert(key.to_string(), epoch));
            }
        }
        if won && self.0.monotonic_ms().saturating_sub(started) >= FRESH_MS {
            // The listing may have been taken for stale before the claim landed: list it again.
            CLAIMS.push(&self.0, key.as_bytes())?;
        }
        Ok(won)
    }

    fn release_key(&self, key: &str) -> Result<(), Error> {
        // The claim first: a note without its claim is harmless, a claim without its note is
        // only noted again. Its listing goes when a walk finds it unclaimed.
        self.0.delete(&claim_key(key))?;
        self.0.delete(&claim_note_key(key))
    }

    fn claim_epoch(&self, key: &str) -> Result<u64, Error> {
        let bytes = self.0.get(&claim_epoch_key(key))?;
        let epoch = bytes
            .and_then(|b| stored::decode_counter(&b))
            .unwrap_or(0)
            .max(0) as u64;
        EPOCH_READ.with(|read| read.borrow_mut().insert(key.to_string(), epoch));
        Ok(epoch)
    }

    fn revoke_claim(&self, key: &str) -> Result<(), Error> {
        // The epoch first: once the claim is gone, a slow claimant must already see it moved.
        self.0.increment(&claim_epoch_key(key), 1)?;
        self.release_key(key)
    }

    fn save(&self, record: &OrderRecord) -> Result<(), Error> {
        let order = &record.order;
        let index = |writes: &mut Vec<(String, Vec<u8>)>| {
            if let Some(key) = &order.idempotency_key {
                // Also on the fulfilled save: it repairs an index whose first writer died.
                writes.push((index_key(key), order.id.as_bytes().to_vec()));
            }
        };
        // The claimant's first save also records its order under its claim epoch, where a
        // claimant fenced out later can find it (see `discard`).
        let claimed = order.idempotency_key.as_ref().and_then(|key| {
            let epoch = CLAIMED_AT.with(|claimed| claimed.borrow_mut().remove(key))?;
            Some((claim_order_key(key, epoch), order.id.as_bytes().to_vec()))
        });
        if record.status == OrderStatus::Accepted {
            // Entry, record and index in one batch (one transaction on SQLite, one MSET on
            // Redis); a backend that writes them one by one still writes the entry first.
            OUTBOX.push_with(&self.0, &Entry::of(order).encode(), |n| {
                let mut writes = vec![(order_key(&order.id), stored::encode(record, Some(n)))];
                index(&mut writes);
                writes.extend(claimed.clone());
                writes
            })?;
            return Ok(());
        }
        let position = self.load_with_position(&order.id)?.and_then(|(_, p)| p);
        // Listed for retention in the same batch, ahead of the record: a fulfilled order is never
        // left unlisted (push_with lists it again should the batch land late).
        FULFILLED.push_with(&self.0, order.id.as_bytes(), |_| {
            let mut writes = vec![(order_key(&order.id), stored::encode(record, None))];
            index(&mut writes);
            writes
        })?;
        if let Some(n) = position {
            self.0.delete(&OUTBOX.item(n))?;
        }
        Ok(())
    }

    fn discard(&self, record: &OrderRecord) -> Result<(), Error> {
        let id = &record.order.id;
        let position = self.load_with_position(id)?.and_then(|(_, p)| p);
        if let Some(key) = &record.order.idempotency_key {
            self.unindex_for_the_claimant(key, id)?;
        }
        self.0.delete(&order_key(id))?;
        // Without a record to say where its entry is, the sweeper cleans the entry up.
        match position {
            Some(n) => self.0.delete(&OUTBOX.item(n)),
            None => Ok(()),
        }
    }

    fn pending(&self, after: Option<u64>, limit: u32) -> Result<Vec<PendingOrder>, Error> {
        if after.is_none() {
            self.move_v1_outbox()?;
        }
        let walk = OUTBOX.walk(&self.0, after, limit as usize)?;
        let mut entries = Vec::with_capacity(walk.items.len());
        for (position, value) in walk.items {
            match serde_json::from_slice::<Entry>(&value) {
                Ok(e) => entries.push(PendingOrder {
                    id: e.id,
                    since: e.since,
                    idempotency_key: e.key,
                    attempts: e.attempts,
                    not_before: e.not_before,
                    position,
                }),
                Err(e) => eprintln!("outbox item {position} is unreadable, left alone: {e}"),
            }
        }
        Ok(entries)
    }

    fn defer_pending(
        &self,
        entry: &PendingOrder,
        attempts: u32,
        not_before: Timestamp,
    ) -> Result<(), Error> {
        let moved = Entry {
            id: entry.id.clone(),
            since: entry.since,
            key: entry.idempotency_key.clone(),
            attempts,
            not_before,
        };
        // The new entry before the old one goes: the order is in the outbox throughout. Its record
        // still names the old position; the sweeper cleans the new entry once it is fulfilled.
        OUTBOX.push(&self.0, &moved.encode())?;
        self.0.delete(&OUTBOX.item(entry.position))
    }

    fn clear_pending(&self, entry: &PendingOrder) -> Result<(), Error> {
        self.0.delete(&OUTBOX.item(entry.position))
    }

    fn take_lease(&self, name: &str) -> Result<bool, Error> {
        Ok(self.0.increment(&lease_key(name), 1)? == 1)
    }

    fn free_lease(&self, name: &str) -> Result<(), Error> {
        self.0.delete(&lease_key(name))
    }

    fn claims(&self, limit: u32) -> Result<Vec<KeyClaim>, Error> {
        // Listings of released claims stay until they are settled: walk past them.
        let walk = CLAIMS.walk(&self.0, None, (limit as usize).saturating_mul(4))?;
        let mut seen = std::collections::HashSet::new();
        let mut claims = Vec::new();
        let mut stale = Vec::new();
        for (n, value) in walk.items {
            let key = String::from_utf8_lossy(&value).into_owned();
            if !self.0.exists(&claim_key(&key))? {
                // Released. A young listing may be one whose claim is about to land.
                if n <= walk.settled {
                    stale.push(CLAIMS.item(n));
                }
                continue;
            }
            if claims.len() >= limit as usize || !seen.insert(key.clone()) {
                continue;
            }
            let indexed = self.0.exists(&index_key(&key))?;
            let noted_at = match self.0.get(&claim_note_key(&key))? {
                Some(bytes) => stored::decode_time(&bytes),
                None => None,
            };
            claims.push(KeyClaim {
                idempotency_key: key,
                indexed,
                noted_at,
            });
        }
        if !stale.is_empty() {
            self.0.delete_many(&stale)?;
        }
        Ok(claims)
    }

    fn note_claim(&self, key: &str, at: Timestamp) -> Result<(), Error> {
        self.0.set(&claim_note_key(key), at.to_string().as_bytes())
    }

    fn purge_fulfilled(&self, before: Timestamp, limit: u32) -> Result<u32, Error> {
        let mut purged = 0;
        let mut after = None;
        // In small steps: the list is in the order orders were fulfilled, so the walk mostly
        // stops at its first item, one still within the retention period.
        while purged < limit {
            let walk = FULFILLED.walk(&self.0, after, PURGE_STEP)?;
            let last_step = walk.items.len() < PURGE_STEP;
            for (n, value) in walk.items {
                after = Some(n);
                let id = String::from_utf8_lossy(&value).into_owned();
                match self.load(&id)? {
                    Some(r) if r.status == OrderStatus::Fulfilled && r.updated_at >= before => {
                        return Ok(purged);
                    }
                    Some(r) if r.status == OrderStatus::Fulfilled => {
                        if let Some(key) = &r.order.idempotency_key {
                            self.unindex(key, &id)?;
                            let epoch = self.claim_epoch(key)?;
                            self.0.delete(&claim_order_key(key, epoch))?;
                            self.release_key(key)?;
                        }
                        self.0.delete(&order_key(&id))?;
                        purged += 1;
                    }
                    // Gone already (listed twice), or its fulfilled save has not landed yet: a
                    // young listing stays for that save, an old one goes (a later save lists it
                    // again).
                    _ if n > walk.settled => continue,
                    _ => {}
                }
                self.0.delete(&FULFILLED.item(n))?;
                if purged >= limit {
                    break;
                }
            }
            if last_step {
                break;
            }
        }
        Ok(purged)
    }
}

/// Items of the fulfilled list read per step of a purge.
const PURGE_STEP: usize = 16;

fn lease_key(name: &str) -> String {
    format!("lease:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_domain::{MemoryEvents, Order};
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// A key-value store in memory that counts the calls made to it, with clocks the test sets.
    #[derive(Default)]
    struct Counted {
        map: RefCell<HashMap<String, Vec<u8>>>,
        calls: Cell<u64>,
        /// Calls of `keys` (a listing of the whole store).
        listings: Cell<u32>,
        now: Cell<u64>,
        monotonic: Cell<u64>,
        /// The next write takes this long (moves the monotonic clock on).
        slow_write: Cell<u64>,
    }

    impl Counted {
        fn call(&self) {
            self.calls.set(self.calls.get() + 1);
        }
        fn write(&self) {
            self.monotonic
                .set(self.monotonic.get() + self.slow_write.take());
        }
        fn keys_with(&self, prefix: &str) -> usize {
            self.map
                .borrow()
                .keys()
                .filter(|k| k.starts_with(prefix))
                .count()
        }
    }

    /// The outbox positions a walk from the start sees (ten at most).
    fn positions(store: &KvStore<Counted>) -> Vec<u64> {
        let pending = store.pending(None, 10).unwrap();
        pending.iter().map(|p| p.position).collect()
    }

    impl Backend for Counted {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
            self.call();
            Ok(self.map.borrow().get(key).cloned())
        }
        fn set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
            self.call();
            self.write();
            self.map.borrow_mut().insert(key.into(), value.to_vec());
            Ok(())
        }
        fn delete(&self, key: &str) -> Result<(), Error> {
            self.call();
            self.map.borrow_mut().remove(key);
            Ok(())
        }
        fn exists(&self, key: &str) -> Result<bool, Error> {
            self.call();
            Ok(self.map.borrow().contains_key(key))
        }
        fn set_many(&self, items: &[(String, Vec<u8>)]) -> Result<(), Error> {
            self.call();
            self.write();
            let mut map = self.map.borrow_mut();
            for (k, v) in items {
                map.insert(k.clone(), v.clone());
            }
            Ok(())
        }
        fn delete_many(&self, keys: &[String]) -> Result<(), Error> {
            self.call();
            let mut map = self.map.borrow_mut();
            for k in keys {
                map.remove(k);
            }
            Ok(())
        }
        fn keys(&self) -> Result<Vec<String>, Error> {
            self.call();
            self.listings.set(self.listings.get() + 1);
            Ok(self.map.borrow().keys().cloned().collect())
        }
        fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
            self.call();
            let mut map = self.map.borrow_mut();
            let value = map
                .get(key)
                .map_or(0, |v| i64::from_le_bytes(v[..8].try_into().unwrap()))
                + delta;
            map.insert(key.into(), value.to_le_bytes().to_vec());
            Ok(value)
        }
        fn now_ms(&self) -> u64 {
            self.now.get()
        }
        fn monotonic_ms(&self) -> u64 {
            self.monotonic.get()
        }
    }

    fn record(n: u32, at: u64, key: Option<String>) -> OrderRecord {
        OrderRecord {
            order: Order {
                id: format!("2b0c7a34-7d5e-4f6a-9a43-5d1f{n:08x}"),
                details: "tea".into(),
                placed_at: at,
                idempotency_key: key,
            },
            status: OrderStatus::Accepted,
            updated_at: at,
        }
    }

    fn fulfilled(mut r: OrderRecord, at: u64) -> OrderRecord {
        r.status = OrderStatus::Fulfilled;
        r.updated_at = at;
        r
    }

    struct Still;
    impl sweeper::Clock for Still {
        fn elapsed_ms(&self) -> u64 {
            0
        }
    }

    const T0: u64 = 1_800_000_000_000;
    const WEEK: u64 = 7 * 24 * 3_600_000;

    fn sweep(store: &KvStore<Counted>, events: &MemoryEvents) -> sweeper::Report {
        let settings = sweeper::Settings {
            grace_ms: 10_000,
            retention_ms: WEEK,
        };
        let now = store.0.now.get();
        sweeper::sweep(store, events, &Still, now, settings).unwrap()
    }

    /// `stored` fulfilled orders (a tenth with idempotency keys), 10 accepted ones and 5 claims
    /// whose claimant died; then sweeps until the lists' cursors have settled.
    fn a_store_with(stored: u32) -> KvStore<Counted> {
        let store = KvStore(Counted::default());
        store.0.now.set(T0);
        for n in 0..stored {
            let key = (n % 10 == 0).then(|| format!("key-{n}"));
            let r = record(n, T0, key.clone());
            if let Some(key) = &key {
                assert!(store.claim_key(key).unwrap());
            }
            store.save(&r).unwrap();
            store.save(&fulfilled(r, T0 + 1)).unwrap();
        }
        for n in 0..10 {
            store.save(&record(stored + n, T0, None)).unwrap();
        }
        for n in 0..5 {
            assert!(store.claim_key(&format!("dead-{n}")).unwrap());
        }
        let events = MemoryEvents::default();
        // Until the claims of indexed orders are forgotten and the lists settled.
        for _ in 0..stored / 1_000 + 4 {
            store.0.now.set(store.0.now.get() + SETTLE_MS);
            sweep(&store, &events);
        }
        store
    }

    #[test]
    fn an_outbox_of_the_release_before_is_moved_once_and_its_orders_announced() {
        let store = KvStore(Counted::default());
        store.0.now.set(T0);
        // As the release before wrote them: records without an outbox number, and the outbox as
        // `pending:<placed_at>:<id>` keys.
        let v1_entry =
            |r: &OrderRecord| format!("pending:{:020}:{}", r.order.placed_at, r.order.id);
        let accepted = record(1, T0, None);
        let done = fulfilled(record(2, T0, None), T0 + 1);
        for r in [&accepted, &done] {
            store
                .0
                .set(&order_key(&r.order.id), &stored::encode(r, None))
                .unwrap();
            store.0.set(&v1_entry(r), r.order.id.as_bytes()).unwrap();
        }
        let events = MemoryEvents::default();
        store.0.now.set(T0 + 60_000);
        let first = sweep(&store, &events);
        assert_eq!(first.announced, 1, "{first:?}");
        assert_eq!(events.ids(), vec![accepted.order.id.clone()]);
        assert_eq!(store.0.keys_with("pending:"), 0, "the old entries are gone");

        // Marked: later sweeps never list the store again.
        assert_eq!(store.0.listings.get(), 1);
        store.0.now.set(T0 + 120_000);
        let _ = sweep(&store, &events);
        assert_eq!(store.0.listings.get(), 1, "listed once, ever");
        assert_eq!(
            events.ids(),
            vec![accepted.order.id.clone(), accepted.order.id.clone()],
            "still accepted: announced again, from the numbered outbox"
        );
    }

    #[test]
    fn a_sweep_costs_the_same_whatever_the_number_of_orders_stored() {
        let mut costs = Vec::new();
        for stored in [1_000, 100_000] {
            let store = a_store_with(stored);
            let events = MemoryEvents::default();
            store.0.now.set(store.0.now.get() + SETTLE_MS);
            let calls = store.0.calls.get();
            let started = std::time::Instant::now();
            let report = sweep(&store, &events);
            let took = started.elapsed();
            let calls = store.0.calls.get() - calls;
            let keys = store.0.map.borrow().len();
            println!("{stored} orders stored ({keys} keys): one sweep made {calls} store calls in {took:?}: {report:?}");
            assert_eq!((report.pending, report.announced), (10, 10), "{report:?}");
            costs.push(calls);
        }
        assert_eq!(costs[0], costs[1], "store calls of one sweep: {costs:?}");
    }

    #[test]
    fn lists_do_not_grow_with_the_orders_they_have_done_with() {
        let store = a_store_with(1_000);
        assert_eq!(store.0.keys_with("outbox:"), 10, "the pending orders only");
        assert_eq!(store.0.keys_with("claim:"), 0, "claims forgotten or freed");
        assert_eq!(store.0.keys_with("claims:"), 0, "and their listings gone");
        assert_eq!(store.0.keys_with("fulfilled:"), 1_000, "kept for retention");
    }

    #[test]
    fn fulfilled_orders_and_their_keys_go_after_the_retention_period() {
        let store = a_store_with(1_000);
        let events = MemoryEvents::default();
        let orders = store.0.keys_with("order:");
        store.0.now.set(T0 + 2 + WEEK);
        let report = sweep(&store, &events);
        assert_eq!(report.purged, 1_000, "{report:?}");
        assert_eq!(store.0.keys_with("order:"), orders - 1_000);
        assert_eq!(store.0.keys_with("idempotency:"), 0);
        assert_eq!(store.load(&record(0, T0, None).order.id).unwrap(), None);
        assert_eq!(store.find_by_key("key-10").unwrap(), None);
        assert!(store.claim_key("key-10").unwrap(), "the key is free again");
        assert_eq!(store.0.keys_with("fulfilled:"), 0, "its list is done with");
        let again = sweep(&store, &events);
        assert_eq!(again.purged, 0);
        assert_eq!(
            store.pending(None, 100).unwrap().len(),
            10,
            "accepted ones stay"
        );
    }

    #[test]
    fn an_accepted_order_is_in_the_outbox_until_saved_fulfilled() {
        let store = KvStore(Counted::default());
        store.0.now.set(T0);
        let r = record(1, T0, Some("k".into()));
        store.save(&r).unwrap();
        let pending = store.pending(None, 10).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].id.as_str(), pending[0].since),
            (r.order.id.as_str(), T0)
        );
        assert_eq!(pending[0].idempotency_key.as_deref(), Some("k"));
        // Deferred: to the back, with its attempts; never out of the outbox on the way.
        store.defer_pending(&pending[0], 2, T0 + 99).unwrap();
        let moved = store.pending(None, 10).unwrap();
        assert_eq!(moved.len(), 1);
        assert_eq!((moved[0].attempts, moved[0].not_before), (2, T0 + 99));
        assert!(moved[0].position > pending[0].position);
        store.save(&fulfilled(r.clone(), T0 + 5)).unwrap();
        // The record named the first position: the moved entry is the sweeper's to clean.
        let left = store.pending(None, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            store.load(&r.order.id).unwrap().unwrap().status,
            OrderStatus::Fulfilled
        );
        let report = sweep(&store, &MemoryEvents::default());
        assert_eq!(report.waiting, 1, "{report:?}");
        store.0.now.set(T0 + 60_000);
        let report = sweep(&store, &MemoryEvents::default());
        assert_eq!(report.cleaned, 1, "{report:?}");
        assert!(store.pending(None, 10).unwrap().is_empty());
    }

    #[test]
    fn a_write_slower_than_fresh_is_listed_again_where_walks_still_look() {
        let store = KvStore(Counted::default());
        store.0.now.set(T0);
        store.0.slow_write.set(FRESH_MS);
        let r = record(1, T0, None);
        store.save(&r).unwrap();
        assert_eq!(store.0.keys_with("outbox:"), 2);
        assert_eq!(positions(&store), vec![1, 2]);

        store.0.slow_write.set(FRESH_MS);
        assert!(store.claim_key("slow").unwrap());
        assert_eq!(
            store.0.keys_with("claims:"),
            2,
            "listed again after a slow claim"
        );
    }

    #[test]
    fn a_fenced_out_claimant_leaves_the_key_to_the_order_of_the_new_claim() {
        let store = KvStore(Counted::default());
        let key = Some("k".to_string());
        // A claims the key, then stalls; the sweeper revokes its claim.
        store.claim_epoch("k").unwrap();
        assert!(store.claim_key("k").unwrap());
        store.revoke_claim("k").unwrap();
        // B claims it anew, places its order, and it is fulfilled.
        let epoch = store.claim_epoch("k").unwrap();
        assert!(store.claim_key("k").unwrap());
        let b = record(2, T0, key.clone());
        store.save(&b).unwrap();
        store.save(&fulfilled(b.clone(), T0 + 1)).unwrap();
        assert_eq!(
            store
                .0
                .get(&claim_order_key("k", epoch))
                .unwrap()
                .as_deref(),
            Some(b.order.id.as_bytes())
        );
        // A's save lands at last (overwriting the key's index), and A takes its order back.
        let a = record(1, T0, key);
        store.save(&a).unwrap();
        store.discard(&a).unwrap();
        assert_eq!(store.load(&a.order.id).unwrap(), None);
        assert_eq!(
            store.find_by_key("k").unwrap().map(|r| r.order.id),
            Some(b.order.id),
            "the key leads to B's order again"
        );
    }

    #[test]
    fn a_discarded_order_of_the_current_claimant_leaves_the_key_unindexed() {
        let store = KvStore(Counted::default());
        store.claim_epoch("k").unwrap();
        assert!(store.claim_key("k").unwrap());
        let a = record(1, T0, Some("k".into()));
        store.save(&a).unwrap();
        store.discard(&a).unwrap();
        assert_eq!(store.find_by_key("k").unwrap(), None);
    }

    #[test]
    fn a_second_sweep_is_refused_while_one_runs() {
        let store = KvStore(Counted::default());
        store.0.now.set(T0);
        let events = MemoryEvents::default();
        let settings = sweeper::Settings {
            grace_ms: 10_000,
            retention_ms: 0,
        };
        // The first sweep holds its leases while it announces; a second one starts meanwhile.
        struct Nested<'a>(&'a KvStore<Counted>, &'a MemoryEvents, sweeper::Settings);
        impl order_domain::Events for Nested<'_> {
            fn order_placed(&self, order: &Order) -> Result<(), Error> {
                let second = sweeper::sweep(self.0, self.1, &Still, T0 + 1, self.2);
                assert!(matches!(second, Err(Error::Conflict(_))), "{second:?}");
                self.1.order_placed(order)
            }
        }
        store.save(&record(1, T0 - 60_000, None)).unwrap();
        let first = sweeper::sweep(
            &store,
            &Nested(&store, &events, settings),
            &Still,
            T0,
            settings,
        );
        assert_eq!(first.unwrap().announced, 1);
        assert_eq!(store.0.keys_with("lease:"), 0, "given back");
        sweeper::sweep(&store, &events, &Still, T0 + 2, settings).expect("free again");
    }

    #[test]
    fn a_cursor_passes_only_numbers_handed_out_long_enough_ago() {
        let store = KvStore(Counted::default());
        store.0.now.set(T0);
        // A writer took number 1 and has not written its item yet.
        next_number(&store.0, OUTBOX).unwrap();
        store.save(&record(2, T0, None)).unwrap();
        assert_eq!(store.pending(None, 10).unwrap()[0].position, 2);
        store.0.now.set(T0 + SETTLE_MS - 1);
        store.pending(None, 10).unwrap();
        // The late writer's item lands (within FRESH_MS of its number, on its clock).
        store
            .0
            .set(
                &OUTBOX.item(1),
                &Entry::of(&record(1, T0, None).order).encode(),
            )
            .unwrap();
        assert_eq!(positions(&store), vec![1, 2], "the cursor waited for it");
    }
}
