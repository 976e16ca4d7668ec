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
        if let Some(target) = uri
            .host()
            .and_then(|h| h.strip_suffix(".spin.internal"))
            .map(str::to_string)
        {
            let http = self.chaining.0.as_ref().and_then(|w| w.upgrade());
            return Box::new(async move {
                let resp = match http {
                    Some(http) => http.chain(&target, request).await,
                    None => None,
                };
                match resp {
                    Some(resp) => Ok((
                        resp,
                        Box::new(async { Ok(()) })
                            as Box<dyn std::future::Future<Output = _> + Send>,
                    )),
                    // Spin: a chained request to a component no HTTP trigger serves.
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
