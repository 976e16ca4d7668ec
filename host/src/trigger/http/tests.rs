//! What the HTTP trigger decides on its own, without an app: the answers it gives before any
//! component runs, the `spin-*` headers a component gets, and its 5xx answers.

use std::net::SocketAddr;

use http_body_util::BodyExt;
use hyper::{Request, Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::{body_too_slow, busy, failure_response, front, DeadlineBody, Front, TimeLimitExceeded};
use crate::manifest::Application;
use crate::routes::Router;

const CLIENT: &str = "10.1.2.3:4567";

fn application(version: Option<&str>) -> Application {
    Application {
        name: "nano-orders".into(),
        version: version.map(str::to_string),
        description: None,
        authors: Vec::new(),
        trigger: Default::default(),
    }
}

fn router(routes: &[(&str, usize)]) -> Router<usize> {
    Router::new(routes.iter().map(|(r, t)| (r.to_string(), *t))).unwrap()
}

/// `uri` as the request line has it (origin-form `/p?q` or absolute-form), with `headers`.
fn request(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::get(uri);
    for (name, value) in headers {
        b = b.header(*name, *value);
    }
    b.body(()).unwrap()
}

/// The front decision for `req` on `router`, from the default client.
fn decide(router: &Router<usize>, req: &mut Request<()>) -> Front {
    let path = req.uri().path().to_string();
    front(
        router,
        &application(Some("1.2.0")),
        &path,
        req,
        CLIENT.parse().unwrap(),
    )
}

/// Status, content type and body of a host-made response.
fn read(resp: Response<HyperOutgoingBody>) -> (u16, Option<String>, String) {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let body = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(resp.into_body().collect())
        .unwrap()
        .to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn answer(front: Front) -> (u16, Option<String>, String) {
    match front {
        Front::Dispatch(idx) => panic!("dispatched to handler {idx} instead of answered"),
        Front::Answer(resp) => read(resp),
    }
}

fn dispatched(front: Front) -> usize {
    match front {
        Front::Dispatch(idx) => idx,
        Front::Answer(resp) => panic!("answered {:?} instead of dispatched", read(resp)),
    }
}

#[test]
fn well_known_paths_are_answered_before_routing() {
    // A catch-all route would take every path; these never reach it, not even without a Host.
    let catch_all = router(&[("/...", 0)]);
    let health = answer(decide(
        &catch_all,
        &mut request("/.well-known/spin/health", &[]),
    ));
    assert_eq!(health, (200, None, "OK".into()));
    // Spin's `AppInfo`, pretty-printed; `version` only when the manifest has one.
    let info = answer(decide(
        &catch_all,
        &mut request("/.well-known/spin/info", &[]),
    ));
    let json = Some("application/json".to_string());
    let want = "{\n  \"name\": \"nano-orders\",\n  \"version\": \"1.2.0\"\n}";
    assert_eq!(info, (200, json.clone(), want.into()));
    let no_version = front(
        &catch_all,
        &application(None),
        "/.well-known/spin/info",
        &mut request("/.well-known/spin/info", &[]),
        CLIENT.parse().unwrap(),
    );
    let want = "{\n  \"name\": \"nano-orders\"\n}";
    assert_eq!(answer(no_version), (200, json, want.into()));
    for other in ["/.well-known/spin/", "/.well-known/spin/metrics"] {
        assert_eq!(
            answer(decide(&catch_all, &mut request(other, &[]))),
            (404, None, String::new()),
            "{other}"
        );
    }
}

#[test]
fn a_path_no_route_matches_is_an_empty_404() {
    let echo = router(&[("/echo", 0), ("/api/...", 1)]);
    for path in ["/", "/echox", "/ECHO", "/apix", "/.well-known/spin"] {
        let host = [("host", "example.com")];
        assert_eq!(
            answer(decide(&echo, &mut request(path, &host))),
            (404, None, String::new()),
            "{path}"
        );
    }
    // Routing comes first: no Host makes no difference to an unmatched path (Spin alike).
    let r = decide(&echo, &mut request("/nothing", &[]));
    assert_eq!(answer(r).0, 404);
}

/// `(request URI, Host header, refusal)`: Spin's `set_req_uri` takes the authority from the Host
/// header or the URI, and they must agree; where it fails, Spin closes the connection and
/// nanohost answers 400 with the reason.
const AUTHORITIES: &[(&str, Option<&str>, Option<&str>)] = &[
    ("/echo", Some("example.com"), None),
    ("/echo", Some("127.0.0.1:3000"), None),
    ("http://example.com/echo", None, None),
    ("http://example.com/echo", Some("EXAMPLE.com"), None),
    ("/echo", None, Some("the request has no Host header")),
    // Spin strips a service-chaining Host from an outside request first.
    (
        "/echo",
        Some("locked.spin.internal"),
        Some("the request has no Host header"),
    ),
    (
        "/echo",
        Some("locked.spin.internal:80"),
        Some("the request has no Host header"),
    ),
    (
        "/echo",
        Some("exa mple.com"),
        Some("the request's Host header is not a valid authority"),
    ),
    (
        "http://example.com/echo",
        Some("example.org"),
        Some("the request's Host header does not match its URI"),
    ),
];

#[test]
fn a_request_without_a_usable_authority_is_a_400() {
    let echo = router(&[("/echo", 7)]);
    for (uri, host, refusal) in AUTHORITIES {
        let headers: Vec<(&str, &str)> = host.iter().map(|h| ("host", *h)).collect();
        let r = decide(&echo, &mut request(uri, &headers));
        match (r, refusal) {
            (Front::Dispatch(idx), None) => assert_eq!(idx, 7),
            (Front::Answer(resp), Some(reason)) => {
                let body = serde_json::json!({ "error": reason }).to_string();
                let json = Some("application/json".to_string());
                assert_eq!(read(resp), (400, json, body), "{uri} {host:?}");
            }
            (Front::Dispatch(_), Some(_)) => panic!("{uri} {host:?}: dispatched"),
            (Front::Answer(resp), None) => panic!("{uri} {host:?}: {:?}", read(resp)),
        }
    }
}

struct HeaderCase {
    uri: &'static str,
    host: Option<&'static str>,
    handler: usize,
    full_url: &'static str,
    path_info: &'static str,
    matched: &'static str,
    component_route: &'static str,
    /// `spin-path-match-*` headers.
    params: &'static [(&'static str, &'static str)],
}

const ROUTES: &[(&str, usize)] = &[
    ("/echo", 0),
    ("/echo/...", 1),
    ("/users/:user_id/...", 2),
    ("/orders/:id", 3),
    ("/...", 4),
];

/// What Spin 3.6.3's `compute_default_headers` gives for these routes: `spin-raw-component-route`
/// is the route as written (`matched` here, as no route has a trailing `/`).
const HEADERS: &[HeaderCase] = &[
    HeaderCase {
        uri: "/echo",
        host: Some("example.com:3000"),
        handler: 0,
        full_url: "http://example.com:3000/echo",
        path_info: "",
        matched: "/echo",
        component_route: "/echo",
        params: &[],
    },
    HeaderCase {
        uri: "/echo/a/b?x=1&y",
        host: Some("example.com"),
        handler: 1,
        full_url: "http://example.com/echo/a/b?x=1&y",
        path_info: "/a/b",
        matched: "/echo/...",
        component_route: "/echo",
        params: &[],
    },
    HeaderCase {
        uri: "/users/42/orders/",
        host: Some("example.com"),
        handler: 2,
        full_url: "http://example.com/users/42/orders/",
        path_info: "/orders/",
        matched: "/users/:user_id/...",
        component_route: "/users/:user_id",
        params: &[("spin-path-match-user-id", "42")],
    },
    HeaderCase {
        uri: "/orders/o-1?verbose",
        host: Some("example.com"),
        handler: 3,
        full_url: "http://example.com/orders/o-1?verbose",
        path_info: "",
        matched: "/orders/:id",
        component_route: "/orders/:id",
        params: &[("spin-path-match-id", "o-1")],
    },
    HeaderCase {
        uri: "/somewhere/else",
        host: Some("example.com"),
        handler: 4,
        full_url: "http://example.com/somewhere/else",
        path_info: "/somewhere/else",
        matched: "/...",
        component_route: "",
        params: &[],
    },
    // Absolute-form without a Host: Spin's full URL takes the host from the Host header only,
    // so it says `localhost`.
    HeaderCase {
        uri: "http://example.com/echo",
        host: None,
        handler: 0,
        full_url: "http://localhost/echo",
        path_info: "",
        matched: "/echo",
        component_route: "/echo",
        params: &[],
    },
];

#[test]
fn spin_headers_are_spins_for_each_route_kind() {
    let router = router(ROUTES);
    for case in HEADERS {
        // A client cannot pose as the host: its own `spin-*` headers are replaced.
        let mut headers = vec![
            ("spin-path-info", "/forged"),
            ("spin-client-addr", "6.6.6.6:6"),
            ("spin-path-match-user-id", "forged"),
        ];
        headers.extend(case.host.map(|h| ("host", h)));
        let mut req = request(case.uri, &headers);
        assert_eq!(
            dispatched(decide(&router, &mut req)),
            case.handler,
            "{} routed elsewhere",
            case.uri
        );
        let got = |name: &str| {
            req.headers()
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        for (name, want) in [
            ("spin-full-url", case.full_url),
            ("spin-path-info", case.path_info),
            ("spin-matched-route", case.matched),
            ("spin-raw-component-route", case.matched),
            ("spin-component-route", case.component_route),
            ("spin-base-path", "/"),
            ("spin-client-addr", CLIENT),
        ] {
            assert_eq!(got(name), [want], "{}: {name}", case.uri);
        }
        for (name, value) in case.params {
            assert_eq!(got(name), [*value], "{}: {name}", case.uri);
        }
        if !case
            .params
            .iter()
            .any(|(n, _)| *n == "spin-path-match-user-id")
        {
            // Not a route parameter here: the client's header passes through as any other.
            assert_eq!(got("spin-path-match-user-id"), ["forged"], "{}", case.uri);
        }
    }
}

#[test]
fn the_client_address_is_the_peer_s_in_either_family() {
    let router = router(&[("/echo", 0)]);
    for client in ["127.0.0.1:50000", "[::1]:8080", "[2001:db8::1]:1"] {
        let mut req = request("/echo", &[("host", "h")]);
        let peer: SocketAddr = client.parse().unwrap();
        dispatched(front(&router, &application(None), "/echo", &mut req, peer));
        assert_eq!(req.headers()["spin-client-addr"], client);
    }
}

/// Beyond the in-flight cap (`ListenerLimits::max_concurrent_requests`): an answer at once that a
/// client can act on, where Spin's pooling allocator gives a 500.
#[test]
fn a_request_beyond_the_cap_gets_a_json_503_with_retry_after() {
    let busy = busy();
    assert_eq!(busy.headers()[hyper::header::RETRY_AFTER], "1");
    let body = serde_json::json!({ "error": "the server is busy; retry shortly" }).to_string();
    assert_eq!(read(busy), (503, Some("application/json".into()), body));
}

#[test]
fn a_guest_out_of_time_is_a_503_any_other_failure_a_500() {
    let limit = TimeLimitExceeded(std::time::Duration::from_millis(30_000));
    let cases: Vec<(anyhow::Error, StatusCode)> = vec![
        (anyhow::Error::new(limit), StatusCode::SERVICE_UNAVAILABLE),
        // The epoch deadline's trap, bare or under context.
        (
            anyhow::Error::from(wasmtime::Trap::Interrupt),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            anyhow::Error::from(wasmtime::Trap::Interrupt).context("error while executing"),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            anyhow::Error::from(wasmtime::Trap::UnreachableCodeReached),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            anyhow::anyhow!("guest never set a response"),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ];
    for (err, status) in cases {
        let (got, content_type, body) = read(failure_response(&err));
        assert_eq!(got, status.as_u16(), "{err:#}");
        assert_eq!(content_type.as_deref(), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(body["error"].is_string(), "{body}");
    }
}

/// A request the pooling allocator has no slot for (other triggers' instances share it, so the
/// in-flight cap alone cannot promise one): the same JSON 503 with `Retry-After` as beyond the
/// cap, never a 500. The error is wasmtime's own, from a pool of one component instance.
#[test]
fn a_full_pool_is_a_json_503_with_retry_after() {
    let limits = crate::Limits {
        max_instances: 1,
        ..crate::Limits::default()
    };
    let engine = crate::engine::new_engine(&limits).unwrap();
    let component = wasmtime::component::Component::new(&engine, "(component)").unwrap();
    let linker = wasmtime::component::Linker::<()>::new(&engine);
    let full = crate::block_on(async {
        let mut first = wasmtime::Store::new(&engine, ());
        linker
            .instantiate_async(&mut first, &component)
            .await
            .expect("the pool's one slot");
        let mut second = wasmtime::Store::new(&engine, ());
        linker
            .instantiate_async(&mut second, &component)
            .await
            .expect_err("no second slot")
    });
    let err = anyhow::Error::from(full).context("error while instantiating");
    let resp = failure_response(&err);
    assert_eq!(resp.headers()[hyper::header::RETRY_AFTER], "1", "{err:#}");
    let body = serde_json::json!({ "error": "the server is busy; retry shortly" }).to_string();
    assert_eq!(read(resp), (503, Some("application/json".into()), body));
}

#[test]
fn a_body_too_slow_is_a_json_408_that_closes_the_connection() {
    let resp = body_too_slow(std::time::Duration::from_millis(2500));
    assert_eq!(resp.headers()[hyper::header::CONNECTION], "close");
    let (status, content_type, body) = read(resp);
    assert_eq!(
        (status, content_type.as_deref()),
        (408, Some("application/json"))
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("within 2500 ms"),
        "{body}"
    );
}

/// A test body: its frames as a stream.
type TestBody = http_body_util::StreamBody<
    futures_util::stream::BoxStream<
        'static,
        Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >,
>;

/// A chunk's time (ms from the start) and text.
type Chunks = &'static [(u64, &'static str)];

/// A body whose chunks come at their times (from the start), then ends (or never ends).
fn trickle(chunks: Chunks, ends: bool) -> TestBody {
    use futures_util::StreamExt;
    let start = tokio::time::Instant::now();
    let chunks: Vec<_> = chunks.to_vec();
    let frames = futures_util::stream::iter(chunks).then(move |(at, text)| async move {
        tokio::time::sleep_until(start + std::time::Duration::from_millis(at)).await;
        Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
            text.as_bytes(),
        )))
    });
    let tail = futures_util::stream::pending();
    if ends {
        http_body_util::StreamBody::new(frames.boxed())
    } else {
        http_body_util::StreamBody::new(frames.chain(tail).boxed())
    }
}

/// `(chunks as (ms, text), whether the body ends, deadline ms, what the reader gets)`: the whole
/// body, or the bytes before the deadline and then the host's timeout.
const DEADLINES: &[(Chunks, bool, Option<u64>, &str, bool)] = &[
    (&[(0, "ab"), (10, "cd")], true, Some(100), "abcd", false),
    // Silence after the head: cut at the deadline.
    (&[], false, Some(100), "", true),
    // A trickle that would end after the deadline is cut there too: the deadline is for the
    // whole body, not between chunks.
    (
        &[(40, "a"), (80, "b"), (120, "c")],
        true,
        Some(100),
        "ab",
        true,
    ),
    // No deadline (a chained request's body): only the body's own end counts.
    (&[(40, "a"), (150, "b")], true, None, "ab", false),
];

#[test]
fn a_body_must_end_within_its_deadline() {
    use http_body_util::BodyExt;
    for (chunks, ends, deadline, want, late_told) in DEADLINES {
        let got = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                let late = std::sync::Arc::new(tokio::sync::Notify::new());
                let mut body = DeadlineBody::new(
                    trickle(chunks, *ends),
                    deadline.map(std::time::Duration::from_millis),
                    late.clone(),
                );
                let mut read = String::new();
                let mut timed_out = false;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(frame) => {
                            read += std::str::from_utf8(frame.data_ref().unwrap()).unwrap()
                        }
                        Err(wasmtime_wasi_http::Error::ConnectionReadTimeout) => {
                            timed_out = true;
                            break;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                let told = tokio::time::timeout(std::time::Duration::ZERO, late.notified())
                    .await
                    .is_ok();
                (read, timed_out, told)
            });
        assert_eq!(
            got,
            (want.to_string(), *late_told, *late_told),
            "{chunks:?} ends={ends} deadline={deadline:?}"
        );
    }
}
