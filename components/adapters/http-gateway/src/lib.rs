//! The HTTP edge of the order app: parses and checks requests, calls `intake` / `status`, and maps
//! their answers and errors to status codes with JSON bodies. Everything a client can get wrong is
//! answered here with a 4xx before any business component is called.
//!
//! [`wire`] is the whole contract as plain functions (tested natively); `component.rs` is the Spin
//! glue that reads the request and sends the [`http_reply::Reply`] in one piece.

pub mod wire;

#[cfg(target_arch = "wasm32")]
mod component;
