//! `store` on Spin's key-value store. Which backend holds the data (embedded SQLite or Redis) is the
//! runtime config's choice, not this code's.
//!
//! Layout of the `default` store:
//! - `order:<id>`: the record as versioned JSON ([`stored::Stored`]); an accepted one also names
//!   its outbox entry.
//! - `idempotency:<key>`: the id of the order that key placed.
//! - `outbox:<n>`: the outbox, a numbered list ([`orders::List`], with `outbox-seq` and
//!   `outbox-cursor`): written with an accepted record, deleted after the fulfilled one, so an
//!   accepted order is in it whatever fails in between. Each entry holds the order's id, time and
//!   key, and how often its announcement failed.
//! - `claims:<n>`: the idempotency keys claimed, listed before each claim, so the sweeper finds
//!   claims without listing the store.
//! - `fulfilled:<n>`: ids of fulfilled orders, in the order they were fulfilled: what retention
//!   walks.
//! - `claim:<key>`: a counter; the caller whose atomic increment (`wasi:keyvalue/atomics`) gives 1
//!   owns the key. Spin's `increment` is atomic on both backends (SQLite: read and write in one
//!   transaction; Redis: `INCRBY`); compare-and-swap is not used, because on Spin's SQLite store a
//!   swap of an absent key is a plain upsert that two callers can both "win".
//! - `claim-noted:<key>`: when a sweep first saw that claim with no order indexed (the sweeper frees
//!   claims whose claimant died, and forgets those whose order is indexed).
//! - `lease:<name>`: a counter like a claim: the sweep's one-at-a-time lease.
//!
//! Nothing lists the store's keys (`get-keys` is `KEYS *` on Redis): a sweep's cost follows the
//! orders pending, the claims and the orders fulfilled lately, not the number of orders stored.
//! `get-many` is not used either: Spin 3.6.3's Redis store sends it as `KEYS`, not `MGET`.

pub mod orders;
pub mod stored;

#[cfg(target_arch = "wasm32")]
mod spin_store;
#[cfg(target_arch = "wasm32")]
pub use spin_store::{SpinStore, SPIN_STORE};

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
