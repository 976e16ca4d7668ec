//! Triggers: what turns an outside event into a call on a fresh component instance. The message
//! triggers (`redis`, `mqtt`) own their broker loops and share one delivery path (`delivery`).

mod delivery;
pub mod http;
pub mod mqtt;
pub mod redis;

use std::future::Future;

use anyhow::Result;

use crate::app::App;

/// Runs a message handler under the app's time limit. The epoch deadline stops a guest that
/// computes; this also stops one that waits forever in a host call.
pub(crate) async fn time_limited<T>(
    app: &App,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<T> {
    tokio::time::timeout(app.limits.timeout, call)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "time limit of {} ms exceeded",
                app.limits.timeout.as_millis()
            )
        })?
        .map_err(anyhow::Error::from)
}
