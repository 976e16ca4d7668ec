//! Receiver: turns an order request into a stored, announced order.
//!
//! The rules live in [`intake`] as plain Rust over the [`Store`] and [`Events`] seams; the
//! component glue below only maps the WIT calls onto them.

pub mod intake;

pub use intake::{place, place_now, CLAIM_WAIT_MS, MAX_DETAILS_BYTES, MAX_IDEMPOTENCY_KEY_BYTES};
pub use order_domain::Events;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
