//! The order app's wire contract (design section 1), end to end: the composed component from
//! `cargo xtask build`, served by nanohost from the project's own `spin.toml`.

mod support;

use nanohost::{HostOptions, RunningHost};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use support::{Redis, TempDir};

struct OrderApp {
    host: RunningHost,
    base: String,
    client: Client,
}

impl OrderApp {
    async fn start(runtime_config: Option<PathBuf>) -> OrderApp {
        let root = support::workspace_root();
        let composed = root.join("target/composed/order-app.wasm");
        assert!(
            composed.is_file(),
            "{} is missing: run `cargo xtask build` first",
            composed.display()
        );
        let host = RunningHost::start(HostOptions {
            manifest: root.join("spin.toml"),
            runtime_config,
            listen: "127.0.0.1:0".parse().unwrap(),
            ..HostOptions::default()
        })
        .await
        .expect("the order app starts");
        let base = format!("http://{}", host.http_addr().unwrap());
        OrderApp {
            host,
            base,
            client: Client::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.host.http_addr().unwrap()
    }

    async fn post(
        &self,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .client
            .post(format!("{}/order", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        (status, headers, json_body(response).await)
    }

    async fn place(&self, details: &str) -> Value {
        let (status, _, body) = self
            .post(&json!({ "details": details }).to_string(), &[])
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status(), json_body(response).await)
    }
}

async fn json_body(response: reqwest::Response) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "body: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts a 4xx with `{"error": "..."}` whose message mentions `needle`.
fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, needle: &str) {
    assert_eq!(status, expected, "{body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {body}"));
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "{message:?} should mention {needle:?}"
    );
}

fn key_count(redis: &Redis) -> i64 {
    redis::cmd("DBSIZE").query(&mut redis.connection()).unwrap()
}

fn is_uuid_v4(id: &str) -> bool {
    id.len() == 36
        && id.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            14 => c == '4',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placing_an_order_answers_202_and_it_is_fulfilled_in_process() {
    let app = OrderApp::start(None).await;
    let (status, headers, body) = app.post(r#"{"details": "2 x espresso"}"#, &[]).await;

    assert_eq!(status, StatusCode::ACCEPTED);
    let id = body["task"]["id"].as_str().unwrap();
    assert!(is_uuid_v4(id), "{id}");
    let href = format!("/order/{id}");
    assert_eq!(body["task"]["href"], href);
    assert_eq!(body["task"]["status"], "accepted");
    assert_eq!(headers["location"], href.as_str());

    // Composed: fulfilment ran in-process before the 202 went out.
    let (status, order) = app.get(&href).await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["id"], id);
    assert_eq!(order["status"], "fulfilled");
    assert_eq!(order["details"], "2 x espresso");
    assert!(order["updated_at_ms"].as_u64().unwrap() >= order["placed_at_ms"].as_u64().unwrap());
    app.host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looking_up_orders_that_do_not_exist() {
    let app = OrderApp::start(None).await;
    let (status, body) = app.get("/order/6f1d2c3b-4a59-4e68-b7a6-958473625140").await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "no order");
    for malformed in [
        "/order/839284",
        "/order/not-a-uuid",
        "/order/6f1d2c3b4a594e68b7a6958473625140",
    ] {
        let (status, body) = app.get(malformed).await;
        assert_problem(status, &body, StatusCode::BAD_REQUEST, "uuid");
    }
    let (status, body) = app.get("/order/").await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "missing");
    let (status, body) = app
        .get("/order/6f1d2c3b-4a59-4e68-b7a6-958473625140/extra")
        .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "uuid");
    app.host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_matched_case_insensitively() {
    let app = OrderApp::start(None).await;
    let placed = app.place("tea").await;
    let id = placed["task"]["id"].as_str().unwrap();
    let (status, body) = app.get(&format!("/order/{}", id.to_uppercase())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], id);
    app.host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_return_the_same_order_or_a_conflict() {
    let app = OrderApp::start(None).await;
    let key = [("idempotency-key", "order-2026-0001")];
    let (s1, _, first) = app.post(r#"{"details": "cake"}"#, &key).await;
    let (s2, _, again) = app.post(r#"{"details": "cake"}"#, &key).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(first["task"]["id"], again["task"]["id"]);
    // The replay reports where the order stands now.
    assert_eq!(again["task"]["status"], "fulfilled");

    let (status, _, body) = app.post(r#"{"details": "pie"}"#, &key).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "idempotency-key");

    let (status, _, body) = app
        .post(
            r#"{"details": "cake"}"#,
            &[("idempotency-key", "has space")],
        )
        .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "idempotency-key");
    app.host.shutdown().await.unwrap();
}

/// Every malformed request gets a 4xx with a JSON reason, and none of them stores anything:
/// checked by counting keys in a real Redis behind the `default` store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_reason_and_nothing_is_stored() {
    let (redis, dir) = (Redis::start(), TempDir::new("order-app"));
    let app = OrderApp::start(Some(redis.runtime_config(&dir))).await;
    let url = format!("{}/order", app.base);

    let bad_bodies: &[(&str, &str)] = &[
        ("{not json", "not valid json"),
        ("", "empty"),
        ("[1, 2]", "json object"),
        (r#""just a string""#, "json object"),
        (r#"{"detail": "typo"}"#, "`details` is missing"),
        (r#"{"details": 42}"#, "must be a string"),
        (r#"{"details": null}"#, "must be a string"),
        (r#"{"details": ""}"#, "must not be empty"),
        (r#"{"details": "   "}"#, "must not be empty"),
    ];
    for (body, needle) in bad_bodies {
        let (status, _, reply) = app.post(body, &[]).await;
        assert_problem(status, &reply, StatusCode::BAD_REQUEST, needle);
    }

    let too_long_details = json!({ "details": "x".repeat(16 * 1024 + 1) }).to_string();
    let (status, _, reply) = app.post(&too_long_details, &[]).await;
    assert_problem(status, &reply, StatusCode::BAD_REQUEST, "at most");

    let (status, _, reply) = app
        .post(
            r#"{"details": "a"}"#,
            &[("idempotency-key", &"k".repeat(201))],
        )
        .await;
    assert_problem(status, &reply, StatusCode::BAD_REQUEST, "idempotency-key");

    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = app.client.post(&url).body(r#"{"details": "a"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert_problem(
            status,
            &json_body(response).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        );
    }

    let huge = json!({ "details": "x".repeat(64 * 1024) }).to_string();
    let (status, _, reply) = app.post(&huge, &[]).await;
    assert_problem(status, &reply, StatusCode::PAYLOAD_TOO_LARGE, "larger than");

    for (method, path, allowed) in [
        (reqwest::Method::PUT, "/order".to_string(), "POST"),
        (reqwest::Method::GET, "/order".to_string(), "POST"),
        (
            reqwest::Method::DELETE,
            "/order/6f1d2c3b-4a59-4e68-b7a6-958473625140".to_string(),
            "GET",
        ),
        (
            reqwest::Method::POST,
            "/order/6f1d2c3b-4a59-4e68-b7a6-958473625140".to_string(),
            "GET",
        ),
    ] {
        let response = app
            .client
            .request(method, format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allowed);
        let status = response.status();
        assert_problem(
            status,
            &json_body(response).await,
            StatusCode::METHOD_NOT_ALLOWED,
            allowed,
        );
    }

    assert_eq!(
        key_count(&redis),
        0,
        "a refused request left something in the store"
    );
    app.place("a valid one, for contrast").await;
    assert_eq!(key_count(&redis), 1);
    app.host.shutdown().await.unwrap();
}

/// A chunked body has no Content-Length to refuse up front: the gateway must stop reading at the
/// limit and answer 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_chunked_body_is_refused() {
    let app = OrderApp::start(None).await;
    let addr = app.addr();
    let status_line = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let head = "POST /order HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                    transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b'x'; 16 * 1024];
        // 80 KiB in 16 KiB chunks; the server may answer and close before we are done.
        for _ in 0..5 {
            if stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || stream.write_all(&chunk).is_err()
                || stream.write_all(b"\r\n").is_err()
            {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply.lines().next().unwrap_or_default().to_string()
    })
    .await
    .unwrap();
    assert!(status_line.contains("413"), "{status_line}");
    app.host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_backed_store_holds_orders_across_host_restarts() {
    let (redis, dir) = (Redis::start(), TempDir::new("order-app"));
    let config = redis.runtime_config(&dir);
    let app = OrderApp::start(Some(config.clone())).await;
    let placed = app.place("kept in redis").await;
    let href = placed["task"]["href"].as_str().unwrap().to_string();
    app.host.shutdown().await.unwrap();

    let app = OrderApp::start(Some(config)).await;
    let (status, order) = app.get(&href).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(order["status"], "fulfilled");
    app.host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_all_get_distinct_ids_and_are_all_fulfilled() {
    let app = std::sync::Arc::new(OrderApp::start(None).await);
    let mut clients = Vec::new();
    for client in 0..16 {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..25 {
                let placed = app.place(&format!("client {client} order {n}")).await;
                ids.push(placed["task"]["id"].as_str().unwrap().to_string());
            }
            ids
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for client in clients {
        ids.extend(client.await.unwrap());
    }
    assert_eq!(ids.len(), 400, "ids collided");
    for id in &ids {
        let (status, order) = app.get(&format!("/order/{id}")).await;
        assert_eq!(
            (status, order["status"].as_str()),
            (StatusCode::OK, Some("fulfilled"))
        );
    }
}
