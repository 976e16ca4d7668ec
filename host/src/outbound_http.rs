//! Outgoing HTTP (`wasi:http/outgoing-handler`), checked against `allowed_outbound_hosts`.
//!
//! A refused request fails with `HTTP-request-denied`, the error code Spin gives. A chained
//! request to a component that no HTTP route serves traps the guest, as in Spin.

use std::sync::Arc;

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, HostFutureIncomingResponse as _};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostIncomingResponse};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks, WasiHttpView,
};

use crate::allowed_hosts::{AllowedHosts, SERVICE_CHAINING_SUFFIX};

/// Per-instance state: the hooks wasmtime-wasi-http calls for each outgoing request.
pub struct OutboundHttp {
    component_id: Arc<str>,
    allowed_hosts: Arc<AllowedHosts>,
    chaining: ServiceChaining,
}

impl OutboundHttp {
    pub fn new(
        component_id: Arc<str>,
        allowed_hosts: Arc<AllowedHosts>,
        chaining: ServiceChaining,
    ) -> OutboundHttp {
        OutboundHttp {
            component_id,
            allowed_hosts,
            chaining,
        }
    }
}

/// Where an instance's service-chained requests go: the app's HTTP trigger, handed to every
/// instance when its store is made. Weak, because the trigger owns the app that owns the
/// components; the trigger hands out a reference to itself that it made at construction, so
/// there is no moment when chaining is silently unavailable.
#[derive(Clone, Default)]
pub struct ServiceChaining(Option<std::sync::Weak<dyn ChainTarget>>);

/// What serves chained requests (the HTTP trigger): a trait here, so this capability does not
/// depend on the trigger.
pub trait ChainTarget: Send + Sync {
    /// `None` if no HTTP route serves `component`.
    fn chain<'a>(
        &'a self,
        component: &'a str,
        request: http::Request<WasiBody>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Option<
                        http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
                    >,
                > + Send
                + 'a,
        >,
    >;
}

impl ServiceChaining {
    /// No HTTP trigger in this app: every chained request is `destination-not-found`, as Spin.
    pub fn none() -> ServiceChaining {
        ServiceChaining(None)
    }

    pub fn to(target: std::sync::Weak<dyn ChainTarget>) -> ServiceChaining {
        ServiceChaining(Some(target))
    }
}

/// The component a service-chaining host names, as Spin parses it: `<id>.spin.internal`, with an
/// optional port, and no further dots in `<id>`.
fn chaining_target(host: &str) -> Option<&str> {
    let host = host.trim();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host.strip_suffix(SERVICE_CHAINING_SUFFIX)
        .filter(|id| !id.contains('.'))
}

/// Spin's error when a chained request names a component that no HTTP route serves; Spin turns it
/// into a trap of the calling guest (`HttpError::trap` in its interceptor).
#[derive(Debug)]
pub(crate) struct UnknownRoutingDestination(pub(crate) String);

impl std::fmt::Display for UnknownRoutingDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown routing destination '{}'", self.0)
    }
}

impl std::error::Error for UnknownRoutingDestination {}

/// The error a send hook answers with for [`UnknownRoutingDestination`]. wasmtime-wasi-http 48
/// gives a hook no way to trap (its `Error` is only ever turned into an `error-code` for the
/// guest), so it travels as the source of a connect error, which `future-incoming-response.get`
/// (see [`add_to_linker`]) turns into the trap.
fn unknown_routing_destination(component: String) -> HttpError {
    HttpError::Connect(std::io::Error::other(UnknownRoutingDestination(component)))
}

fn as_unknown_routing_destination(err: &HttpError) -> Option<&UnknownRoutingDestination> {
    match err {
        HttpError::Connect(e) => e.get_ref()?.downcast_ref(),
        _ => None,
    }
}

/// The interface `wasmtime_wasi_http::p2::add_only_http_to_linker_async` defines.
const WASI_HTTP_TYPES: &str = "wasi:http/types@0.2.12";

/// Replaces wasmtime-wasi-http's `future-incoming-response.get` (after
/// `add_only_http_to_linker_async`): a response that is an [`UnknownRoutingDestination`] traps
/// the guest where Spin 3.6.3's does (there the send future's outer error traps in `get`);
/// everything else is wasmtime-wasi-http's own `get`.
pub fn add_to_linker<T: WasiHttpView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    type Got = Option<Result<Result<Resource<HostIncomingResponse>, ErrorCode>, ()>>;
    linker.allow_shadowing(true);
    let defined = linker.instance(WASI_HTTP_TYPES).and_then(|mut types| {
        types.func_wrap(
            "[method]future-incoming-response.get",
            |mut store: wasmtime::StoreContextMut<'_, T>,
             (id,): (Resource<HostFutureIncomingResponse>,)|
             -> wasmtime::Result<(Got,)> {
                let mut http = store.data_mut().http();
                if let Ok(HostFutureIncomingResponse::Ready(Err(e))) = http.table.get(&id) {
                    if let Some(unknown) = as_unknown_routing_destination(e) {
                        return Err(wasmtime::format_err!("{unknown}"));
                    }
                }
                Ok((http.get(id)?,))
            },
        )
    });
    linker.allow_shadowing(false);
    defined
}

/// Whether a Host header names a service-chaining host (the HTTP trigger strips such a header
/// from outside requests, as Spin does).
pub(crate) fn is_chaining_host(host: &str) -> bool {
    chaining_target(host).is_some()
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    /// Only reached for [`UnknownRoutingDestination`] if `add_to_linker` was not called: then the
    /// guest gets the nearest error code instead of its trap.
    fn p2_error_from_connect(&mut self, err: &std::io::Error) -> ErrorCode {
        if err
            .get_ref()
            .is_some_and(|e| e.is::<UnknownRoutingDestination>())
        {
            return ErrorCode::DestinationNotFound;
        }
        tracing::warn!("connect error: {err:?}");
        ErrorCode::ConnectionRefused
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https");
        let allowed = match uri.host() {
            Some(host) => self.allowed_hosts.allows(scheme, host, uri.port_u16()),
            None => false,
        };
        if !allowed {
            tracing::info!(
                component = %self.component_id,
                url = %uri,
                "outbound HTTP request refused: not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        drop(fut);
        // The benchmark times the hop from the moment this span opens.
        let _send = tracing::trace_span!(target: "nanohost::hop", "send", key = uri.path());
        // Never to the network, not even `a.b.spin.internal` (allowed only by a wider wildcard
        // such as `*`), which Spin does not chain.
        if let Some(host) = uri.host().filter(|h| h.ends_with(SERVICE_CHAINING_SUFFIX)) {
            let target = chaining_target(host).map(str::to_string);
            let http = self.chaining.0.as_ref().and_then(|w| w.upgrade());
            return Box::new(async move {
                let (Some(http), Some(target)) = (http, target) else {
                    return Err(HttpError::DestinationNotFound);
                };
                match http.chain(&target, request).await {
                    Some(resp) => Ok((
                        resp,
                        Box::new(async { Ok(()) })
                            as Box<dyn std::future::Future<Output = _> + Send>,
                    )),
                    None => Err(unknown_routing_destination(target)),
                }
            });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests;
