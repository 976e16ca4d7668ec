//! Outgoing HTTP (`wasi:http/outgoing-handler`), checked against `allowed_outbound_hosts`.
//!
//! A refused request fails with `HTTP-request-denied`, the error code Spin gives.

use std::sync::Arc;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::allowed_hosts::AllowedHosts;

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
    match host.split_once('.') {
        Some((id, "spin.internal")) => Some(id),
        _ => None,
    }
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
        crate::hop::record(crate::hop::Point::Sent, uri.path().as_bytes());
        // Never to the network, not even `a.b.spin.internal`, which Spin does not chain: Spin
        // allows `*.spin.internal` for the app's component ids only, and refuses the rest.
        if let Some(host) = uri.host().filter(|h| h.ends_with(".spin.internal")) {
            let target = chaining_target(host).map(str::to_string);
            let http = self.chaining.0.as_ref().and_then(|w| w.upgrade());
            return Box::new(async move {
                let resp = match (http, target) {
                    (Some(http), Some(target)) => http.chain(&target, request).await,
                    _ => None,
                };
                match resp {
                    Some(resp) => Ok((
                        resp,
                        Box::new(async { Ok(()) })
                            as Box<dyn std::future::Future<Output = _> + Send>,
                    )),
                    // Spin traps the guest here (a hook cannot); an error is as close as it gets.
                    None => Err(HttpError::DestinationNotFound),
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
