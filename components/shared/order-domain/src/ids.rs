use crate::{Error, OrderId};

/// A fresh UUID v4 in canonical form.
pub fn new_order_id() -> OrderId {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// Accepts only the canonical form (36 characters, hyphenated; any case) and returns it lowercased,
/// so that one order has exactly one key in the store.
pub fn parse_order_id(raw: &str) -> Result<OrderId, Error> {
    let canonical = raw.len() == 36 && raw.as_bytes()[8] == b'-';
    match uuid::Uuid::try_parse(raw) {
        Ok(id) if canonical => Ok(id.hyphenated().to_string()),
        _ => Err(Error::Invalid(format!(
            "order id must be a UUID like 0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11, got {:?}",
            truncate(raw, 64)
        ))),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_canonical_v4_and_distinct() {
        let a = new_order_id();
        let b = new_order_id();
        assert_ne!(a, b);
        assert_eq!(parse_order_id(&a).unwrap(), a);
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
    }

    #[test]
    fn ids_are_normalised_to_lowercase() {
        let id = "0B0C7A34-7D5E-4F6A-9A43-5D1F0E2C9B11";
        assert_eq!(parse_order_id(id).unwrap(), id.to_lowercase());
    }

    #[test]
    fn non_canonical_ids_are_invalid() {
        for bad in [
            "",
            "42",
            "0b0c7a347d5e4f6a9a435d1f0e2c9b11",
            "{0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11}",
            "urn:uuid:0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11",
            "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b1g",
            "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11/x",
        ] {
            assert!(
                matches!(parse_order_id(bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
