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
}

pub const VERSION: u32 = 1;

pub fn encode(record: &OrderRecord) -> Vec<u8> {
    let stored = Stored {
        v: VERSION,
        id: record.order.id.clone(),
        details: record.order.details.clone(),
        placed_at: record.order.placed_at,
        idempotency_key: record.order.idempotency_key.clone(),
        status: record.status.as_str().into(),
        updated_at: record.updated_at,
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

/// The idempotency keys claimed among `keys`, sorted, at most `limit`.
pub fn claimed_keys(keys: impl IntoIterator<Item = String>, limit: u32) -> Vec<String> {
    let mut claimed: Vec<String> = keys
        .into_iter()
        .filter_map(|k| k.strip_prefix(CLAIM).map(String::from))
        .collect();
    claimed.sort();
    claimed.truncate(limit as usize);
    claimed
}

/// A time written as decimal text; `None` for anything else (a note that cannot be read is noted
/// again).
pub fn decode_time(bytes: &[u8]) -> Option<Timestamp> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

const PENDING: &str = "pending:";

pub fn pending_key(since: Timestamp, id: &str) -> String {
    format!("{PENDING}{since:020}:{id}")
}

/// `(since, id)` of an outbox key; `None` for every other key.
pub fn parse_pending_key(key: &str) -> Option<(Timestamp, String)> {
    let (since, id) = key.strip_prefix(PENDING)?.split_once(':')?;
    if since.len() != 20 || id.is_empty() {
        return None;
    }
    Some((since.parse().ok()?, id.to_string()))
}

/// The outbox entries among `keys`, oldest first, at most `limit`.
pub fn outbox(keys: impl IntoIterator<Item = String>, limit: u32) -> Vec<(Timestamp, String)> {
    let mut entries: Vec<_> = keys
        .into_iter()
        .filter_map(|k| parse_pending_key(&k))
        .collect();
    entries.sort();
    entries.truncate(limit as usize);
    entries
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
    fn records_round_trip() {
        for status in [OrderStatus::Accepted, OrderStatus::Fulfilled] {
            for key in [None, Some("k-1")] {
                let r = record(status, key);
                assert_eq!(decode(ID, &encode(&r)).unwrap(), r);
            }
        }
    }

    #[test]
    fn the_stored_form_is_stable() {
        let json: serde_json::Value =
            serde_json::from_slice(&encode(&record(OrderStatus::Fulfilled, Some("k")))).unwrap();
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
        let good = String::from_utf8(encode(&record(OrderStatus::Accepted, None))).unwrap();
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
            pending_key(u64::MAX, ID),
        ] {
            assert!(key.len() <= 255, "{key}");
        }
    }

    #[test]
    fn claimed_keys_are_found_among_all_keys() {
        let keys = vec![
            claim_key("b"),
            claim_note_key("b"),
            index_key("b"),
            order_key(ID),
            claim_key("a:with:colons"),
            pending_key(1, ID),
        ];
        assert_eq!(
            claimed_keys(keys.clone(), 10),
            vec!["a:with:colons".to_string(), "b".to_string()]
        );
        assert_eq!(claimed_keys(keys, 1).len(), 1);
    }

    #[test]
    fn claim_notes_are_decimal_times() {
        assert_eq!(decode_time(b"1795633210123"), Some(1_795_633_210_123));
        assert_eq!(decode_time(b""), None);
        assert_eq!(decode_time(b"\x01\x00"), None);
        assert_eq!(decode_time(b"-5"), None);
    }

    #[test]
    fn pending_keys_round_trip_and_sort_by_age() {
        assert_eq!(
            parse_pending_key(&pending_key(42, ID)),
            Some((42, ID.to_string()))
        );
        let keys = vec![
            pending_key(1_000, "b"),
            order_key(ID),
            pending_key(999, "z"),
            index_key("pending:1"),
            claim_key("k"),
            "pending:".into(),
            "pending:12:short".into(),
            format!("pending:{}:", "0".repeat(20)),
            pending_key(1_000, "a"),
        ];
        assert_eq!(
            outbox(keys.clone(), 10),
            vec![
                (999, "z".to_string()),
                (1_000, "a".to_string()),
                (1_000, "b".to_string())
            ]
        );
        assert_eq!(outbox(keys, 1), vec![(999, "z".to_string())]);
    }
}
