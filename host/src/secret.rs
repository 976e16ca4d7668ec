//! Secret values as a type (the `secrecy` crate underneath): a `secret = true` variable, a value
//! rendered from one, a password a guest hands over, a store URL of the runtime config. Their
//! `Debug` shows `***` and they have no `Display`, so neither a log line, an error message, a
//! `{:?}` of the plan nor `nanohost check` can print them by accident; the value comes out only
//! through [`Secret::expose`], at the one place it is handed on (a client library, the guest).
//! What libraries write themselves (an error quoting a URL) is masked by `redact`.

use secrecy::{ExposeSecret, SecretString};

/// A string nobody may read but its one consumer.
#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    /// The value itself: call it only where the value leaves nanohost (a client, the guest).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value.into())
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::from)
    }
}

/// A resolved variable: plain, or secret when a `secret = true` variable went into it (a
/// template over one is as secret as the variable).
#[derive(Clone, Debug)]
pub enum Value {
    Plain(String),
    Secret(Secret),
}

impl Value {
    /// The value, for the guest that asked for it (`variables.get`).
    pub fn expose(&self) -> &str {
        match self {
            Value::Plain(v) => v,
            Value::Secret(s) => s.expose(),
        }
    }

    /// The value if it may be shown.
    pub fn plain(&self) -> Option<&str> {
        match self {
            Value::Plain(v) => Some(v),
            Value::Secret(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::from("hunter2-pw");
        let value = Value::Secret(secret.clone());
        for shown in [
            format!("{secret:?}"),
            format!("{value:?}"),
            format!("{value:#?}"),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        assert_eq!(secret.expose(), "hunter2-pw");
        assert_eq!(value.expose(), "hunter2-pw");
        assert_eq!(value.plain(), None);
        assert_eq!(Value::Plain("x".into()).plain(), Some("x"));
        let parsed: Secret = serde_json::from_str("\"hunter2-pw\"").unwrap();
        assert_eq!(parsed.expose(), "hunter2-pw");
    }
}
