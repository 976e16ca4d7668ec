//! `events` for the receiver of the WASIp3 order apps: the receiver's announcement is not acted on
//! here.
//!
//! Why: in the WASIp2 builds the receiver's `events` (events-local, or a publisher) acts inside
//! `intake.place`, so the order is fulfilled or published before its 202 leaves. In the WASIp3
//! builds the gateway answers 202 first and then announces the order through its own `events`
//! import (events-local in the composed app, events-mqtt or events-redis in the networked ones), in
//! the same instance. What makes that safe is already stored: the store puts an accepted record in
//! the outbox before it writes it, so an instance that dies between the 202 and the announcement
//! leaves the order to the sweeper (`outbox.sweep`), which announces it again through the
//! sweeper's own `events`.

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
