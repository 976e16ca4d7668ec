//! `store` on Spin's key-value store. Which backend holds the data (embedded SQLite or Redis) is the
//! runtime config's choice, not this code's.
//!
//! Layout of the `default` store:
//! - `order:<id>`: the record as versioned JSON ([`stored::Stored`]).
//! - `idempotency:<key>`: the id of the order that key placed.
//! - `pending:<placed_at, 20 digits>:<id>`: the outbox. Written with an accepted record, deleted
//!   after the fulfilled one, so an accepted order is in it whatever fails in between. Zero-padded
//!   times make the key order the age order.
//! - `claim:<key>`: a counter; the caller whose atomic increment (`wasi:keyvalue/atomics`) gives 1
//!   owns the key. Spin's `increment` is atomic on both backends (SQLite: read and write in one
//!   transaction; Redis: `INCRBY`); compare-and-swap is not used, because on Spin's SQLite store a
//!   swap of an absent key is a plain upsert that two callers can both "win".
//! - `claim-noted:<key>`: when a sweep first saw that claim with no order indexed (the sweeper frees
//!   claims whose claimant died, and forgets those whose order is indexed).
//!
//! `save` writes outbox entry, record and index with one `wasi:keyvalue/batch` `set-many`, in that
//! order. The WIT promises no atomicity, but Spin's SQLite store writes a batch in one transaction
//! (one commit, where three `set`s were three) and its Redis store in one `MSET`; a backend that
//! writes one by one still writes the entry before the record and the key after it.
//!
//! Listing the outbox reads every key of the store (`get-keys`; Spin's key-value has no prefix
//! scan). That is fine at this project's scale (a sweep a minute over some thousands of keys); a
//! store with millions of orders would keep the outbox in a sorted set or a table instead.

pub mod stored;

#[cfg(target_arch = "wasm32")]
mod spin_store;
#[cfg(target_arch = "wasm32")]
pub use spin_store::SpinStore;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
