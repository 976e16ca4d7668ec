//! `allowed_outbound_hosts`, parsed and checked as Spin does (spin-outbound-networking-config).
//!
//! Entries are `<scheme>://<host>[:<port>]` where each part may be `*`, the host may be
//! `*.domain` or a CIDR range, and the port may be a range `a..b`; a missing port means the
//! scheme's well-known port. Templates (`{{ var }}`) are resolved at start-up. A refused
//! connection gets Spin's error: `invalid-address` for Redis, `connection-failed("address …
//! is not permitted")` for MQTT, `HTTP-request-denied` for outgoing HTTP.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};

use crate::expressions::Resolver;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    hosts: Vec<AllowedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// Stored with its leading dot: `*.example.com` → `.example.com`.
    AnySubdomain(String),
    /// `self`: the app itself (relative URLs), which nanohost does not route.
    ToSelf,
    Exact(String),
    Cidr(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Port(u16),
    Range(u16, u16),
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHosts {
    /// Parses a component's list, resolving templates against the application variables.
    pub fn parse(entries: &[String], vars: &Resolver) -> Result<AllowedHosts> {
        if entries.len() == 1 && entries[0] == "insecure:allow-all" {
            bail!("'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic");
        }
        let hosts = entries
            .iter()
            .map(|e| {
                let resolved = vars.resolve(e)?;
                parse_entry(&resolved)
                    .with_context(|| format!("invalid allowed_outbound_hosts entry {e:?}"))
            })
            .collect::<Result<_>>()?;
        Ok(AllowedHosts { hosts })
    }

    /// Whether a connection to `url` is allowed. A URL without a scheme gets `default_scheme`,
    /// as in Spin's `check_url(url, scheme)`.
    pub fn allows_url(&self, url: &str, default_scheme: &str) -> bool {
        match OutboundUrl::parse(url, default_scheme) {
            Ok(u) => self.allows(&u.scheme, &u.host, u.port),
            Err(_) => false,
        }
    }

    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        // url's host_str keeps the brackets of IPv6 literals.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.hosts.iter().any(|h| {
            h.scheme.as_deref().is_none_or(|s| s == scheme)
                && h.host.allows(host)
                && h.port.allows(port.or_else(|| well_known_port(scheme)))
        })
    }
}

impl HostPattern {
    fn allows(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::AnySubdomain(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::ToSelf => false,
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Cidr(net, prefix) => match host.parse::<IpAddr>() {
                Ok(ip) => cidr_contains(*net, *prefix, ip),
                Err(_) => false,
            },
        }
    }
}

impl PortPattern {
    fn allows(&self, port: Option<u16>) -> bool {
        match (self, port) {
            (PortPattern::Any, _) => true,
            (_, None) => false,
            (PortPattern::Port(p), Some(q)) => *p == q,
            (PortPattern::Range(a, b), Some(q)) => (*a..*b).contains(&q),
        }
    }
}

fn cidr_contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

fn parse_entry(entry: &str) -> Result<AllowedHost> {
    let url = entry.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        match url {
            "*" | ":" | "" | "?" => bail!("{url:?} is not an allowed outbound host format. Hosts must be in the form <scheme>://<host>[:<port>], with '*' wildcards allowed for each. If you intended to allow all outbound networking, you can use '*://*:*' - this will obviate all network sandboxing."),
            _ => bail!("{url:?} does not contain a scheme (e.g., 'http://' or '*://')"),
        }
    };
    let scheme_cfg = if scheme == "*" {
        None
    } else if scheme.chars().any(|c| !c.is_alphabetic()) {
        bail!("scheme {scheme:?} contains non alphabetic character");
    } else {
        Some(scheme.to_string())
    };

    // CIDR ranges contain a `/`, so look for the port after the last `]` of an IPv6 literal.
    let (host, port_part) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (h, p),
        _ => (rest, ""),
    };
    let port = match port_part.split_once('/') {
        Some((_, path)) if !path.is_empty() => bail!("{url:?} has a path but is not allowed to"),
        Some((p, _)) => p,
        None => port_part,
    };
    let port = if port.is_empty() {
        match well_known_port(scheme) {
            Some(p) => PortPattern::Port(p),
            None => bail!("no port was provided and the scheme {scheme:?} does not have a known default port number"),
        }
    } else if port == "*" {
        PortPattern::Any
    } else if let Some((a, b)) = port.split_once("..") {
        PortPattern::Range(
            a.parse()
                .with_context(|| format!("port range {port:?} contains non-number"))?,
            b.parse()
                .with_context(|| format!("port range {port:?} contains non-number"))?,
        )
    } else {
        PortPattern::Port(
            port.parse()
                .with_context(|| format!("port {port:?} is not a number"))?,
        )
    };

    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    let host = if host == "*" {
        HostPattern::Any
    } else if host == "self" || host == "self.alt" {
        HostPattern::ToSelf
    } else if let Some((ip, prefix)) = parse_cidr(host) {
        HostPattern::Cidr(ip, prefix)
    } else if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            bail!("Invalid allowed host {host}: wildcards are allowed only as prefixes");
        }
        HostPattern::AnySubdomain(format!(".{domain}"))
    } else if host.contains('*') {
        bail!("Invalid allowed host {host}: wildcards are allowed only as subdomains");
    } else if matches!(host.split('/').nth(1), Some(p) if !p.is_empty()) {
        bail!("hosts must not contain paths");
    } else {
        HostPattern::Exact(host.trim_end_matches('/').to_string())
    };
    Ok(AllowedHost {
        scheme: scheme_cfg,
        host,
        port,
    })
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
        None => {
            let ip = s.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((ip, prefix))
}

/// A URL a component wants to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundUrl {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

impl OutboundUrl {
    /// Parses `url`; if that fails or gives no host, retries with `{scheme}://` in front.
    pub fn parse(url: &str, scheme: &str) -> Result<OutboundUrl> {
        let parsed = match url::Url::parse(url) {
            Ok(u) if u.has_host() => u,
            first => match url::Url::parse(&format!("{scheme}://{url}")) {
                Ok(u) => u,
                Err(e) => return Err(first.err().map(Into::into).unwrap_or(e.into())),
            },
        };
        Ok(OutboundUrl {
            scheme: parsed.scheme().to_string(),
            host: parsed
                .host_str()
                .with_context(|| format!("{url:?} does not have a host component"))?
                .to_string(),
            port: parsed.port(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::VariableDecl;
    use std::collections::BTreeMap;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        let mut decls = BTreeMap::new();
        decls.insert(
            "redis_host".to_string(),
            VariableDecl {
                default: Some("10.1.2.3".into()),
                required: false,
                secret: false,
                description: None,
            },
        );
        let vars = Resolver::new(&decls, |_| None).unwrap();
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&entries, &vars).unwrap()
    }

    #[test]
    fn exact_host_and_port() {
        let h = hosts(&["redis://127.0.0.1:6380", "mqtt://broker:1883"]);
        assert!(h.allows_url("redis://127.0.0.1:6380", "redis"));
        assert!(!h.allows_url("redis://127.0.0.1:6379", "redis"));
        assert!(!h.allows_url("redis://127.0.0.2:6380", "redis"));
        assert!(h.allows_url("mqtt://broker:1883?client_id=x", "mqtt"));
        assert!(h.allows_url("mqtt://broker", "mqtt"), "well-known port");
        assert!(
            !h.allows_url("http://broker:1883", "http"),
            "scheme must match"
        );
    }

    #[test]
    fn default_ports_and_wildcards() {
        let h = hosts(&["redis://cache", "https://*.example.com", "http://*:8080"]);
        assert!(h.allows_url("redis://cache:6379", "redis"));
        assert!(h.allows_url("redis://cache", "redis"));
        assert!(!h.allows_url("redis://cache:6380", "redis"));
        assert!(h.allows_url("https://api.example.com/x", "https"));
        assert!(!h.allows_url("https://example.org/x", "https"));
        assert!(h.allows_url("http://anything:8080/", "http"));
        assert!(!h.allows_url("http://anything:8081/", "http"));
        let all = hosts(&["*://*:*"]);
        assert!(all.allows_url("postgres://db:1", "postgres"));
    }

    #[test]
    fn templates_cidr_and_ranges() {
        let h = hosts(&[
            "redis://{{ redis_host }}:6379",
            "http://10.0.0.0/8:*",
            "http://localhost:3000..3010",
        ]);
        assert!(h.allows_url("redis://10.1.2.3:6379", "redis"));
        assert!(h.allows_url("http://10.200.0.1:9", "http"));
        assert!(!h.allows_url("http://11.0.0.1:9", "http"));
        assert!(h.allows_url("http://localhost:3005", "http"));
        assert!(!h.allows_url("http://localhost:3010", "http"));
    }

    #[test]
    fn url_without_scheme_gets_the_default_one() {
        let h = hosts(&["redis://cache:6379"]);
        assert!(h.allows_url("cache:6379", "redis"));
    }

    #[test]
    fn malformed_entries_are_errors() {
        let vars = Resolver::default();
        for bad in [
            "*",
            "example.com",
            "http://a.*.com",
            "ftp://x",
            "http://x:abc",
            "http://x/path",
            "h1tp://x:1",
        ] {
            assert!(
                AllowedHosts::parse(&[bad.to_string()], &vars).is_err(),
                "{bad} should be rejected"
            );
        }
        assert!(AllowedHosts::parse(&["insecure:allow-all".to_string()], &vars).is_err());
    }
}
