//! The HTTP edge of the WASIp3 order apps (composition/order-app-p3.wac, order-app-mqtt-p3.wac,
//! order-app-redis-p3.wac): the same wire contract as the WASIp2 gateway (`http_gateway::wire`),
//! served as `wasi:http/handler@0.3.0`.
//!
//! What WASIp3 changes: a handler can return its response and keep running in the same instance.
//! So an order is answered 202 as soon as `intake.place` has stored it, and announced through the
//! gateway's own `events` import after the response has been sent: the composition decides whether
//! that fulfils it in process (`events-local`) or publishes it to a fulfilment app (`events-mqtt`,
//! `events-redis`). The WASIp2 builds announce inside `place`, before their 202. The order is in
//! the outbox from the moment it is stored, so an instance that dies in between leaves it to the
//! sweeper, as in every other shape.

#[cfg(all(target_arch = "wasm32", feature = "edge"))]
pub mod edge;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
