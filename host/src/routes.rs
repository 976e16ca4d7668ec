//! HTTP route matching as Spin 3.6.3 does it (its `spin-http-routes` crate): the same
//! `routefinder` router, fed the same way, so precedence is routefinder's (segment by segment from
//! the left, a literal beats `:param` beats a trailing wildcard) rather than a rule of our own.
//!
//! A route is a path with optional `:name` segments and an optional trailing `/...` (or `/*`).
//! Spin's test table is ported as data in `routes/spin_cases.toml`.

use anyhow::{anyhow, bail, Result};
use routefinder::{RouteSpec, Segment};

/// Paths Spin's HTTP trigger answers itself before routing (`health`, `info`), so a route under
/// them is never reached.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// The outcome of routing a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a, T> {
    pub target: &'a T,
    /// The route as written in the manifest (`spin-raw-component-route`).
    pub raw_route: &'a str,
    /// The route as Spin routes it (`spin-matched-route`): made absolute, one trailing `/`
    /// removed, so `/` is the empty string.
    pub matched_route: &'a str,
    /// The part of the path under a trailing wildcard, with its leading `/`, and with the
    /// request's trailing `/` if it had one; empty for an exact route.
    pub path_info: String,
    /// Named segments, in route order.
    pub params: Vec<(&'a str, String)>,
}

impl<T> RouteMatch<'_, T> {
    /// `spin-component-route`: the raw route without its trailing `/...`.
    pub fn component_route(&self) -> &str {
        self.raw_route
            .strip_suffix("/...")
            .unwrap_or(self.raw_route)
    }
}

/// The header Spin passes a named segment in: `:order_id` → `spin-path-match-order-id` (Spin
/// builds `SPIN_PATH_MATCH_ORDER_ID` and turns it into a header name with `_` → `-`).
pub fn param_header(name: &str) -> String {
    format!(
        "spin-path-match-{}",
        name.to_ascii_lowercase().replace('_', "-")
    )
}

/// Checks a route string from the manifest: what Spin accepts, less a wildcard before the end,
/// which routefinder accepts and then panics on at the first request.
pub fn validate_route(route: &str) -> Result<()> {
    parse(&based(route)).map(|_| ())
}

/// Spin's `sanitize_with_base("/", route)`.
fn based(route: &str) -> String {
    let absolute = if route.starts_with('/') {
        route.to_string()
    } else {
        format!("/{route}")
    };
    match absolute.strip_suffix('/') {
        Some(s) => s.to_string(),
        None => absolute,
    }
}

/// Spin's `Router::parse_route`: the routefinder spec and whether it ends in a wildcard.
fn parse(based: &str) -> Result<(RouteSpec, bool)> {
    let (spec, wildcard) = if let Some(prefix) = based.strip_suffix("/...") {
        (format!("{prefix}/*"), true)
    } else {
        (based.to_string(), based.ends_with("/*"))
    };
    let spec = RouteSpec::try_from(spec.as_str())
        .map_err(|e| anyhow!("error parsing route {based:?}: {e}"))?;
    let segments = spec.segments();
    if let Some(i) = segments.iter().position(|s| matches!(s, Segment::Wildcard)) {
        if i + 1 != segments.len() {
            bail!("route {based:?}: a wildcard is only allowed at the end");
        }
    }
    Ok((spec, wildcard))
}

#[derive(Debug)]
struct Handler<T> {
    target: T,
    raw_route: String,
    matched_route: String,
    wildcard: bool,
}

/// A table of routes, searched per request.
#[derive(Debug)]
pub struct Router<T> {
    router: routefinder::Router<Handler<T>>,
    /// Read by the route table's tests; the warning at start-up says the same.
    #[cfg_attr(not(test), allow(dead_code))]
    duplicates: Vec<String>,
}

impl<T> Router<T> {
    /// Builds a router. A route written twice keeps its first place and its last target, and
    /// the earlier one is never used: Spin warns about it and starts, and so does nanohost.
    pub fn new(routes: impl IntoIterator<Item = (String, T)>) -> Result<Router<T>> {
        let mut unique: Vec<(String, T)> = Vec::new();
        let mut duplicates = Vec::new();
        for (raw, target) in routes {
            match unique.iter_mut().find(|(r, _)| *r == raw) {
                Some(slot) => {
                    slot.1 = target;
                    duplicates.push(raw);
                }
                None => unique.push((raw, target)),
            }
        }
        for route in &duplicates {
            tracing::warn!(
                route = %route,
                "this route is defined more than once; only its last [[trigger.http]] is used"
            );
        }
        let mut router = routefinder::Router::new();
        let mut reserved = false;
        for (raw, target) in unique {
            let matched_route = based(&raw);
            let (spec, wildcard) = parse(&matched_route)?;
            reserved |= matched_route.starts_with(WELL_KNOWN_PREFIX);
            router
                .add(
                    spec,
                    Handler {
                        target,
                        raw_route: raw,
                        matched_route,
                        wildcard,
                    },
                )
                .map_err(|e| anyhow!("{e}"))?;
        }
        if reserved {
            tracing::warn!("routes under {WELL_KNOWN_PREFIX} are answered by the host and never reach a component");
        }
        Ok(Router { router, duplicates })
    }

    #[cfg(test)]
    /// The routes that are defined more than once (each repeat once).
    pub fn duplicates(&self) -> &[String] {
        &self.duplicates
    }

    #[cfg(test)]
    /// Whether a route lies under [`WELL_KNOWN_PREFIX`].
    pub fn contains_reserved_route(&self) -> bool {
        self.router
            .iter()
            .any(|(_, h)| h.matched_route.starts_with(WELL_KNOWN_PREFIX))
    }

    #[cfg(test)]
    /// The routes as written, most specific first (the order they are tried in).
    pub fn routes(&self) -> impl Iterator<Item = (&str, &T)> {
        self.router
            .iter()
            .map(|(_, h)| (h.raw_route.as_str(), &h.target))
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch<'_, T>> {
        if path.starts_with(WELL_KNOWN_PREFIX) {
            return None;
        }
        let m = self.router.best_match(path)?;
        let handler = m.handler();
        let captures = m.captures();
        let names = m.route().segments().iter().filter_map(|s| match s {
            Segment::Param(name) => Some(&**name),
            _ => None,
        });
        let params = names
            .zip(captures.params())
            .map(|(name, c)| (name, c.value().to_string()))
            .collect();
        // routefinder ignores a trailing `/`; Spin keeps it in the path info.
        let path_info = match (handler.wildcard, captures.wildcard()) {
            (true, Some(rest)) => match (rest.is_empty(), path.ends_with('/')) {
                (true, false) => String::new(),
                (true, true) => "/".to_string(),
                (false, false) => format!("/{rest}"),
                (false, true) => format!("/{rest}/"),
            },
            _ => String::new(),
        };
        Some(RouteMatch {
            target: &handler.target,
            raw_route: &handler.raw_route,
            matched_route: &handler.matched_route,
            path_info,
            params,
        })
    }
}

#[cfg(test)]
mod tests;
