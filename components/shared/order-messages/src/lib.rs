//! "Order placed" on the wire: versioned JSON, the same on MQTT, Redis and HTTP, signed.
//!
//! ```json
//! {"v": 2, "kind": "order-placed", "order": {"id": "...", "placed_at": 1795633210123}, "sig": "<64 hex digits>"}
//! ```
//!
//! Only what fulfilment needs travels: a listener acts on `order.id` and the store holds the rest.
//! So a message's size does not depend on the order's details (v1 carried them, and 16 KiB of
//! details, or a few KB of control characters once JSON-escaped, went past rumqttc's 10 KiB packet
//! limit: such an order was accepted and never fulfilled).
//!
//! `sig` is HMAC-SHA256, keyed by the apps' shared secret (`message_key`), over the canonical form
//! [`canonical`], lowercase hex: a broker client without the key cannot make a message that
//! fulfils an order. v1 messages (unsigned), unknown versions and kinds are refused, not guessed
//! at. No SDK here: the key is passed in.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const VERSION: u32 = 2;
pub const ORDER_PLACED: &str = "order-placed";

/// The most bytes [`encode`] makes for an order id of up to [`MAX_ID_BYTES`] (a UUID is 36; even
/// 64 control characters, six bytes each in JSON, fit), whatever the order's details: a tenth of
/// the smallest limit of any transport (rumqttc's default 10 KiB packet, which Spin's outbound
/// MQTT cannot change).
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// The longest order id a message carries; order ids are UUIDs (36 characters).
pub const MAX_ID_BYTES: usize = 64;

/// A payload longer than this is refused unread: no message of ours comes near it.
const MAX_READ_BYTES: usize = 4 * 1024;

/// What fulfilment needs of a placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedOrder {
    pub id: String,
    pub placed_at: u64,
}

/// The secret that signs and verifies messages. Never printed.
#[derive(Clone)]
pub struct MessageKey(Vec<u8>);

impl MessageKey {
    /// Err for an empty key: a message is never signed (or checked) with nothing.
    pub fn new(secret: &str) -> Result<MessageKey, EmptyKey> {
        if secret.is_empty() {
            return Err(EmptyKey);
        }
        Ok(MessageKey(secret.as_bytes().to_vec()))
    }

    /// The key from the `message_key` variable as the host read it. Err says why there is none
    /// (never the value).
    pub fn from_variable<E: std::fmt::Display>(
        read: Result<String, E>,
    ) -> Result<MessageKey, String> {
        let secret = read.map_err(|e| format!("Spin variable message_key: {e}"))?;
        MessageKey::new(&secret).map_err(|e| format!("Spin variable message_key: {e}"))
    }

    fn mac(&self, order: &PlacedOrder) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(canonical(order).as_bytes());
        mac
    }
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKey(..)")
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct EmptyKey;

impl std::fmt::Display for EmptyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the message key is empty")
    }
}

/// What is signed: the kind, the version, `placed_at` in decimal and the id, one per line. The
/// id comes last and `placed_at` has no newline, so two orders never share a canonical form.
pub fn canonical(order: &PlacedOrder) -> String {
    format!(
        "nano-orders\n{ORDER_PLACED}\nv{VERSION}\n{}\n{}",
        order.placed_at, order.id
    )
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    kind: String,
    order: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sig: Option<String>,
}

/// The signed message for `order`.
pub fn encode(order: &PlacedOrder, key: &MessageKey) -> Vec<u8> {
    let envelope = Envelope {
        v: VERSION,
        kind: ORDER_PLACED.into(),
        order: serde_json::to_value(order).expect("plain strings and numbers serialize"),
        sig: Some(hex::encode(key.mac(order).finalize().into_bytes())),
    };
    serde_json::to_vec(&envelope).expect("plain strings and numbers serialize")
}

/// Why a message was refused. The MQTT and Redis listeners log it and drop the message; the
/// HTTP listener answers with the status [`Refused::status`] says.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub reason: Reason,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not an order message of a version and kind this build reads.
    Malformed,
    /// No signature: a v1 message, or a v2 message without `sig`.
    Unsigned,
    /// A signature that is not the key's for this order.
    BadSignature,
}

impl Refused {
    fn new(reason: Reason, detail: impl Into<String>) -> Refused {
        Refused {
            reason,
            detail: detail.into(),
        }
    }

    /// The HTTP status for this refusal: 400 malformed, 401 unsigned, 403 badly signed.
    pub fn status(&self) -> u16 {
        match self.reason {
            Reason::Malformed => 400,
            Reason::Unsigned => 401,
            Reason::BadSignature => 403,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// The order of a message signed with `key`; anything else is refused. The signature is compared
/// in constant time.
pub fn verify(payload: &[u8], key: &MessageKey) -> Result<PlacedOrder, Refused> {
    use Reason::*;
    if payload.len() > MAX_READ_BYTES {
        return Err(Refused::new(
            Malformed,
            format!(
                "a message of {} bytes is not an order message (at most {MAX_MESSAGE_BYTES})",
                payload.len()
            ),
        ));
    }
    let envelope: Envelope = serde_json::from_slice(payload).map_err(|e| {
        Refused::new(
            Malformed,
            format!("not an order message ({e}): {}", preview(payload)),
        )
    })?;
    if envelope.v == 1 {
        return Err(Refused::new(
            Unsigned,
            "message version 1 is unsigned and no longer accepted",
        ));
    }
    if envelope.v != VERSION {
        return Err(Refused::new(
            Malformed,
            format!(
                "message version {} is not supported (this build reads {VERSION})",
                envelope.v
            ),
        ));
    }
    if envelope.kind != ORDER_PLACED {
        return Err(Refused::new(
            Malformed,
            format!(
                "unknown message kind {:?}",
                preview(envelope.kind.as_bytes())
            ),
        ));
    }
    let order: PlacedOrder = serde_json::from_value(envelope.order)
        .map_err(|e| Refused::new(Malformed, format!("malformed order: {e}")))?;
    if order.id.len() > MAX_ID_BYTES {
        return Err(Refused::new(
            Malformed,
            "malformed order: the id is too long",
        ));
    }
    let Some(sig) = envelope.sig else {
        return Err(Refused::new(Unsigned, "the message carries no signature"));
    };
    let sig =
        hex::decode(&sig).map_err(|_| Refused::new(BadSignature, "the signature is not hex"))?;
    key.mac(&order).verify_slice(&sig).map_err(|_| {
        Refused::new(
            BadSignature,
            format!("bad signature for order {}", order.id),
        )
    })?;
    Ok(order)
}

fn preview(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11";

    fn key() -> MessageKey {
        MessageKey::new("the shared secret").unwrap()
    }

    fn order() -> PlacedOrder {
        PlacedOrder {
            id: ID.into(),
            placed_at: 42,
        }
    }

    fn json(payload: &[u8]) -> serde_json::Value {
        serde_json::from_slice(payload).unwrap()
    }

    #[test]
    fn round_trips() {
        assert_eq!(verify(&encode(&order(), &key()), &key()).unwrap(), order());
    }

    #[test]
    fn the_wire_form_is_stable() {
        let sent = json(&encode(&order(), &key()));
        assert_eq!(sent["v"], 2);
        assert_eq!(sent["kind"], "order-placed");
        assert_eq!(
            sent["order"],
            serde_json::json!({"id": ID, "placed_at": 42})
        );
        // HMAC-SHA256("the shared secret", canonical form), as any HMAC tool computes it:
        // printf 'nano-orders\norder-placed\nv2\n42\n<id>' | openssl dgst -sha256 -hmac 'the shared secret'
        assert_eq!(
            canonical(&order()),
            format!("nano-orders\norder-placed\nv2\n42\n{ID}")
        );
        assert_eq!(
            sent["sig"],
            "5d1590dd62ddca7a56d3dd0f708cf47477f53bf387c8f1e7c0f28f7b38f719b4"
        );
    }

    /// The bound holds for the longest id and the largest timestamp; details never travel.
    #[test]
    fn a_message_is_small_whatever_the_order() {
        let longest = PlacedOrder {
            id: "\u{1}".repeat(MAX_ID_BYTES),
            placed_at: u64::MAX,
        };
        let len = encode(&longest, &key()).len();
        assert!(len <= MAX_MESSAGE_BYTES, "{len} bytes");
        // A tenth of rumqttc's default 10 KiB packet limit, the smallest of any transport.
        const { assert!(MAX_MESSAGE_BYTES * 10 <= 10 * 1024) };
        assert!(encode(&order(), &key()).len() < 200);
    }

    /// One row per forgery: what a broker client without the key could send.
    #[test]
    fn forgeries_are_refused_by_reason() {
        let good = json(&encode(&order(), &key()));
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut m = good.clone();
            edit(&mut m);
            serde_json::to_vec(&m).unwrap()
        };
        let other = "6f1d2c3b-4a59-4e68-b7a6-958473625140";
        let wrong_key = encode(&order(), &MessageKey::new("another secret").unwrap());
        let v1 = format!(
            r#"{{"v":1,"kind":"order-placed","order":{{"id":"{ID}","details":"d","placed_at":42}}}}"#
        );
        let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
            (
                "tampered id",
                with(&|m| m["order"]["id"] = other.into()),
                Reason::BadSignature,
            ),
            (
                "tampered time",
                with(&|m| m["order"]["placed_at"] = 43.into()),
                Reason::BadSignature,
            ),
            ("wrong key", wrong_key, Reason::BadSignature),
            (
                "no signature",
                with(&|m| drop(m.as_object_mut().unwrap().remove("sig"))),
                Reason::Unsigned,
            ),
            (
                "empty signature",
                with(&|m| m["sig"] = "".into()),
                Reason::BadSignature,
            ),
            (
                "signature not hex",
                with(&|m| m["sig"] = "zz".into()),
                Reason::BadSignature,
            ),
            (
                "short signature",
                with(&|m| m["sig"] = good["sig"].as_str().unwrap()[..62].into()),
                Reason::BadSignature,
            ),
            ("v1, unsigned", v1.into_bytes(), Reason::Unsigned),
            (
                "v1 with a signature",
                with(&|m| m["v"] = 1.into()),
                Reason::Unsigned,
            ),
            (
                "unknown version",
                with(&|m| m["v"] = 3.into()),
                Reason::Malformed,
            ),
            (
                "unknown kind",
                with(&|m| m["kind"] = "order-cancelled".into()),
                Reason::Malformed,
            ),
        ];
        for (case, payload, reason) in cases {
            let refused = verify(&payload, &key()).expect_err(case);
            assert_eq!(refused.reason, reason, "{case}: {refused}");
        }
    }

    #[test]
    fn garbage_is_malformed() {
        let huge = format!(r#"{{"v":2,"pad":"{}"}}"#, " ".repeat(MAX_READ_BYTES));
        for junk in [
            &b""[..],
            b"hello",
            b"{}",
            b"\xff\xfe",
            br#"{"v":2}"#,
            br#"{"v":2,"kind":"order-placed","order":{"id":7,"placed_at":1},"sig":"00"}"#,
            br#"{"v":2,"kind":"order-placed","order":{"id":"x"},"sig":"00"}"#,
            huge.as_bytes(),
        ] {
            let refused = verify(junk, &key()).unwrap_err();
            assert_eq!(refused.reason, Reason::Malformed, "{junk:?}: {refused}");
            assert_eq!(refused.status(), 400);
        }
    }

    #[test]
    fn statuses_say_unsigned_or_forged() {
        let unsigned = verify(br#"{"v":1,"kind":"order-placed","order":{}}"#, &key()).unwrap_err();
        assert_eq!(unsigned.status(), 401);
        let forged = verify(&encode(&order(), &MessageKey::new("x").unwrap()), &key()).unwrap_err();
        assert_eq!(forged.status(), 403);
    }

    #[test]
    fn an_empty_key_signs_nothing_and_a_key_is_never_printed() {
        assert_eq!(MessageKey::new("").unwrap_err(), EmptyKey);
        assert!(!format!("{:?}", key()).contains("secret"));
    }
}
