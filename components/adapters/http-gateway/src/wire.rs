//! The wire contract (README, "The wire contract") as plain functions over bytes and records.

use http_reply::{BodyError, Reply};
use order_domain::{Error, OrderRecord};
use serde_json::{json, Value};

/// What a gateway calls: `intake.place` and `status.get`. Each edge (WASIp2, WASIp3) takes it; a
/// component answers it with its imports ([`orders_from_imports!`](crate::orders_from_imports)), a
/// monolith (bench/fixtures) with the rules themselves.
pub trait Orders {
    fn place(&self, details: String, idempotency_key: Option<String>)
        -> Result<OrderRecord, Error>;
    fn get(&self, id: &str) -> Result<OrderRecord, Error>;
}

/// Implements [`Orders`] for `$imports` with a component's own `intake` and `status` modules:
/// each edge generates its own bindings (spin-sdk's wit-bindgen, wasip3's), so the calls are the
/// same over different modules.
#[macro_export]
macro_rules! orders_from_imports {
    ($imports:ident, $intake:ident, $status:ident) => {
        impl $crate::wire::Orders for $imports {
            fn place(
                &self,
                details: String,
                idempotency_key: Option<String>,
            ) -> Result<order_domain::OrderRecord, order_domain::Error> {
                $intake::place(&$intake::OrderRequest {
                    details,
                    idempotency_key,
                })
            }

            fn get(&self, id: &str) -> Result<order_domain::OrderRecord, order_domain::Error> {
                $status::get(id)
            }
        }
    };
}

/// Larger bodies are refused with 413 before they are read to the end.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a request asks for, by method and path (the query is ignored).
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Place,
    LookUp(&'a str),
    /// The resource exists; it only answers this method.
    MethodNotAllowed(&'static str),
    NotFound(&'a str),
}

pub fn route<'a>(method: &str, path_and_query: &'a str) -> Route<'a> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    match (path.strip_prefix("/order"), method) {
        (Some(""), "POST") => Route::Place,
        (Some(""), _) => Route::MethodNotAllowed("POST"),
        (Some(rest), "GET") if rest.starts_with('/') => Route::LookUp(&rest[1..]),
        (Some(rest), _) if rest.starts_with('/') => Route::MethodNotAllowed("GET"),
        _ => Route::NotFound(path),
    }
}

/// The answer for a route that calls no business component.
pub fn refusal(route: &Route) -> Option<Reply> {
    match route {
        Route::MethodNotAllowed(allowed) => Some(method_not_allowed(allowed)),
        Route::NotFound(path) => Some(Reply::problem(
            404,
            format!("no resource at {path}; try POST /order or GET /order/{{id}}"),
        )),
        Route::LookUp("") => Some(Reply::problem(
            400,
            "the order id is missing: use GET /order/{id}",
        )),
        Route::Place | Route::LookUp(_) => None,
    }
}

/// What a request that is not refused asks of the business components.
#[derive(Debug, PartialEq, Eq)]
pub enum Call<'a> {
    Place,
    LookUp(&'a str),
}

/// The call a request makes (`method` as Spin gives it: "GET", "POST" or any other name), or the
/// answer that refuses it before any business component is called.
pub fn accept<'a>(method: &str, path_and_query: &'a str) -> Result<Call<'a>, Reply> {
    let route = route(method, path_and_query);
    if let Some(refused) = refusal(&route) {
        return Err(refused);
    }
    Ok(match route {
        Route::Place => Call::Place,
        Route::LookUp(id) => Call::LookUp(id),
        Route::MethodNotAllowed(_) | Route::NotFound(_) => unreachable!("refused above"),
    })
}

/// The headers of a placement checked (`values` gives a header's values by its lowercase name):
/// a JSON content type, a declared length within the limit, at most one idempotency key, which
/// it returns.
pub fn placement_headers(values: impl Fn(&str) -> Vec<Vec<u8>>) -> Result<Option<String>, Reply> {
    check_content_type(&values("content-type"))?;
    check_declared_length(&values("content-length"))?;
    single_header(&values("idempotency-key"), "Idempotency-Key")
}

pub fn check_content_type(values: &[Vec<u8>]) -> Result<(), Reply> {
    let is_json = |v: &Vec<u8>| {
        let media_type = String::from_utf8_lossy(v);
        let essence = media_type.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json")
    };
    match values {
        [value] if is_json(value) => Ok(()),
        [] => Err(Reply::problem(
            415,
            "Content-Type must be application/json; none was sent",
        )),
        _ => Err(Reply::problem(
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

/// 413 when `Content-Length` already says the body is too large; an absent or unreadable one is
/// left to the reading, which stops at [`MAX_BODY_BYTES`] whatever was declared.
pub fn check_declared_length(values: &[Vec<u8>]) -> Result<(), Reply> {
    let declared = values
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY_BYTES as u64 => Err(too_large()),
        _ => Ok(()),
    }
}

/// A header that may be sent at most once, as text.
pub fn single_header(values: &[Vec<u8>], name: &str) -> Result<Option<String>, Reply> {
    match values {
        [] => Ok(None),
        [value] => String::from_utf8(value.clone())
            .map(Some)
            .map_err(|_| Reply::problem(400, format!("{name} must be ASCII text"))),
        _ => Err(Reply::problem(
            400,
            format!("send {name} once, not {} times", values.len()),
        )),
    }
}

pub fn details_from(body: &[u8]) -> Result<String, Reply> {
    let bad = |message: String| Reply::problem(400, message);
    if body.is_empty() {
        return Err(bad(r#"the body is empty; send {"details": "..."}"#.into()));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(bad(
            r#"the body must be a JSON object like {"details": "..."}"#.into(),
        ));
    };
    match fields.remove("details") {
        Some(Value::String(details)) => Ok(details),
        Some(other) => Err(bad(format!(
            "`details` must be a string, not {}",
            json_kind(&other)
        ))),
        None => Err(bad("`details` is missing".into())),
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

/// `202` for a placed (or replayed) order.
pub fn placed(record: &OrderRecord) -> Reply {
    let href = href(record);
    let body = json!({"task": {
        "id": record.order.id,
        "href": href,
        "status": record.status.as_str(),
    }});
    Reply::json(202, &body).with_header("location", href)
}

/// `200` with the order as it stands.
pub fn order(record: &OrderRecord) -> Reply {
    Reply::json(
        200,
        &json!({
            "id": record.order.id,
            "status": record.status.as_str(),
            "details": record.order.details,
            "placed_at_ms": record.order.placed_at,
            "updated_at_ms": record.updated_at,
            "href": href(record),
        }),
    )
}

pub fn status_code(error: &Error) -> u16 {
    match error {
        Error::Invalid(_) => 400,
        Error::NotFound(_) => 404,
        Error::Conflict(_) => 409,
        Error::Unavailable(_) => 503,
    }
}

pub fn from_error(error: Error) -> Reply {
    Reply::problem(status_code(&error), error.message())
}

/// 413, the same whether `Content-Length` said so or the reading found out.
pub fn too_large() -> Reply {
    BodyError::TooLarge {
        limit: MAX_BODY_BYTES,
    }
    .reply()
}

pub fn method_not_allowed(allowed: &str) -> Reply {
    Reply::problem(405, format!("this resource only answers {allowed}"))
        .with_header("allow", allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_domain::{Order, OrderStatus};

    const ID: &str = "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11";

    fn record(status: OrderStatus) -> OrderRecord {
        OrderRecord {
            order: Order {
                id: ID.into(),
                details: "2 x espresso".into(),
                placed_at: 10,
                idempotency_key: None,
            },
            status,
            updated_at: 12,
        }
    }

    fn error_of(reply: &Reply) -> String {
        let body = reply.json_body().expect("a JSON body");
        body["error"]
            .as_str()
            .expect("an error message")
            .to_string()
    }

    #[test]
    fn routes() {
        let id = format!("/order/{ID}");
        let cases = [
            ("POST", "/order", Route::Place),
            ("POST", "/order?x=1", Route::Place),
            ("GET", id.as_str(), Route::LookUp(ID)),
            ("GET", "/order/", Route::LookUp("")),
            ("GET", "/order/a/b", Route::LookUp("a/b")),
            ("GET", "/order", Route::MethodNotAllowed("POST")),
            ("DELETE", "/order", Route::MethodNotAllowed("POST")),
            ("POST", id.as_str(), Route::MethodNotAllowed("GET")),
            ("GET", "/orders", Route::NotFound("/orders")),
            ("GET", "/", Route::NotFound("/")),
        ];
        for (method, path, expected) in cases {
            assert_eq!(route(method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn refusals() {
        let reply = refusal(&Route::MethodNotAllowed("POST")).unwrap();
        assert_eq!(reply.status, 405);
        assert_eq!(reply.header("allow").as_deref(), Some("POST"));
        let reply = refusal(&Route::NotFound("/x")).unwrap();
        assert_eq!(reply.status, 404);
        assert!(error_of(&reply).contains("/x"));
        let reply = refusal(&Route::LookUp("")).unwrap();
        assert_eq!(reply.status, 400);
        assert!(error_of(&reply).contains("missing"));
        assert_eq!(refusal(&Route::LookUp(ID)), None);
        assert_eq!(refusal(&Route::Place), None);
    }

    #[test]
    fn only_a_route_that_is_not_refused_makes_a_call() {
        assert_eq!(accept("POST", "/order?x=1"), Ok(Call::Place));
        let id = format!("/order/{ID}");
        assert_eq!(accept("GET", &id), Ok(Call::LookUp(ID)));
        for (method, path, status) in [
            ("GET", "/order", 405),
            ("GET", "/x", 404),
            ("GET", "/order/", 400),
        ] {
            assert_eq!(
                accept(method, path).unwrap_err().status,
                status,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn a_placement_needs_json_a_length_within_the_limit_and_one_key_at_most() {
        fn checked(sent: &[(&str, &str)]) -> Result<Option<String>, Reply> {
            placement_headers(|name| {
                (sent.iter())
                    .filter(|(n, _)| *n == name)
                    .map(|(_, v)| v.as_bytes().to_vec())
                    .collect()
            })
        }
        let json = ("content-type", "application/json");
        assert_eq!(checked(&[json]), Ok(None));
        assert_eq!(
            checked(&[json, ("idempotency-key", "k-1")]),
            Ok(Some("k-1".into()))
        );
        let too_long = [json, ("content-length", "65537")];
        let two_keys = [json, ("idempotency-key", "a"), ("idempotency-key", "b")];
        for (refused, status) in [(&[][..], 415), (&too_long[..], 413), (&two_keys[..], 400)] {
            assert_eq!(checked(refused).unwrap_err().status, status, "{refused:?}");
        }
    }

    #[test]
    fn every_error_case_has_its_status() {
        let cases = [
            (Error::Invalid("a".into()), 400),
            (Error::NotFound("b".into()), 404),
            (Error::Conflict("c".into()), 409),
            (Error::Unavailable("d".into()), 503),
        ];
        for (error, status) in cases {
            let message = error.message().to_string();
            let reply = from_error(error);
            assert_eq!(reply.status, status);
            assert_eq!(error_of(&reply), message);
        }
    }

    #[test]
    fn content_types() {
        let ok = |v: &[&str]| {
            check_content_type(&v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>())
        };
        assert!(ok(&["application/json"]).is_ok());
        assert!(ok(&["Application/JSON; charset=utf-8"]).is_ok());
        for bad in [
            &[][..],
            &["text/plain"],
            &["application/json", "application/json"],
            &["application/jsonx"],
        ] {
            let reply = ok(bad).unwrap_err();
            assert_eq!(reply.status, 415, "{bad:?}");
            assert!(error_of(&reply).contains("application/json"));
        }
    }

    #[test]
    fn declared_lengths() {
        let check = |v: &str| check_declared_length(&[v.as_bytes().to_vec()]);
        assert!(check("65536").is_ok());
        assert!(check(" 12 ").is_ok());
        assert!(check("junk").is_ok(), "left to the reading");
        assert!(check_declared_length(&[]).is_ok());
        assert_eq!(check("65537").unwrap_err().status, 413);
    }

    #[test]
    fn single_headers() {
        assert_eq!(single_header(&[], "Idempotency-Key").unwrap(), None);
        assert_eq!(
            single_header(&[b"k-1".to_vec()], "Idempotency-Key").unwrap(),
            Some("k-1".into())
        );
        let twice = single_header(&[b"a".to_vec(), b"b".to_vec()], "Idempotency-Key").unwrap_err();
        assert_eq!(twice.status, 400);
        assert!(error_of(&twice).contains("once"));
        let binary = single_header(&[vec![0xff, 0xfe]], "Idempotency-Key").unwrap_err();
        assert_eq!(binary.status, 400);
    }

    #[test]
    fn bodies() {
        assert_eq!(details_from(br#"{"details": "tea"}"#).unwrap(), "tea");
        assert_eq!(
            details_from(br#"{"details": "", "extra": 1}"#).unwrap(),
            "",
            "emptiness is the receiver's rule"
        );
        let cases: [(&[u8], &str); 9] = [
            (b"", "empty"),
            (b"{", "not valid JSON"),
            (b"\xff", "not valid JSON"),
            (b"[]", "JSON object"),
            (b"\"tea\"", "JSON object"),
            (b"{}", "missing"),
            (br#"{"details": 7}"#, "a number"),
            (br#"{"details": null}"#, "null"),
            (br#"{"details": ["a"]}"#, "an array"),
        ];
        for (body, needle) in cases {
            let reply = details_from(body).unwrap_err();
            assert_eq!(reply.status, 400);
            assert!(
                error_of(&reply).contains(needle),
                "{:?}: {}",
                body,
                error_of(&reply)
            );
        }
    }

    #[test]
    fn a_placed_order_is_202_with_its_location() {
        let reply = placed(&record(OrderStatus::Accepted));
        assert_eq!(reply.status, 202);
        let href = format!("/order/{ID}");
        assert_eq!(reply.header("location"), Some(href.clone()));
        assert_eq!(
            reply.json_body().unwrap(),
            json!({"task": {"id": ID, "href": href, "status": "accepted"}})
        );
    }

    #[test]
    fn an_order_is_200_with_every_field() {
        let reply = order(&record(OrderStatus::Fulfilled));
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json_body().unwrap(),
            json!({
                "id": ID, "status": "fulfilled", "details": "2 x espresso",
                "placed_at_ms": 10, "updated_at_ms": 12, "href": format!("/order/{ID}"),
            })
        );
    }

    /// The guard against the keep-alive stall on Spin (see `http_reply`): every answer of the
    /// contract goes out with `content-length`, never chunked.
    #[test]
    fn every_answer_carries_content_length() {
        let replies = [
            placed(&record(OrderStatus::Accepted)),
            order(&record(OrderStatus::Fulfilled)),
            from_error(Error::Unavailable("x".into())),
            too_large(),
            BodyError::Broken("reset".into()).reply(),
            BodyError::TimedOut {
                after: std::time::Duration::from_secs(5),
            }
            .reply(),
            method_not_allowed("GET"),
            refusal(&Route::NotFound("/")).unwrap(),
            details_from(b"").unwrap_err(),
            check_content_type(&[]).unwrap_err(),
        ];
        for reply in replies {
            assert_eq!(
                reply.header("content-length"),
                Some(reply.body.len().to_string()),
                "{reply:?}"
            );
            assert_eq!(
                reply.header("content-type").as_deref(),
                Some("application/json")
            );
        }
    }
}
