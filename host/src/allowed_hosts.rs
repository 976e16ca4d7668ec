//! `allowed_outbound_hosts`, parsed and checked as Spin 3.6.3 does (its
//! `spin-outbound-networking-config` crate), on the same libraries: `ip_network` for CIDR ranges
//! and `url::Host` for host names, so exact and `*.domain` hosts both compare case-insensitively.
//!
//! Entries are `<scheme>://<host>[:<port>]` where each part may be `*`, the host may be
//! `*.domain` or a CIDR range, and the port may be a range `a..b` (end excluded); a missing port
//! means the scheme's well-known port. Templates (`{{ var }}`) are resolved at start-up. A URL is
//! matched on its scheme, host and port only: credentials and query do not take part.
//! `*.spin.internal` means the app's own components, one `<id>.spin.internal` host each. Spin's
//! test cases are ported as data in `allowed_hosts/spin_cases.toml`.
//!
//! A refused connection gets Spin's error: `invalid-address` for Redis,
//! `connection-failed("address … is not permitted")` for MQTT, `HTTP-request-denied` for HTTP.

use std::net::Ipv6Addr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ip_network::IpNetwork;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Host;

use crate::expressions::Resolver;

/// The default allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    hosts: Vec<AllowedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    /// Lower case; `None` is `*`.
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// Lower case, with its leading dot: `*.Example.com` → `.example.com`.
    AnySubdomain(String),
    /// `self`: the app itself (relative URLs), which nanohost does not route.
    ToSelf,
    Literal(Host),
    Cidr(IpNetwork),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Port(u16),
    /// `a..b`: from `a` up to, not including, `b` (Spin's `Range<u16>`).
    Range(u16, u16),
}

/// What one component's outbound Redis and MQTT connections ask before they connect: its
/// allowed hosts, with its id for the log line of a refusal.
#[derive(Clone)]
pub struct OutboundGate {
    component_id: Arc<str>,
    allowed_hosts: Arc<AllowedHosts>,
}

impl OutboundGate {
    pub fn new(component_id: Arc<str>, allowed_hosts: Arc<AllowedHosts>) -> OutboundGate {
        OutboundGate {
            component_id,
            allowed_hosts,
        }
    }

    pub fn component_id(&self) -> &str {
        &self.component_id
    }

    /// Whether the component may connect to `address` (a URL, `scheme` when it has none); a
    /// refusal is logged, without the URL's password. `what`: the capability, for the log.
    pub fn opens(&self, address: &str, scheme: &str, what: &str) -> bool {
        let allowed = self.allowed_hosts.allows_url(address, scheme);
        if !allowed {
            tracing::info!(
                component = %self.component_id,
                address = %crate::redact::url(address),
                "outbound {what} refused: not in allowed_outbound_hosts"
            );
        }
        allowed
    }
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
    /// `component_ids` are all the app's components: `*.spin.internal` stands for exactly their
    /// service-chaining hosts, as in Spin (`expand_wildcard_service_chaining`), so a name that is
    /// no component, or has a further dot, is refused like any host not listed.
    pub fn parse(
        entries: &[String],
        vars: &Resolver,
        component_ids: &[String],
    ) -> Result<AllowedHosts> {
        if entries.len() == 1 && entries[0] == "insecure:allow-all" {
            bail!("'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic");
        }
        let hosts = entries
            .iter()
            .map(|e| {
                let resolved = vars.resolve(e)?;
                parse_entry(&resolved).with_context(|| {
                    format!(
                        "invalid allowed_outbound_hosts entry {:?}",
                        crate::redact::url(e)
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let hosts = hosts
            .into_iter()
            .flat_map(|h| h.expand_service_chaining(component_ids))
            .collect();
        Ok(AllowedHosts { hosts })
    }

    /// Whether a connection to `url` is allowed. A URL that does not parse, or has no host, is
    /// retried with `default_scheme://` in front, as in Spin's `check_url(url, scheme)`.
    pub fn allows_url(&self, url: &str, default_scheme: &str) -> bool {
        match OutboundUrl::parse(url, default_scheme) {
            Ok(u) => self.allows(&u.scheme, &u.host, u.port),
            Err(_) => false,
        }
    }

    /// `host` as in a URL: a name, an IPv4 address, or an IPv6 address in brackets (a bare
    /// IPv6 address is taken too).
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let host = match Host::parse(host) {
            Ok(h) => h,
            Err(_) => match host.parse::<Ipv6Addr>() {
                Ok(ip) => Host::Ipv6(ip),
                Err(_) => return false,
            },
        };
        let scheme = scheme.to_ascii_lowercase();
        self.hosts.iter().any(|h| {
            h.scheme.as_deref().is_none_or(|s| s == scheme)
                && h.host.allows(&host)
                && h.port.allows(port.or_else(|| well_known_port(&scheme)))
        })
    }
}

/// The service-chaining domain: `<component-id>.spin.internal`.
pub(crate) const SERVICE_CHAINING_SUFFIX: &str = ".spin.internal";

impl AllowedHost {
    /// `*.spin.internal` becomes one entry per component, with this entry's scheme and port.
    fn expand_service_chaining(self, component_ids: &[String]) -> Vec<AllowedHost> {
        match &self.host {
            HostPattern::AnySubdomain(suffix) if suffix == SERVICE_CHAINING_SUFFIX => component_ids
                .iter()
                .map(|id| AllowedHost {
                    host: HostPattern::Literal(Host::Domain(format!(
                        "{id}{SERVICE_CHAINING_SUFFIX}"
                    ))),
                    ..self.clone()
                })
                .collect(),
            _ => vec![self],
        }
    }
}

impl HostPattern {
    fn parse(host: &str) -> Result<HostPattern> {
        let host = host.trim();
        if host == "*" {
            return Ok(HostPattern::Any);
        }
        if host == "self" || host == "self.alt" {
            return Ok(HostPattern::ToSelf);
        }
        if host.starts_with('{') {
            bail!("host lists are not yet supported");
        }
        if let Ok(net) = IpNetwork::from_str_truncate(host) {
            return Ok(HostPattern::Cidr(net));
        }
        let host = host.trim_end_matches('/');
        if host.contains('/') {
            bail!("must not include a path");
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                bail!("wildcards are allowed only as prefixes");
            }
            let domain = match Host::parse(domain) {
                Ok(Host::Domain(d)) => d,
                _ => domain.to_ascii_lowercase(),
            };
            return Ok(HostPattern::AnySubdomain(format!(".{domain}")));
        }
        if host.contains('*') {
            bail!("wildcards are allowed only as subdomains");
        }
        Ok(HostPattern::Literal(Host::parse(host)?))
    }

    fn allows(&self, host: &Host) -> bool {
        match (self, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::AnySubdomain(suffix), Host::Domain(d)) => d.ends_with(suffix.as_str()),
            (HostPattern::Literal(l), h) => l == h,
            (HostPattern::Cidr(net), Host::Ipv4(ip)) => net.contains(*ip),
            (HostPattern::Cidr(net), Host::Ipv6(ip)) => net.contains(*ip),
            (HostPattern::AnySubdomain(_) | HostPattern::Cidr(_), _) => false,
            (HostPattern::ToSelf, _) => false,
        }
    }
}

impl PortPattern {
    fn parse(port: &str, scheme: &str) -> Result<PortPattern> {
        if port.is_empty() {
            return match well_known_port(scheme) {
                Some(p) => Ok(PortPattern::Port(p)),
                None => bail!("no port was provided and the scheme {scheme:?} does not have a known default port number"),
            };
        }
        if port == "*" {
            return Ok(PortPattern::Any);
        }
        if port.starts_with('{') {
            bail!("port lists are not yet supported");
        }
        if let Some((a, b)) = port.split_once("..") {
            let bound = |s: &str| {
                s.parse()
                    .with_context(|| format!("port range {port:?} contains non-number"))
            };
            return Ok(PortPattern::Range(bound(a)?, bound(b)?));
        }
        Ok(PortPattern::Port(port.parse().with_context(|| {
            format!("port {port:?} is not a number")
        })?))
    }

    fn allows(&self, port: Option<u16>) -> bool {
        match (self, port) {
            (PortPattern::Any, _) => true,
            (_, None) => false,
            (PortPattern::Port(p), Some(q)) => *p == q,
            (PortPattern::Range(a, b), Some(q)) => (*a..*b).contains(&q),
        }
    }
}

fn parse_entry(entry: &str) -> Result<AllowedHost> {
    let url = entry.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        match url {
            "*" | ":" | "" | "?" => bail!("{url:?} is not an allowed outbound host format. Hosts must be in the form <scheme>://<host>[:<port>], with '*' wildcards allowed for each. If you intended to allow all outbound networking, you can use '*://*:*' - this will obviate all network sandboxing."),
            _ => bail!("{:?} does not contain a scheme (e.g., 'http://' or '*://')", crate::redact::url(url)),
        }
    };
    // Spin refuses these too (the `:` of the password makes a bad host); say why, without the
    // password.
    if rest
        .split('/')
        .next()
        .is_some_and(|authority| authority.contains('@'))
    {
        bail!(
            "{:?}: an allowed host is <scheme>://<host>[:<port>], without credentials (the URL the component connects to may carry them)",
            crate::redact::url(url)
        );
    }
    let (host, rest) = rest.rsplit_once(':').unwrap_or((rest, ""));
    let port = match rest.split_once('/') {
        Some((_, path)) if !path.is_empty() => bail!("{url:?} has a path but is not allowed to"),
        Some((port, _)) => port,
        None => rest,
    };
    let scheme = scheme.to_ascii_lowercase();
    let port = PortPattern::parse(port, &scheme)
        .with_context(|| format!("Invalid allowed host port {port:?}"))?;
    let scheme = match scheme.as_str() {
        "*" => None,
        s if s.starts_with('{') => {
            bail!("Invalid allowed host scheme {s:?}: scheme lists are not supported")
        }
        s if s.chars().any(|c| !c.is_alphabetic()) => {
            bail!("Invalid allowed host scheme {s:?}: only alphabetic characters are allowed")
        }
        _ => Some(scheme),
    };
    let host =
        HostPattern::parse(host).with_context(|| format!("Invalid allowed host {host:?}"))?;
    Ok(AllowedHost { scheme, host, port })
}

/// What `urlencoding::encode` leaves alone (Spin encodes userinfo with it).
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A URL a component wants to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundUrl {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

impl OutboundUrl {
    /// Parses `url`; if that fails or gives no host, retries with `{scheme}://` in front.
    /// Credentials before the host are percent-encoded first (as Spin does), so a password with
    /// `#`, `?`, `:` or `@` in it does not change where the host is read from.
    pub fn parse(original: &str, scheme: &str) -> Result<OutboundUrl> {
        let mut url = original.to_string();
        if let Some(at) = url.find('@') {
            let scheme_end = url.find("://").map(|e| e + 3).unwrap_or(0);
            let path_start = url[scheme_end..]
                .find('/')
                .map(|e| e + scheme_end)
                .unwrap_or(usize::MAX);
            if scheme_end <= at && at < path_start {
                let userinfo = utf8_percent_encode(&url[scheme_end..at], USERINFO).to_string();
                url = format!("{}{userinfo}{}", &url[..scheme_end], &url[at..]);
            }
        }
        let parsed = match url::Url::parse(&url) {
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
                .with_context(|| {
                    format!(
                        "{:?} does not have a host component",
                        crate::redact::url(original)
                    )
                })?
                .to_string(),
            port: parsed.port(),
        })
    }
}

#[cfg(test)]
mod tests;
