//! Outgoing HTTP (`wasi:http/outgoing-handler`), checked against `allowed_outbound_hosts`.
//!
//! A refused request fails with `HTTP-request-denied`, the error code Spin gives.

use std::sync::Arc;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::state::ComponentCtx;

pub struct OutboundHttp {
    component: Arc<ComponentCtx>,
    chaining: ServiceChaining,
}

impl OutboundHttp {
    pub fn new(component: Arc<ComponentCtx>, chaining: ServiceChaining) -> OutboundHttp {
        OutboundHttp {
            component,
            chaining,
        }
    }
}

/// Where an instance's service-chained requests go: the app's HTTP trigger, handed to every
/// instance when its store is made. Weak, because the trigger owns the app that owns the
/// components; the trigger hands out a reference to itself that it made at construction, so
/// there is no moment when chaining is silently unavailable.
#[derive(Clone, Default)]
pub struct ServiceChaining(Option<std::sync::Weak<crate::trigger::http::HttpTrigger>>);

impl ServiceChaining {
    /// No HTTP trigger in this app: every chained request is `destination-not-found`, as Spin.
    pub fn none() -> ServiceChaining {
        ServiceChaining(None)
    }

    pub fn to(trigger: std::sync::Weak<crate::trigger::http::HttpTrigger>) -> ServiceChaining {
        ServiceChaining(Some(trigger))
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
            Some(host) => self
                .component
                .allowed_hosts
                .allows(scheme, host, uri.port_u16()),
            None => false,
        };
        if !allowed {
            tracing::info!(
                component = %self.component.id,
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
