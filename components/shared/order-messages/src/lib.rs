//! "Order placed" on the wire: versioned JSON, the same on MQTT and Redis.
//!
//! ```json
//! {"v": 1, "kind": "order-placed", "order": {"id": "...", "details": "...", "placed_at": 1795633210123}}
//! ```
//!
//! A listener acts on `order.id` only (the store holds the rest); the whole order travels so that
//! other subscribers need no store. Unknown versions and kinds are refused, not guessed at.

use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;
pub const ORDER_PLACED: &str = "order-placed";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedOrder {
    pub id: String,
    pub details: String,
    pub placed_at: u64,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    kind: String,
    order: serde_json::Value,
}

pub fn encode(order: &PlacedOrder) -> Vec<u8> {
    let envelope = Envelope {
        v: VERSION,
        kind: ORDER_PLACED.into(),
        order: serde_json::to_value(order).expect("plain strings and numbers serialize"),
    };
    serde_json::to_vec(&envelope).expect("plain strings and numbers serialize")
}

/// Why a message was refused; listeners log it and drop the message.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn decode(payload: &[u8]) -> Result<PlacedOrder, Refused> {
    let envelope: Envelope = serde_json::from_slice(payload)
        .map_err(|e| Refused(format!("not an order message ({e}): {}", preview(payload))))?;
    if envelope.v != VERSION {
        return Err(Refused(format!(
            "message version {} is not supported (this build reads {VERSION})",
            envelope.v
        )));
    }
    if envelope.kind != ORDER_PLACED {
        return Err(Refused(format!("unknown message kind {:?}", envelope.kind)));
    }
    serde_json::from_value(envelope.order).map_err(|e| Refused(format!("malformed order: {e}")))
}

fn preview(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> PlacedOrder {
        PlacedOrder {
            id: "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11".into(),
            details: "tea \"with\" milk".into(),
            placed_at: 42,
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(decode(&encode(&order())).unwrap(), order());
    }

    #[test]
    fn the_wire_form_is_stable() {
        let json: serde_json::Value = serde_json::from_slice(&encode(&order())).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["kind"], "order-placed");
        assert_eq!(json["order"]["id"], "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11");
    }

    #[test]
    fn garbage_is_refused() {
        for junk in [&b""[..], b"hello", b"{}", b"\xff\xfe", br#"{"v":1}"#] {
            assert!(decode(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn other_versions_and_kinds_are_refused() {
        let v2 = br#"{"v":2,"kind":"order-placed","order":{"id":"x","details":"d","placed_at":1}}"#;
        assert!(decode(v2).unwrap_err().0.contains("version 2"));
        let other =
            br#"{"v":1,"kind":"order-cancelled","order":{"id":"x","details":"d","placed_at":1}}"#;
        assert!(decode(other).unwrap_err().0.contains("order-cancelled"));
        let bad_order = br#"{"v":1,"kind":"order-placed","order":{"id":7}}"#;
        assert!(decode(bad_order).unwrap_err().0.contains("malformed order"));
    }
}
