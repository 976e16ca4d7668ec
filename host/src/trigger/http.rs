//! The HTTP trigger: hyper server, Spin routing and `spin-*` headers, an instance per request.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::app::App;
use crate::manifest::HttpRoute;
use crate::routes::Router;
use crate::state::{ComponentCtx, HostState};

struct Handler {
    ctx: Arc<ComponentCtx>,
    pre: ProxyPre<HostState>,
}

pub struct HttpTrigger {
    app: Arc<App>,
    router: Router<usize>,
    handlers: Vec<Handler>,
    /// Component id → handler, for service chaining (`http://<id>.spin.internal`).
    by_component: std::collections::HashMap<String, usize>,
}

impl HttpTrigger {
    pub fn new(app: Arc<App>) -> Result<Option<HttpTrigger>> {
        let mut handlers = Vec::new();
        let mut routes = Vec::new();
        let mut by_component: std::collections::HashMap<String, usize> = Default::default();
        for t in &app.manifest.trigger.http {
            let id = crate::manifest::Manifest::component_id(&t.component);
            let idx = match by_component.get(id) {
                Some(i) => *i,
                None => {
                    let loaded = app.component(id);
                    let pre = app
                        .linker
                        .instantiate_pre(&loaded.component)
                        .and_then(ProxyPre::new)
                        .map_err(|e| anyhow::anyhow!("{e:#}"))
                        .with_context(|| {
                            format!("component {id:?} cannot serve HTTP (does it export wasi:http/incoming-handler@0.2 and import only what nanohost provides?)")
                        })?;
                    handlers.push(Handler {
                        ctx: loaded.ctx.clone(),
                        pre,
                    });
                    by_component.insert(id.to_string(), handlers.len() - 1);
                    handlers.len() - 1
                }
            };
            if let HttpRoute::Path(p) = &t.route {
                routes.push((p.clone(), idx));
            }
        }
        if handlers.is_empty() {
            return Ok(None);
        }
        Ok(Some(HttpTrigger {
            app,
            router: Router::new(routes)?,
            handlers,
            by_component,
        }))
    }

    /// Accepts connections until `shutdown` flips, then lets open connections finish their
    /// current request.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // Every connection task holds a sender; when all are gone, `recv` returns None.
        let (conn_tx, mut conn_rx) = mpsc::channel::<()>(1);
        loop {
            let (stream, client) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            // Small responses must not wait for Nagle + delayed ACK.
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let mut shutdown = shutdown.clone();
            let guard = conn_tx.clone();
            tokio::spawn(async move {
                let _guard = guard;
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, std::convert::Infallible>(this.handle(req, client).await) }
                });
                let conn = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!("connection from {client}: {e}");
                        }
                    }
                    _ = shutdown.changed() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
        drop(listener);
        drop(conn_tx);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), conn_rx.recv()).await;
    }

    async fn handle(
        &self,
        mut req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<HyperOutgoingBody> {
        let path = req.uri().path().to_string();
        crate::hop::record(crate::hop::Point::Received, path.as_bytes());
        let Some(m) = self.router.route(&path) else {
            return plain(StatusCode::NOT_FOUND, "Not Found");
        };
        let idx = *m.target;
        set_spin_headers(&mut req, &m, client);
        self.dispatch(idx, req, path).await
    }

    /// A request from a component to `http://<id>.spin.internal/...` (Spin's service
    /// chaining): served in-process by a fresh instance of that component, as if it matched a
    /// `/...` route. `None` if no HTTP trigger serves `component`.
    pub async fn chain(
        &self,
        component: &str,
        mut req: Request<wasmtime_wasi_http::WasiBody>,
    ) -> Option<Response<HyperOutgoingBody>> {
        let idx = *self.by_component.get(component)?;
        let path = req.uri().path().to_string();
        let full_url = req.uri().to_string();
        let headers = req.headers_mut();
        // Spin drops the Host header of a chained request (it names the internal host).
        headers.remove(hyper::header::HOST);
        for (name, value) in [
            ("spin-full-url", full_url.as_str()),
            ("spin-path-info", path.as_str()),
            ("spin-matched-route", "/..."),
            ("spin-base-path", "/"),
            ("spin-raw-component-route", "/..."),
            ("spin-component-route", ""),
            ("spin-client-addr", "127.0.0.1:0"),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        Some(self.dispatch(idx, req, path).await)
    }

    /// Runs one request on a fresh instance of handler `idx`.
    async fn dispatch<B>(
        &self,
        idx: usize,
        req: Request<B>,
        path: String,
    ) -> Response<HyperOutgoingBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let handler = &self.handlers[idx];
        let mut store = self.app.store(&handler.ctx);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let prepared = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .and_then(|req| Ok((req, store.data_mut().http().new_response_outparam(tx)?)));
        let (req, out) = match prepared {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(component = %handler.ctx.id, "cannot prepare request: {e:#}");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        };
        let pre = handler.pre.clone();
        let timeout = self.app.limits.timeout;
        let hop_key = path.clone();
        // A task of its own: the guest may keep streaming the body after sending the headers.
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                crate::hop::record(crate::hop::Point::HandlerStart, hop_key.as_bytes());
                let r = proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await;
                crate::hop::record(crate::hop::Point::HandlerEnd, hop_key.as_bytes());
                r
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(r) => r.map_err(anyhow::Error::from),
                Err(_) => Err(anyhow::anyhow!(
                    "time limit of {} ms exceeded",
                    timeout.as_millis()
                )),
            }
        });

        match rx.await {
            Ok(Ok(resp)) => resp,
            Ok(Err(code)) => {
                tracing::error!(component = %handler.ctx.id, "guest returned error {code:?}");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
            Err(_) => {
                let err = match task.await {
                    Ok(Ok(())) => anyhow::anyhow!("guest never set a response"),
                    Ok(Err(e)) => e,
                    Err(e) => anyhow::anyhow!("handler task failed: {e}"),
                };
                tracing::error!(component = %handler.ctx.id, path = %path, "request failed: {err:#}");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

/// The headers Spin adds for the component (spin trigger-http `compute_default_headers`).
fn set_spin_headers(
    req: &mut Request<Incoming>,
    m: &crate::routes::RouteMatch<'_, usize>,
    client: SocketAddr,
) {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let full_url = format!("http://{host}{path_and_query}");
    let headers = req.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("spin-full-url", &full_url);
    set("spin-path-info", &m.path_info);
    set("spin-matched-route", m.raw_route);
    set("spin-base-path", "/");
    set("spin-raw-component-route", m.raw_route);
    set("spin-component-route", m.component_route());
    set("spin-client-addr", &client.to_string());
    for (name, value) in &m.params {
        let header = format!("spin-path-match-{}", name.to_ascii_lowercase());
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(header), HeaderValue::from_str(value)) {
            headers.insert(n, v);
        }
    }
}
