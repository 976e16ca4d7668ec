//! "Order placed" POSTed to the fulfilment app (`{{ fulfilment_url }}`, e.g.
//! `http://fulfilment:3000/fulfil`) with Spin's outbound HTTP: the contract-first way of
//! linking two Spin apps. The body is the same signed message as on MQTT and Redis.
//! The call returns once fulfilment answered, so a 2xx means the order is fulfilled.

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
