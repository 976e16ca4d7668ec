//! The capability alone: the hooks wasmtime-wasi-http calls for a guest's outgoing request,
//! without an engine, against a small HTTP server on loopback and a fake chaining target.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::{
    as_unknown_routing_destination, chaining_target, ChainTarget, OutboundHttp, ServiceChaining,
};
use crate::allowed_hosts::AllowedHosts;
use crate::block_on;
use crate::expressions::Resolver;

/// The app's components: `*.spin.internal` allows these and no other name.
const COMPONENTS: &[&str] = &["caller", "locked", "sweeper"];

fn hooks(allowed: &[String], chaining: ServiceChaining) -> OutboundHttp {
    let ids: Vec<String> = COMPONENTS.iter().map(|c| c.to_string()).collect();
    let allowed = AllowedHosts::parse(allowed, &Resolver::default(), &ids).unwrap();
    OutboundHttp::new("caller".into(), Arc::new(allowed), chaining)
}

/// What the guest sees: the status and body, or the error its `handle` gets.
async fn send(hooks: &mut OutboundHttp, url: &str) -> Result<(u16, String), HttpError> {
    let uri: http::Uri = url.parse().unwrap();
    // As wasmtime-wasi-http builds a guest's request: the Host header is the URI's authority.
    let authority = uri.authority().map_or(String::new(), |a| a.to_string());
    let request = http::Request::get(uri)
        .header(http::header::HOST, authority)
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap();
    // Bounded, so a request that wrongly goes out to the network fails here rather than hangs.
    let options = RequestOptions {
        connect_timeout: Some(std::time::Duration::from_secs(5)),
        first_byte_timeout: Some(std::time::Duration::from_secs(5)),
        between_bytes_timeout: Some(std::time::Duration::from_secs(5)),
    };
    let sent = hooks.send_request(request, Some(options), Box::new(async { Ok(()) }));
    let (response, io) = Pin::from(sent).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Pin::from(io).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// An HTTP/1 server on a loopback port that answers every request with its path and Host.
async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: hyper::Request<_>| async move {
                    let host = crate::trigger::http::host_header(&req)
                        .unwrap_or("-")
                        .to_string();
                    let body = format!("{} host={host}", req.uri());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(wasmtime_wasi_http::io::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// Hosts as Spin 3.6.3 parses them for service chaining (`parse_service_chaining_host`).
#[test]
fn chaining_hosts_are_parsed_as_spin_parses_them() {
    for (host, target) in [
        ("locked.spin.internal", Some("locked")),
        ("locked.spin.internal:8080", Some("locked")),
        ("a.b.spin.internal", None),
        ("spin.internal", None),
        ("locked.spin.internal.example.com", None),
        ("locked.spin.internalx", None),
        ("example.com", None),
        ("[::1]:80", None),
    ] {
        assert_eq!(chaining_target(host), target, "{host}");
    }
}

/// `(allowed_outbound_hosts, URL, reaches the server)`; `{port}` is the server's port, `{other}`
/// one it does not listen on. A refusal must be Spin's `HTTP-request-denied`.
const REQUESTS: &[(&[&str], &str, bool)] = &[
    (
        &["http://127.0.0.1:{port}"],
        "http://127.0.0.1:{port}/a?b=1",
        true,
    ),
    (&["http://127.0.0.1:*"], "http://127.0.0.1:{port}/", true),
    (&["*://127.0.0.1:{port}"], "http://127.0.0.1:{port}/", true),
    (
        &["http://127.0.0.0/24:{port}"],
        "http://127.0.0.1:{port}/",
        true,
    ),
    (
        &["http://127.0.0.1:{other}"],
        "http://127.0.0.1:{port}/",
        false,
    ),
    // The scheme counts: an `https` entry does not allow `http`.
    (
        &["https://127.0.0.1:{port}"],
        "http://127.0.0.1:{port}/",
        false,
    ),
    // No port in the entry: only the scheme's well-known port.
    (&["http://127.0.0.1"], "http://127.0.0.1:{port}/", false),
    (
        &["http://localhost:{port}"],
        "http://127.0.0.1:{port}/",
        false,
    ),
    (&[], "http://127.0.0.1:{port}/", false),
    // A service-chaining entry allows only that component's internal host.
    (
        &["http://*.spin.internal"],
        "http://127.0.0.1:{port}/",
        false,
    ),
];

#[test]
fn allowed_hosts_decide_which_requests_go_out() {
    block_on(async {
        let port = echo_server().await.to_string();
        let other = test_brokers::free_port().to_string();
        let fill = |s: &str| s.replace("{port}", &port).replace("{other}", &other);
        for (allowed, url, reaches) in REQUESTS {
            let allowed: Vec<String> = allowed.iter().map(|a| fill(a)).collect();
            let url = fill(url);
            let mut hooks = hooks(&allowed, ServiceChaining::none());
            match (send(&mut hooks, &url).await, reaches) {
                (Ok((200, body)), true) => {
                    // The request arrives as sent: origin-form path and query, the Host it had.
                    let want = format!(
                        "{} host=127.0.0.1:{port}",
                        url.trim_start_matches(&format!("http://127.0.0.1:{port}"))
                    );
                    assert_eq!(body, want, "{allowed:?} {url}");
                }
                (Err(HttpError::HttpRequestDenied), false) => {}
                (r, _) => panic!("{allowed:?} {url}: {r:?}"),
            }
        }
    });
}

/// A chaining target that serves `locked` only and records what it was asked.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<(String, String)>>,
}

impl ChainTarget for Fake {
    fn chain<'a>(
        &'a self,
        component: &'a str,
        request: http::Request<WasiBody>,
    ) -> Pin<Box<dyn Future<Output = Option<http::Response<HyperOutgoingBody>>> + Send + 'a>> {
        self.calls
            .lock()
            .unwrap()
            .push((component.to_string(), request.uri().to_string()));
        Box::pin(async move {
            (component == "locked").then(|| {
                http::Response::new(
                    Full::new(Bytes::from(format!("{component} served")))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )
            })
        })
    }
}

fn chaining_to(target: &Arc<Fake>) -> ServiceChaining {
    let target: Arc<dyn ChainTarget> = target.clone();
    ServiceChaining::to(Arc::downgrade(&target))
}

#[test]
fn chained_requests_reach_the_target_or_fail_as_in_spin() {
    block_on(async {
        let allowed = ["http://*.spin.internal".to_string()];
        let url = "http://locked.spin.internal/echo?x=1";

        // No HTTP trigger in the app.
        let r = send(&mut hooks(&allowed, ServiceChaining::none()), url).await;
        assert!(matches!(r, Err(HttpError::DestinationNotFound)), "{r:?}");

        // A live trigger: served in-process, with the URL as the guest wrote it.
        let fake = Arc::new(Fake::default());
        let mut live = hooks(&allowed, chaining_to(&fake));
        assert_eq!(
            send(&mut live, url).await.unwrap(),
            (200, "locked served".into())
        );
        assert_eq!(
            fake.calls.lock().unwrap().as_slice(),
            [("locked".to_string(), url.to_string())]
        );
        // A component of the app that the trigger does not serve: Spin traps the guest ("unknown
        // routing destination"); the hook's error carries that to `future-incoming-response.get`.
        let r = send(&mut live, "http://sweeper.spin.internal/").await;
        let unknown = r.as_ref().err().and_then(as_unknown_routing_destination);
        assert_eq!(unknown.map(|u| u.0.as_str()), Some("sweeper"), "{r:?}");
        assert_eq!(
            unknown.unwrap().to_string(),
            "unknown routing destination 'sweeper'"
        );

        // `*.spin.internal` is the app's components only (as Spin 3.6.3): any other name under
        // it is refused before anything is looked up.
        for url in [
            "http://nothere.spin.internal/",
            "http://a.locked.spin.internal/",
        ] {
            let r = send(&mut live, url).await;
            assert!(
                matches!(r, Err(HttpError::HttpRequestDenied)),
                "{url}: {r:?}"
            );
        }
        assert_eq!(
            fake.calls.lock().unwrap().len(),
            2,
            "a refused name was chained"
        );

        // Not a name Spin chains: not found, and never looked up on the network.
        let mut all = hooks(&["*://*:*".to_string()], chaining_to(&fake));
        let r = send(&mut all, "http://a.locked.spin.internal/").await;
        assert!(matches!(r, Err(HttpError::DestinationNotFound)), "{r:?}");
        assert_eq!(fake.calls.lock().unwrap().len(), 2, "a.locked was chained");
        // Without an HTTP trigger nothing is a routing destination: no trap (Spin has no
        // chaining then at all).
        let r = send(
            &mut hooks(&allowed, ServiceChaining::none()),
            "http://sweeper.spin.internal/",
        )
        .await;
        assert!(matches!(r, Err(HttpError::DestinationNotFound)), "{r:?}");

        // The trigger is gone (the app is shutting down): not found, not a panic.
        let gone = chaining_to(&fake);
        drop((live, all));
        drop(fake);
        let r = send(&mut hooks(&allowed, gone), url).await;
        assert!(matches!(r, Err(HttpError::DestinationNotFound)), "{r:?}");
    });
}

#[test]
fn chained_requests_need_the_internal_host_in_allowed_hosts() {
    block_on(async {
        let fake = Arc::new(Fake::default());
        let allowed = ["http://locked.spin.internal".to_string()];
        let mut hooks = hooks(&allowed, chaining_to(&fake));
        let r = send(&mut hooks, "http://probe.spin.internal/echo").await;
        assert!(matches!(r, Err(HttpError::HttpRequestDenied)), "{r:?}");
        // Only `http` is allowed for it.
        let r = send(&mut hooks, "https://locked.spin.internal/echo").await;
        assert!(matches!(r, Err(HttpError::HttpRequestDenied)), "{r:?}");
        assert!(
            fake.calls.lock().unwrap().is_empty(),
            "a refused request reached the target"
        );
        assert_eq!(
            send(&mut hooks, "http://locked.spin.internal/echo")
                .await
                .unwrap(),
            (200, "locked served".into())
        );
    });
}

/// The hook's own error code for the trap's carrier, used only where `future-incoming-response.get`
/// is not nanohost's: never `connection-refused`, which would send a guest to retry.
#[test]
fn an_unknown_destination_that_does_not_trap_is_destination_not_found() {
    use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
    let mut hooks = hooks(&[], ServiceChaining::none());
    let carrier = match super::unknown_routing_destination("sweeper".into()) {
        HttpError::Connect(e) => e,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        hooks.p2_error_from_connect(&carrier),
        ErrorCode::DestinationNotFound
    ));
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert!(matches!(
        hooks.p2_error_from_connect(&refused),
        ErrorCode::ConnectionRefused
    ));
    assert!(as_unknown_routing_destination(&HttpError::Connect(refused)).is_none());
}
