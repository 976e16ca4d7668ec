//! The HTTP edge of the order app: parses and checks requests, calls `intake` / `status`, and maps
//! their answers and errors to status codes with JSON bodies. Everything a client can get wrong is
//! answered here with a 4xx before any business component is called.
//!
//! [`wire`] is the whole contract as plain functions (tested natively); `edge` (wasm only) reads
//! the request and sends the [`http_reply::Reply`] in one piece; `component.rs` is the WIT glue
//! that answers `edge::Orders` with the `intake` / `status` imports.

pub mod wire;

#[cfg(all(target_arch = "wasm32", feature = "spin"))]
pub mod edge;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
