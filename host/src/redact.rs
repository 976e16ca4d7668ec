//! Credentials never reach a log line or a response: URLs are shown without their password
//! (`redis://user:***@host`), and without query values that look like secrets.

/// `url` with any password (and secret-looking query values) replaced by `***`. Text that is not
/// a URL comes back unchanged, except that a `user:password@` before a host is still masked.
pub fn url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            let secret_query = u.query_pairs().any(|(k, _)| is_secret_name(&k));
            if secret_query {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if is_secret_name(&k) { "***".into() } else { v.into_owned() };
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
        .map(|w| if w.contains("://") { url(w) } else { w.to_string() })
        .collect::<Vec<_>>()
        .join(" ")
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
        ("redis://app:hunter2@redis:6379/0", "redis://app:***@redis:6379/0"),
        (
            "mqtt://broker:1883?client_id=a&password=hunter2",
            "mqtt://broker:1883?client_id=a&password=***",
        ),
        ("mqtt://broker:1883?client_id=a", "mqtt://broker:1883?client_id=a"),
        ("not a url", "not a url"),
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
    fn messages_mask_every_url() {
        let m = message("cannot connect to redis://u:hunter2@h:1 (refused)");
        assert_eq!(m, "cannot connect to redis://u:***@h:1 (refused)");
    }
}
