//! `events` for the WASIp3 composed app: the receiver's announcement is not acted on here.
//!
//! Why: in the WASIp2 build `events-local` fulfils inside `intake.place`, so the order is fulfilled
//! before its 202 leaves. In the WASIp3 build the gateway answers 202 first and then calls
//! `fulfilment` itself, in the same instance. What makes that safe is already stored: the store
//! puts an accepted record in the outbox before it writes it, so an instance that dies between the
//! 202 and the fulfilment leaves the order to the sweeper (`outbox.sweep`), which announces it again
//! through the sweeper's own `events` (events-local).

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
