//! The HTTP edge of the order app: parses and checks requests, calls `intake` / `status`, and maps
//! their answers and errors to status codes with JSON bodies. Everything a client can get wrong is
//! answered here with a 4xx before any business component is called.

mod api {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "nano:orders/http-gateway",
    });
}

use api::nano::orders::intake::{self, OrderRequest};
use api::nano::orders::status;
use api::nano::orders::types::{Error, OrderRecord, OrderStatus};
use futures::StreamExt;
use serde_json::{json, Value};
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

/// Larger bodies are refused with 413 before they are read to the end.
const MAX_BODY_BYTES: usize = 64 * 1024;

#[http_component]
async fn handle(request: IncomingRequest) -> Response {
    let path_and_query = request.path_with_query().unwrap_or_default();
    let path = path_and_query.split('?').next().unwrap_or_default();
    match (path.strip_prefix("/order"), request.method()) {
        (Some(""), Method::Post) => place(request).await,
        (Some(""), _) => method_not_allowed("POST"),
        (Some(rest), Method::Get) if rest.starts_with('/') => look_up(&rest[1..]),
        (Some(rest), _) if rest.starts_with('/') => method_not_allowed("GET"),
        _ => problem(
            404,
            format!("no resource at {path}; try POST /order or GET /order/{{id}}"),
        ),
    }
}

async fn place(request: IncomingRequest) -> Response {
    let headers = request.headers();
    if let Err(response) = check_content_type(&headers.get("content-type")) {
        return response;
    }
    let declared_length = headers
        .get("content-length")
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
    if declared_length.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let idempotency_key = match single_header(&headers.get("idempotency-key"), "Idempotency-Key") {
        Ok(key) => key,
        Err(response) => return response,
    };
    drop(headers);

    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let details = match details_from(&body) {
        Ok(details) => details,
        Err(message) => return problem(400, message),
    };

    match intake::place(&OrderRequest {
        details,
        idempotency_key,
    }) {
        Ok(record) => {
            let href = href(&record);
            let body = json!({"task": {
                "id": record.order.id,
                "href": href,
                "status": status_name(record.status),
            }});
            Response::builder()
                .status(202)
                .header("content-type", "application/json")
                .header("location", href)
                .body(body.to_string())
                .build()
        }
        Err(error) => from_error(error),
    }
}

fn look_up(id: &str) -> Response {
    if id.is_empty() {
        return problem(400, "the order id is missing: use GET /order/{id}".into());
    }
    match status::get(id) {
        Ok(record) => json_response(
            200,
            json!({
                "id": record.order.id,
                "status": status_name(record.status),
                "details": record.order.details,
                "placed_at_ms": record.order.placed_at,
                "updated_at_ms": record.updated_at,
                "href": href(&record),
            }),
        ),
        Err(error) => from_error(error),
    }
}

fn check_content_type(values: &[Vec<u8>]) -> Result<(), Response> {
    let is_json = |v: &Vec<u8>| {
        let media_type = String::from_utf8_lossy(v);
        let essence = media_type.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json")
    };
    match values {
        [value] if is_json(value) => Ok(()),
        [] => Err(problem(
            415,
            "Content-Type must be application/json; none was sent".into(),
        )),
        _ => Err(problem(
            415,
            format!(
                "Content-Type must be application/json, not {:?}",
                values
                    .iter()
                    .map(|v| String::from_utf8_lossy(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn single_header(values: &[Vec<u8>], name: &str) -> Result<Option<String>, Response> {
    match values {
        [] => Ok(None),
        [value] => String::from_utf8(value.clone())
            .map(Some)
            .map_err(|_| problem(400, format!("{name} must be ASCII text"))),
        _ => Err(problem(
            400,
            format!("send {name} once, not {} times", values.len()),
        )),
    }
}

/// Reads at most `MAX_BODY_BYTES`, whatever Content-Length claimed (or if it was absent).
async fn read_body(request: IncomingRequest) -> Result<Vec<u8>, Response> {
    let mut stream = request.into_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| problem(400, format!("could not read the request body: {e:?}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn details_from(body: &[u8]) -> Result<String, String> {
    if body.is_empty() {
        return Err(r#"the body is empty; send {"details": "..."}"#.into());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Value::Object(mut fields) = value else {
        return Err(r#"the body must be a JSON object like {"details": "..."}"#.into());
    };
    match fields.remove("details") {
        Some(Value::String(details)) => Ok(details),
        Some(other) => Err(format!(
            "`details` must be a string, not {}",
            json_kind(&other)
        )),
        None => Err("`details` is missing".into()),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn href(record: &OrderRecord) -> String {
    format!("/order/{}", record.order.id)
}

fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Accepted => "accepted",
        OrderStatus::Fulfilled => "fulfilled",
    }
}

fn from_error(error: Error) -> Response {
    match error {
        Error::Invalid(m) => problem(400, m),
        Error::NotFound(m) => problem(404, m),
        Error::Conflict(m) => problem(409, m),
        Error::Unavailable(m) => problem(503, m),
    }
}

fn too_large() -> Response {
    problem(
        413,
        format!("the body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

fn method_not_allowed(allowed: &str) -> Response {
    let mut response = problem(405, format!("this resource only answers {allowed}"));
    response.set_header("allow", allowed);
    response
}

fn problem(status: u16, message: String) -> Response {
    json_response(status, json!({ "error": message }))
}

fn json_response(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}
