//! Credentials never reach a log line or a response: URLs are shown without their password
//! (`redis://user:***@host`), and without query values that look like secrets.

/// `url` with any password (and secret-looking query values) replaced by `***`. A URL without
/// them, and text that is not a URL, come back as written, except that a `user:password@`
/// before a host is still masked.
pub fn url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) => {
            let secret_query = u.query_pairs().any(|(k, _)| is_secret_name(&k));
            if u.password().is_none() && !secret_query {
                // As written: `Url` would normalise it (`http://h` → `http://h/`).
                return text.to_string();
            }
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if secret_query {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if is_secret_name(&k) {
                            "***".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => mask_userinfo(text),
    }
}

/// Every URL-looking word of a message passed through [`url`]: for error messages of
/// libraries that quote the address they were given.
pub fn message(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.contains("://") {
                url(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Values of `secret = true` variables seen so far, longest first (so a secret that contains
/// another is masked whole).
static SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Masks `value` in everything [`secrets`] and [`Stderr`] handle from now on. Values shorter
/// than 4 bytes are ignored: masking every "1" would make logs unreadable and hide nothing.
pub fn register_secret(value: &str) {
    if value.len() < 4 {
        return;
    }
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|s| s == value) {
        all.push(value.to_string());
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret value replaced by `***`.
pub fn secrets(text: &str) -> std::borrow::Cow<'_, str> {
    let all = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|s| text.contains(s.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in all.iter() {
        out = out.replace(s.as_str(), "***");
    }
    std::borrow::Cow::Owned(out)
}

/// Standard error with secrets masked: the log writer of `nanohost up`. tracing's formatter
/// writes each event with one `write_all`, so a secret is never split across two writes.
pub struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(secrets(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "key"]
        .iter()
        .any(|s| n.contains(s))
}

fn mask_userinfo(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_string();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &text[..scheme_end], &rest[at + 1..])
        }
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASES: &[(&str, &str)] = &[
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ("redis://:hunter2@redis:6379", "redis://:***@redis:6379"),
        (
            "redis://app:hunter2@redis:6379/0",
            "redis://app:***@redis:6379/0",
        ),
        (
            "mqtt://broker:1883?client_id=a&password=hunter2",
            "mqtt://broker:1883?client_id=a&password=***",
        ),
        (
            "mqtt://broker:1883?client_id=a",
            "mqtt://broker:1883?client_id=a",
        ),
        ("not a url", "not a url"),
        ("http://Example.com", "http://Example.com"),
        ("redis://u:hunter2@[bad", "redis://u:***@[bad"),
    ];

    #[test]
    fn passwords_never_survive() {
        for (input, expected) in CASES {
            let out = url(input);
            assert_eq!(&out, expected, "{input}");
            assert!(!out.contains("hunter2"));
        }
    }

    #[test]
    fn registered_secrets_are_masked() {
        register_secret("s3cr3t-value");
        register_secret("ab"); // too short to mask
        assert_eq!(secrets("token=s3cr3t-value; ab"), "token=***; ab");
        assert_eq!(secrets("nothing here"), "nothing here");
    }

    #[test]
    fn messages_mask_every_url() {
        let m = message("cannot connect to redis://u:hunter2@h:1 (refused)");
        assert_eq!(m, "cannot connect to redis://u:***@h:1 (refused)");
    }
}
