//! The HTTP trigger: hyper server, Spin routing and `spin-*` headers, an instance per request.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use wasmtime_wasi_http::handler::ProxyHandler;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::app::App;
use crate::engine::{Footprint, PoolTotals};
use crate::manifest::{Application, Manifest};
use crate::routes::Router;
use crate::state::{ComponentCtx, HostState};
use crate::wasip3::{InstanceReuse, Wasip3Handler};

/// The configure stage's part for the HTTP trigger: its routes, checked as its router takes them.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpPlan {
    /// `[[trigger.http]]` in the manifest's order: the component and its route (`None`: private,
    /// reached by service chaining only).
    pub triggers: Vec<(String, Option<String>)>,
    /// For `/.well-known/spin/info`.
    pub application: Application,
}

impl HttpPlan {
    pub(crate) fn configure(manifest: &Manifest) -> Result<HttpPlan> {
        let mut triggers = Vec::new();
        for t in &manifest.trigger.http {
            let route = t.route.path()?.map(str::to_string);
            triggers.push((Manifest::component_id(&t.component).to_string(), route));
        }
        // Each route was checked as the router takes it when the manifest was read
        // (`routes::validate_route`); the router itself is built by whoever routes.
        Ok(HttpPlan {
            triggers,
            application: manifest.application.clone(),
        })
    }

    /// The components HTTP triggers run, each once, in the manifest's order.
    pub(crate) fn components(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for (id, _) in &self.triggers {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        ids
    }

    /// The router of the public routes; `target` gives each route's target from its component.
    pub(crate) fn router<T>(&self, mut target: impl FnMut(&str) -> T) -> Result<Router<T>> {
        let public = self
            .triggers
            .iter()
            .filter_map(|(id, route)| Some((route.clone()?, id)));
        Router::new(
            public
                .map(|(route, id)| (route, target(id)))
                .collect::<Vec<_>>(),
        )
    }
}

/// How a component serves requests: WASIp2, a fresh instance per request (as Spin); WASIp3,
/// reused instances (as Spin 4).
enum Handler {
    Wasip2 {
        ctx: Arc<ComponentCtx>,
        pre: ProxyPre<HostState>,
    },
    Wasip3 {
        id: String,
        instances: ProxyHandler<Wasip3Handler>,
    },
}

/// A handler before the trigger exists (a WASIp3 one needs the trigger for service chaining).
enum Prepared {
    Wasip2(Arc<ComponentCtx>, ProxyPre<HostState>),
    Wasip3(Arc<ComponentCtx>, ServicePre<HostState>),
}

/// How the listener protects itself from slow, idle and too many clients.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// A client must send a request's headers within this time, also when a kept-alive
    /// connection sits idle between requests; then the connection is closed.
    pub header_read_timeout: std::time::Duration,
    /// A client must send a request's whole body within this time of its head, if the component
    /// waits for it: else the host answers a JSON 408, closes the connection and stops the
    /// instance. Spin 3.6.3 has no such limit; the guest's own time limit is separate.
    pub body_read_timeout: std::time::Duration,
    /// Connections open at once; more wait in the kernel's backlog until one closes.
    pub max_connections: usize,
    /// Requests in a component at once, at most; more get a JSON 503 with `Retry-After` at once.
    /// The trigger lowers it to what the pooling allocator holds of the app's largest component
    /// (`HttpTrigger::max_in_flight`), so the allocator is never what refuses a request.
    pub max_concurrent_requests: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_read_timeout: std::time::Duration::from_secs(10),
            body_read_timeout: std::time::Duration::from_secs(10),
            max_connections: 2048,
            max_concurrent_requests: 900,
        }
    }
}

pub struct HttpTrigger {
    /// Itself, for the service chaining of the instances it makes.
    me: std::sync::Weak<HttpTrigger>,
    app: Arc<App>,
    /// For `/.well-known/spin/info`.
    application: Application,
    limits: ListenerLimits,
    /// Permits for requests running in a component.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// How many permits there are.
    max_in_flight: usize,
    router: Router<usize>,
    handlers: Vec<Handler>,
    /// Component id → handler, for service chaining (`http://<id>.spin.internal`).
    by_component: std::collections::HashMap<String, usize>,
}

impl HttpTrigger {
    /// `None` if the app has no HTTP routes.
    pub(crate) fn new(
        app: Arc<App>,
        plan: &HttpPlan,
        limits: ListenerLimits,
        reuse: InstanceReuse,
    ) -> Result<Option<Arc<HttpTrigger>>> {
        let mut prepared = Vec::new();
        let mut by_component: std::collections::HashMap<String, usize> = Default::default();
        for id in plan.components() {
            prepared.push(if app.wasip3.contains(&id) {
                let (ctx, pre) = app.prepare(
                    &id,
                    ServicePre::new,
                    &format!("export {}", crate::wasip3::HTTP_HANDLER),
                )?;
                Prepared::Wasip3(ctx, pre)
            } else {
                let (ctx, pre) =
                    app.prepare(&id, ProxyPre::new, "export wasi:http/incoming-handler@0.2")?;
                Prepared::Wasip2(ctx, pre)
            });
            by_component.insert(id, prepared.len() - 1);
        }
        if prepared.is_empty() {
            return Ok(None);
        }
        let router = plan.router(|id| by_component[id])?;
        let application = plan.application.clone();
        let max_in_flight = max_in_flight(&app, limits.max_concurrent_requests);
        Ok(Some(Arc::new_cyclic(
            |me: &std::sync::Weak<HttpTrigger>| {
                let chaining = {
                    let me: std::sync::Weak<dyn crate::outbound_http::ChainTarget> = me.clone();
                    crate::outbound_http::ServiceChaining::to(me)
                };
                let handlers = prepared
                    .into_iter()
                    .map(|p| match p {
                        Prepared::Wasip2(ctx, pre) => Handler::Wasip2 { ctx, pre },
                        Prepared::Wasip3(ctx, pre) => Handler::Wasip3 {
                            id: ctx.id.clone(),
                            instances: ProxyHandler::new(Wasip3Handler {
                                stores: app.stores.clone(),
                                ctx,
                                pre,
                                chaining: chaining.clone(),
                                reuse,
                            }),
                        },
                    })
                    .collect();
                HttpTrigger {
                    me: me.clone(),
                    app,
                    application,
                    in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
                    max_in_flight,
                    limits,
                    router,
                    handlers,
                    by_component,
                }
            },
        )))
    }

    /// Requests that may run in a component at once (more get a JSON 503 with `Retry-After`).
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// What the instances of this app get for service chaining.
    pub fn chaining(&self) -> crate::outbound_http::ServiceChaining {
        let me: std::sync::Weak<dyn crate::outbound_http::ChainTarget> = self.me.clone();
        crate::outbound_http::ServiceChaining::to(me)
    }

    /// Accepts connections until `shutdown` flips, then lets open connections finish their
    /// current request.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // Tells every open connection to finish its current request and close, and waits for them.
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let connections = Arc::new(tokio::sync::Semaphore::new(self.limits.max_connections));
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let permit = tokio::select! {
                p = connections.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.changed() => break,
            };
            let (stream, client) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => {
                        backoff = ACCEPT_BACKOFF_MIN;
                        x
                    }
                    Err(e) => {
                        // Out of file descriptors, say: retrying at once would spin a core.
                        tracing::warn!("accept failed: {e}; retrying in {} ms", backoff.as_millis());
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.changed() => break,
                        }
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            // No TCP_NODELAY: Spin 3.6.3 leaves Nagle on for accepted connections, and a
            // response that reaches the socket in pieces must show its delay here as it would
            // there (issue 14).
            let this = self.clone();
            let header_read_timeout = self.limits.header_read_timeout;
            let service = hyper::service::service_fn(move |req| {
                let this = this.clone();
                async move { Ok::<_, std::convert::Infallible>(this.handle(req, client).await) }
            });
            let conn = http1::Builder::new()
                .keep_alive(true)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = conn.await {
                    tracing::debug!("connection from {client}: {e}");
                }
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
    }

    async fn handle(
        &self,
        mut req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<HyperOutgoingBody> {
        let path = req.uri().path().to_string();
        tracing::trace!(target: "nanohost::hop", key = path.as_str(), "received");
        match front(&self.router, &self.application, &path, &mut req, client) {
            Front::Dispatch(idx) => {
                let deadline = Some(self.limits.body_read_timeout);
                self.dispatch(idx, req, path, deadline).await
            }
            Front::Answer(answer) => answer,
        }
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
        // Spin 3.6.3 rebuilds a chained request's URL on `localhost` and reports no client.
        let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let full_url = format!("http://localhost{path_and_query}");
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
            ("spin-client-addr", "0.0.0.0:0"),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        // The body comes from another instance of this host, under its own time limit.
        Some(self.dispatch(idx, req, path, None).await)
    }

    /// Runs one request on a fresh instance of handler `idx`; `body_deadline` bounds the time
    /// the request's body may take to arrive once the component waits for it.
    async fn dispatch<B>(
        &self,
        idx: usize,
        req: Request<B>,
        path: String,
        body_deadline: Option<std::time::Duration>,
    ) -> Response<HyperOutgoingBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return busy();
        };
        let late = Arc::new(tokio::sync::Notify::new());
        let req = req.map(|body| DeadlineBody::new(body, body_deadline, late.clone()));
        let (ctx, pre) = match &self.handlers[idx] {
            Handler::Wasip2 { ctx, pre } => (ctx, pre),
            Handler::Wasip3 { id, instances } => {
                let req = req.map(BodyExt::boxed_unsync);
                return reused(id, instances, req, path, late, body_deadline, permit).await;
            }
        };
        let mut store = self.app.store(ctx, &self.chaining());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let prepared = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .and_then(|req| Ok((req, store.data_mut().http().new_response_outparam(tx)?)));
        let (req, out) = match prepared {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(component = %ctx.id, "cannot prepare request: {e:#}");
                return json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        };
        let pre = pre.clone();
        let timeout = self.app.limits.timeout;
        let hop_key = path.clone();
        // A task of its own: the guest may keep streaming the body after sending the headers.
        let task = tokio::spawn(async move {
            // Held until the guest is done, also when it streams after the headers.
            let _permit = permit;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                let handle =
                    tracing::trace_span!(target: "nanohost::hop", "handle", key = hop_key.as_str());
                let r = proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await;
                drop(handle);
                r
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(r) => r.map_err(anyhow::Error::from),
                Err(_) => Err(anyhow::Error::new(TimeLimitExceeded(timeout))),
            }
        });

        answer(task, rx, &late, &ctx.id, &path, body_deadline).await
    }
}

/// The response of a request running as `task` on a fresh instance: what the guest sent on
/// `rx`, a 408 when `late` tells its body came too late, or the failure's answer.
async fn answer(
    task: tokio::task::JoinHandle<Result<()>>,
    rx: tokio::sync::oneshot::Receiver<
        Result<
            Response<HyperOutgoingBody>,
            wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
        >,
    >,
    late: &tokio::sync::Notify,
    component: &str,
    path: &str,
    body_deadline: Option<std::time::Duration>,
) -> Response<HyperOutgoingBody> {
    let answered = tokio::select! {
        // First: a guest that answers because its body was cut off by the deadline (a 400,
        // say) is answered 408 all the same.
        biased;
        _ = late.notified() => None,
        r = rx => Some(r),
    };
    match answered {
        None => {
            // Stops the instance, which frees its slot and permit at once.
            task.abort();
            tracing::info!(component = %component, path = %path, "request body too slow");
            body_too_slow(body_deadline.unwrap_or_default())
        }
        Some(Ok(Ok(resp))) => resp,
        Some(Ok(Err(code))) => {
            tracing::error!(component = %component, "guest returned error {code:?}");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "the component failed")
        }
        Some(Err(_)) => {
            let err = match task.await {
                Ok(Ok(())) => anyhow::anyhow!("guest never set a response"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("handler task failed: {e}"),
            };
            tracing::error!(component = %component, path = %path, "request failed: {err:#}");
            failure_response(&err)
        }
    }
}

/// Runs one request on a reused instance of a WASIp3 handler (`wasip3`). The request's time limit
/// is the worker's (`WorkerState::on_request_start`); a body that arrives too late is a 408, as
/// for WASIp2, and the guest's task ends with the worker's time limit.
async fn reused(
    id: &str,
    instances: &ProxyHandler<Wasip3Handler>,
    req: Request<wasmtime_wasi_http::WasiBody>,
    path: String,
    late: Arc<tokio::sync::Notify>,
    body_deadline: Option<std::time::Duration>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response<HyperOutgoingBody> {
    let _permit = permit;
    let started = std::time::Instant::now();
    let handle = tracing::trace_span!(target: "nanohost::hop", "handle", key = path.as_str());
    let answered = tokio::select! {
        biased;
        _ = late.notified() => None,
        r = instances.handle((), req) => Some(r),
    };
    drop(handle);
    match answered {
        None => {
            tracing::info!(component = %id, path = %path, "request body too slow");
            body_too_slow(body_deadline.unwrap_or_default())
        }
        Some(Ok(resp)) => resp,
        Some(Err(e)) => {
            let timeout = instances.state().stores.timeout;
            // A guest stuck past the limit ends its whole worker, which its requests see as a
            // worker that trapped: the clock tells the two apart.
            let expired = e.is::<wasmtime_wasi_http::handler::ExpirationError>()
                || started.elapsed() >= timeout;
            // A new instance that found no slot in the pool: the same 503 as for WASIp2.
            let no_slot = e
                .downcast_ref::<wasmtime_wasi_http::handler::InstantiationError<()>>()
                .is_some_and(|i| i.error.is::<wasmtime::PoolConcurrencyLimitError>());
            let err = if no_slot {
                return busy();
            } else if expired {
                anyhow::Error::new(TimeLimitExceeded(timeout))
            } else {
                anyhow::Error::from(e)
            };
            tracing::error!(component = %id, path = %path, "request failed: {err:#}");
            failure_response(&err)
        }
    }
}

/// What the pool holds of the app's largest component, and at most `configured`.
fn max_in_flight(app: &App, configured: usize) -> usize {
    let largest = app
        .footprints
        .values()
        .fold(Footprint::default(), |all, one| all.max(one));
    let totals = PoolTotals::of(&app.limits);
    let holds = usize::try_from(totals.instances_of(&largest)).unwrap_or(usize::MAX);
    let cap = configured.min(holds).max(1);
    tracing::info!(
        "in-flight cap {cap}: the pool holds {holds} instances of the app's largest component \
         ({largest} each)"
    );
    cap
}

/// A request body that may take at most `deadline` from the request's head to its end, once it
/// is waited for: past it, the read fails and `late` is told (the host then answers 408).
struct DeadlineBody<B> {
    inner: B,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    late: Arc<tokio::sync::Notify>,
}

impl<B> DeadlineBody<B> {
    fn new(
        inner: B,
        deadline: Option<std::time::Duration>,
        late: Arc<tokio::sync::Notify>,
    ) -> DeadlineBody<B> {
        DeadlineBody {
            inner,
            timer: deadline.map(|d| Box::pin(tokio::time::sleep(d))),
            late,
        }
    }
}

impl<B> hyper::body::Body for DeadlineBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let expired = this
                    .timer
                    .as_mut()
                    .is_some_and(|timer| std::future::Future::poll(timer.as_mut(), cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                this.timer = None;
                this.late.notify_one();
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// What the host decides before any component runs.
enum Front {
    /// Run the request on this handler; the `spin-*` headers are set.
    Dispatch(usize),
    /// The host's own answer: the well-known paths, no route, no usable Host.
    Answer(Response<HyperOutgoingBody>),
}

fn front<B>(
    router: &Router<usize>,
    application: &Application,
    path: &str,
    req: &mut Request<B>,
    client: SocketAddr,
) -> Front {
    // Spin strips a service-chaining Host from every request it serves: only a chained request
    // comes from `<id>.spin.internal`.
    let chaining_host = host_header(req).is_some_and(crate::outbound_http::is_chaining_host);
    if chaining_host {
        req.headers_mut().remove(hyper::header::HOST);
    }
    // Spin answers these itself, before routing (the shim's liveness probes use `health`).
    if let Some(well_known) = path.strip_prefix(crate::routes::WELL_KNOWN_PREFIX) {
        return Front::Answer(match well_known {
            "health" => text(StatusCode::OK, "OK"),
            "info" => app_info(application),
            _ => empty(StatusCode::NOT_FOUND),
        });
    }
    let Some(m) = router.route(path) else {
        return Front::Answer(empty(StatusCode::NOT_FOUND));
    };
    // Spin cannot build the request's URL then and drops the connection; a 400 says what is
    // wrong instead (host/README.md lists this difference).
    if let Some(problem) = authority_problem(req) {
        return Front::Answer(json_error(StatusCode::BAD_REQUEST, problem));
    }
    let idx = *m.target;
    set_spin_headers(req, &m, client);
    Front::Dispatch(idx)
}

/// Why Spin's `set_req_uri` would fail for `req`: the authority comes from the Host header or
/// the URI, and when both are there they must agree.
fn authority_problem<B>(req: &Request<B>) -> Option<&'static str> {
    let header = match req.headers().get(hyper::header::HOST) {
        None => None,
        Some(h) => match h.to_str().ok().map(str::parse::<http::uri::Authority>) {
            Some(Ok(a)) => Some(a),
            _ => return Some("the request's Host header is not a valid authority"),
        },
    };
    match (header, req.uri().authority()) {
        (None, None) => Some("the request has no Host header"),
        (Some(h), Some(u)) if h != *u => Some("the request's Host header does not match its URI"),
        _ => None,
    }
}

/// `/.well-known/spin/info`: the app's name and version, as Spin writes them (pretty JSON).
fn app_info(application: &Application) -> Response<HyperOutgoingBody> {
    let mut body = serde_json::json!({ "name": application.name });
    if let Some(version) = &application.version {
        body["version"] = version.clone().into();
    }
    json(
        StatusCode::OK,
        serde_json::to_string_pretty(&body).unwrap_or_default(),
    )
}

/// The answer to a request whose body did not arrive within `deadline`: the connection is
/// closed after it, as the rest of the body would be read as the next request.
fn body_too_slow(deadline: std::time::Duration) -> Response<HyperOutgoingBody> {
    let mut resp = json_error(
        StatusCode::REQUEST_TIMEOUT,
        &format!(
            "the request body did not arrive within {} ms; send it at once",
            deadline.as_millis()
        ),
    );
    resp.headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The answer to a request beyond the in-flight cap, or one the pooling allocator has no slot
/// for: at once, saying when to retry.
fn busy() -> Response<HyperOutgoingBody> {
    let mut resp = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is busy; retry shortly",
    );
    resp.headers_mut()
        .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// A guest stopped by the per-request time limit.
#[derive(Debug)]
struct TimeLimitExceeded(std::time::Duration);

impl std::fmt::Display for TimeLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "time limit of {} ms exceeded", self.0.as_millis())
    }
}

impl std::error::Error for TimeLimitExceeded {}

/// A request whose guest never answered: no slot in the pooling allocator is a 503 with
/// `Retry-After`, as a request beyond the in-flight cap is (other triggers' instances share the
/// pool); a time limit (also the epoch deadline's trap) is a 503, the client may retry; any
/// other trap is a 500. Spin answers all three with an empty 500.
fn failure_response(err: &anyhow::Error) -> Response<HyperOutgoingBody> {
    let pool_full = err
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
        || err
            .chain()
            .any(|c| c.is::<wasmtime::PoolConcurrencyLimitError>());
    if pool_full {
        return busy();
    }
    let timed_out = err.downcast_ref::<TimeLimitExceeded>().is_some()
        || err.chain().any(|c| {
            matches!(
                c.downcast_ref::<wasmtime::Trap>(),
                Some(wasmtime::Trap::Interrupt)
            )
        });
    if timed_out {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the request ran out of time; retry later",
        )
    } else {
        json_error(StatusCode::INTERNAL_SERVER_ERROR, "the component failed")
    }
}

/// `{"error": message}`, the project's error body, for what the host answers itself.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response<HyperOutgoingBody> {
    json(status, serde_json::json!({ "error": message }).to_string())
}

fn json(status: StatusCode, body: String) -> Response<HyperOutgoingBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp
}

/// As Spin answers an unmatched route: 404, no body.
fn empty(status: StatusCode) -> Response<HyperOutgoingBody> {
    let mut resp = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp
}

/// The request's `Host` header, if it is text.
pub(crate) fn host_header<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
}

/// The headers Spin adds for the component (spin trigger-http `compute_default_headers`).
fn set_spin_headers<B>(
    req: &mut Request<B>,
    m: &crate::routes::RouteMatch<'_, usize>,
    client: SocketAddr,
) {
    let host = host_header(req).unwrap_or("localhost").to_string();
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
    set("spin-matched-route", m.matched_route);
    set("spin-base-path", "/");
    set("spin-raw-component-route", m.raw_route);
    set("spin-component-route", m.component_route());
    set("spin-client-addr", &client.to_string());
    for (name, value) in &m.params {
        let header = crate::routes::param_header(name);
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(header), HeaderValue::from_str(value)) {
            headers.insert(n, v);
        }
    }
}

impl crate::outbound_http::ChainTarget for HttpTrigger {
    fn chain<'a>(
        &'a self,
        component: &'a str,
        request: Request<wasmtime_wasi_http::WasiBody>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Option<Response<HyperOutgoingBody>>> + Send + 'a>,
    > {
        Box::pin(HttpTrigger::chain(self, component, request))
    }
}

#[cfg(test)]
mod tests;
