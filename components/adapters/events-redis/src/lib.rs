//! "Order placed" published to a Redis channel. Redis pub/sub is at-most-once: a subscriber that
//! is not connected at that moment never sees the message (see the README).
//!
//! The address and the password are two Spin variables. `redis_address` (`redis://host:6379`) is
//! also the manifest's `allowed_outbound_hosts` entry, which cannot hold a password, so the
//! password (`redis_password`, `secret = true`) is put into the URL here, just before it is opened.
//! Spin checks such a URL against the allowed hosts by scheme, host and port alone.

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What stays readable in an encoded password: RFC 3986's unreserved characters. Everything else
/// (`@`, `/`, `:`, `%`, ...) is escaped, and Spin's Redis client decodes it again.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The URL to open: `address` with `password` as its userinfo (`redis://:<password>@host:port`),
/// or `address` alone when there is no password. Err says what is wrong with `address`, which
/// carries no secret by then (it comes from a variable that cannot hold one).
pub fn with_password(address: &str, password: &str) -> Result<String, String> {
    if password.is_empty() {
        return Ok(address.to_string());
    }
    let Some((scheme, rest)) = address.split_once("://") else {
        return Err(format!(
            "redis_address {address:?} is not a URL (redis://host:port)"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "redis_address carries credentials already; give the password in redis_password only"
                .to_string(),
        );
    }
    let password = utf8_percent_encode(password, USERINFO);
    Ok(format!("{scheme}://:{password}@{rest}"))
}

#[cfg(test)]
mod tests {
    use super::with_password;

    #[test]
    fn the_password_becomes_the_userinfo() {
        for (address, password, url) in [
            ("redis://cache:6379", "", "redis://cache:6379"),
            (
                "redis://cache:6379",
                "hunter2",
                "redis://:hunter2@cache:6379",
            ),
            (
                "redis://cache:6379/2",
                "hunter2",
                "redis://:hunter2@cache:6379/2",
            ),
        ] {
            assert_eq!(with_password(address, password).unwrap(), url);
        }
    }

    #[test]
    fn characters_that_would_end_the_userinfo_are_escaped() {
        assert_eq!(
            with_password("redis://cache:6379", "p@ss/w:rd%?#~").unwrap(),
            "redis://:p%40ss%2Fw%3Ard%25%3F%23~@cache:6379"
        );
    }

    #[test]
    fn an_address_with_credentials_or_without_a_scheme_is_refused_without_the_secret() {
        let err = with_password("redis://:old@cache:6379", "new-secret").unwrap_err();
        assert!(!err.contains("new-secret"), "{err}");
        assert!(with_password("cache:6379", "new-secret").is_err());
    }
}
