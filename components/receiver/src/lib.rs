//! Receiver: turns an order request into a stored, announced order.
//!
//! The rules live in [`intake`] as plain Rust over the [`Store`] and [`Events`] seams; the
//! component glue below only maps the WIT calls onto them.

pub mod intake;

pub use intake::{place, Events, MAX_DETAILS_BYTES, MAX_IDEMPOTENCY_KEY_BYTES};

#[cfg(target_arch = "wasm32")]
mod component;
