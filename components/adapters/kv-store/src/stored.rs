//! The pure half of the adapter: the stored form of a record and the key layout. No Spin here, so
//! it is unit-tested natively.

use order_domain::{Error, Order, OrderRecord, OrderStatus, Timestamp};
use serde::{Deserialize, Serialize};

/// The stored form. `v` lets a later release read what an earlier one wrote.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Stored {
    v: u32,
    id: String,
    details: String,
    placed_at: u64,
    idempotency_key: Option<String>,
    status: String,
    updated_at: u64,
    /// The number of its outbox entry, while it is accepted (so that the fulfilled save can take
    /// the entry out without a search). Absent from what earlier releases wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outbox: Option<u64>,
}

pub const VERSION: u32 = 1;

pub fn encode(record: &OrderRecord, outbox: Option<u64>) -> Vec<u8> {
    let stored = Stored {
        v: VERSION,
        id: record.order.id.clone(),
        details: record.order.details.clone(),
        placed_at: record.order.placed_at,
        idempotency_key: record.order.idempotency_key.clone(),
        status: record.status.as_str().into(),
        updated_at: record.updated_at,
        outbox,
    };
    serde_json::to_vec(&stored).expect("strings and numbers serialize")
}

/// Reads what [`encode`] wrote under `order:<id>`; anything else is `unavailable` (the store holds
/// something this release cannot read: a person must look at it, a retry will not help, but the
/// caller's request was fine).
pub fn decode(id: &str, bytes: &[u8]) -> Result<OrderRecord, Error> {
    let s: Stored = serde_json::from_slice(bytes).map_err(|e| corrupt(id, e.to_string()))?;
    let status = match (s.v, OrderStatus::parse(&s.status)) {
        (VERSION, Some(status)) => status,
        (v, _) => return Err(corrupt(id, format!("version {v} status {:?}", s.status))),
    };
    if s.id != id {
        return Err(corrupt(id, format!("it holds order {}", s.id)));
    }
    Ok(OrderRecord {
        order: Order {
            id: s.id,
            details: s.details,
            placed_at: s.placed_at,
            idempotency_key: s.idempotency_key,
        },
        status,
        updated_at: s.updated_at,
    })
}

/// The outbox number kept with a record (`None` for what cannot be read: the sweeper cleans an
/// entry nobody takes out).
pub fn outbox_position(bytes: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Stored>(bytes).ok()?.outbox
}

fn corrupt(id: &str, why: String) -> Error {
    Error::Unavailable(format!("stored record of order {id} is unreadable: {why}"))
}

pub fn order_key(id: &str) -> String {
    format!("order:{id}")
}

pub fn index_key(idempotency_key: &str) -> String {
    format!("idempotency:{idempotency_key}")
}

pub fn claim_key(idempotency_key: &str) -> String {
    format!("{CLAIM}{idempotency_key}")
}

const CLAIM: &str = "claim:";

/// When a sweep first saw the claim of this key without an indexed order.
pub fn claim_note_key(idempotency_key: &str) -> String {
    format!("claim-noted:{idempotency_key}")
}

/// The epoch of a key's claims (see `orders::KvStore::claim_epoch`).
pub fn claim_epoch_key(idempotency_key: &str) -> String {
    format!("claim-epoch:{idempotency_key}")
}

/// The order placed under the claim of `idempotency_key` at claim epoch `epoch`. Unlike the
/// index, a claimant fenced out later (its claim revoked at an earlier epoch) cannot overwrite it.
pub fn claim_order_key(idempotency_key: &str, epoch: u64) -> String {
    format!("claim-order:{epoch}:{idempotency_key}")
}

/// A counter as `wasi:keyvalue/atomics` left it: 8 little-endian bytes on Spin's SQLite store,
/// decimal text on Redis (`INCRBY`). Read with `get`, since an `increment` by 0 is a write.
pub fn decode_counter(bytes: &[u8]) -> Option<i64> {
    if let Some(n) = std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()) {
        return Some(n);
    }
    Some(i64::from_le_bytes(bytes.try_into().ok()?))
}

/// `(placed_at, id)` of an outbox key of the releases before the numbered lists,
/// `pending:<placed_at, 20 digits>:<id>`; `None` for every other key.
pub fn parse_v1_pending_key(key: &str) -> Option<(Timestamp, String)> {
    let (since, id) = key.strip_prefix("pending:")?.split_once(':')?;
    if since.len() != 20 || id.is_empty() {
        return None;
    }
    Some((since.parse().ok()?, id.to_string()))
}

/// A time written as decimal text; `None` for anything else (a note that cannot be read is noted
/// again).
pub fn decode_time(bytes: &[u8]) -> Option<Timestamp> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11";

    fn record(status: OrderStatus, key: Option<&str>) -> OrderRecord {
        OrderRecord {
            order: Order {
                id: ID.into(),
                details: "tea \"with\" milk, ünïcode".into(),
                placed_at: 1_795_633_210_123,
                idempotency_key: key.map(String::from),
            },
            status,
            updated_at: 1_795_633_210_999,
        }
    }

    #[test]
    fn v1_outbox_keys_are_recognised_and_nothing_else() {
        let id = "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11";
        let key = format!("pending:{:020}:{id}", 42);
        assert_eq!(parse_v1_pending_key(&key), Some((42, id.to_string())));
        for other in [
            "pending:".to_string(),
            "pending:12:short".into(),
            format!("pending:{}:", "0".repeat(20)),
            order_key(id),
            claim_key("pending:1"),
            "outbox:7".into(),
        ] {
            assert_eq!(parse_v1_pending_key(&other), None, "{other}");
        }
    }

    #[test]
    fn records_round_trip() {
        for status in [OrderStatus::Accepted, OrderStatus::Fulfilled] {
            for key in [None, Some("k-1")] {
                let r = record(status, key);
                assert_eq!(decode(ID, &encode(&r, None)).unwrap(), r);
            }
        }
    }

    #[test]
    fn an_accepted_record_keeps_its_outbox_number() {
        let r = record(OrderStatus::Accepted, None);
        let bytes = encode(&r, Some(42));
        assert_eq!(decode(ID, &bytes).unwrap(), r);
        assert_eq!(outbox_position(&bytes), Some(42));
        assert_eq!(outbox_position(&encode(&r, None)), None);
    }

    #[test]
    fn the_stored_form_is_stable() {
        let json: serde_json::Value =
            serde_json::from_slice(&encode(&record(OrderStatus::Fulfilled, Some("k")), None))
                .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "v": 1, "id": ID, "details": "tea \"with\" milk, ünïcode",
                "placed_at": 1_795_633_210_123u64, "idempotency_key": "k",
                "status": "fulfilled", "updated_at": 1_795_633_210_999u64,
            })
        );
    }

    #[test]
    fn corrupt_records_are_unavailable_and_say_which_order() {
        let good =
            String::from_utf8(encode(&record(OrderStatus::Accepted, None), Some(7))).unwrap();
        for bad in [
            String::new(),
            "not json".into(),
            "{}".into(),
            good.replace("\"v\":1", "\"v\":2"),
            good.replace("accepted", "shipped"),
            good.replace("accepted", "Accepted"),
            good.replace(ID, "6f1d2c3b-4a59-4e68-b7a6-958473625140"),
            good.replace("\"placed_at\":1795633210123", "\"placed_at\":-1"),
        ] {
            let err = decode(ID, bad.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, Error::Unavailable(m) if m.contains(ID) && m.contains("unreadable")),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn keys_fit_spins_key_length_limit() {
        // Spin refuses keys over 255 bytes; the receiver allows idempotency keys up to 200.
        let longest = "k".repeat(200);
        for key in [
            index_key(&longest),
            claim_key(&longest),
            claim_note_key(&longest),
            claim_epoch_key(&longest),
            crate::orders::OUTBOX.item(u64::MAX),
        ] {
            assert!(key.len() <= 255, "{key}");
        }
    }

    #[test]
    fn counters_read_as_either_backend_writes_them() {
        for n in [0i64, 1, 7, 255, 256, 1 << 40] {
            assert_eq!(decode_counter(&n.to_le_bytes()), Some(n), "SQLite {n}");
            assert_eq!(
                decode_counter(n.to_string().as_bytes()),
                Some(n),
                "Redis {n}"
            );
        }
        assert_eq!(decode_counter(b""), None);
        assert_eq!(decode_counter(b"abc"), None);
    }

    #[test]
    fn claim_notes_are_decimal_times() {
        assert_eq!(decode_time(b"1795633210123"), Some(1_795_633_210_123));
        assert_eq!(decode_time(b""), None);
        assert_eq!(decode_time(b"\x01\x00"), None);
        assert_eq!(decode_time(b"-5"), None);
    }
}
