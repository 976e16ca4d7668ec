//! HTTP route matching as Spin does it.
//!
//! A route is an exact path (`/order`), a path with named segments (`/order/:id`), or either
//! followed by a trailing wildcard (`/order/...`, `/...`). The most specific route wins: one
//! without a wildcard beats one with; then more literal segments beat fewer; then more segments
//! beat fewer. A trailing `/` on the request path is ignored.

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug, Clone)]
struct Route<T> {
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
    target: T,
}

/// The outcome of routing a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a, T> {
    pub target: &'a T,
    /// The route as written in the manifest, e.g. `/order/...` (`spin-raw-component-route`,
    /// and `spin-matched-route` since the base path is always `/`).
    pub raw_route: &'a str,
    /// The part of the path matched by a trailing wildcard, with its leading `/`, or empty.
    pub path_info: String,
    /// Named segments, in order.
    pub params: Vec<(&'a str, String)>,
}

impl<T> RouteMatch<'_, T> {
    /// `spin-component-route`: the route without its trailing `/...`.
    pub fn component_route(&self) -> &str {
        self.raw_route
            .strip_suffix("/...")
            .unwrap_or(self.raw_route)
    }
}

/// Checks a route string from the manifest.
pub fn validate_route(route: &str) -> Result<()> {
    parse(route).map(|_| ())
}

fn parse(route: &str) -> Result<(Vec<Segment>, bool)> {
    if !route.starts_with('/') {
        bail!("route {route:?} must start with `/`");
    }
    let trimmed = route.trim_end_matches('/');
    let (body, wildcard) = match trimmed.strip_suffix("/...") {
        Some(b) => (b, true),
        None if trimmed == "..." => ("", true),
        None => (trimmed, false),
    };
    let mut segments = Vec::new();
    for seg in body.split('/').skip(1) {
        if seg.is_empty() {
            bail!("route {route:?} has an empty segment");
        }
        if seg == "..." {
            bail!("route {route:?}: `...` is only allowed at the end");
        }
        match seg.strip_prefix(':') {
            Some("") => bail!("route {route:?} has a `:` segment with no name"),
            Some(name) => segments.push(Segment::Param(name.to_string())),
            None => segments.push(Segment::Literal(seg.to_string())),
        }
    }
    Ok((segments, wildcard))
}

/// A table of routes, searched per request.
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<Route<T>>,
}

impl<T> Router<T> {
    /// Builds a router. A route that appears twice is an error (Spin warns and ignores the
    /// second; an error is kinder than a silently dead trigger).
    pub fn new(routes: impl IntoIterator<Item = (String, T)>) -> Result<Router<T>> {
        let mut out: Vec<Route<T>> = Vec::new();
        for (raw, target) in routes {
            let (segments, wildcard) = parse(&raw)?;
            if out
                .iter()
                .any(|r| r.segments == segments && r.wildcard == wildcard)
            {
                bail!("route {raw:?} is defined twice");
            }
            out.push(Route {
                raw,
                segments,
                wildcard,
                target,
            });
        }
        // Most specific first, so the first match wins.
        out.sort_by_key(|r| {
            let literals = r
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            (
                r.wildcard,
                usize::MAX - literals,
                usize::MAX - r.segments.len(),
            )
        });
        Ok(Router { routes: out })
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch<'_, T>> {
        let path = path.trim_end_matches('/');
        'routes: for r in &self.routes {
            let mut rest = path;
            let mut params = Vec::new();
            for seg in &r.segments {
                let Some(after) = rest.strip_prefix('/') else {
                    continue 'routes;
                };
                let (this, tail) = after.split_at(after.find('/').unwrap_or(after.len()));
                match seg {
                    Segment::Literal(l) if l == this => {}
                    Segment::Param(name) if !this.is_empty() => {
                        params.push((name.as_str(), this.to_string()))
                    }
                    _ => continue 'routes,
                }
                rest = tail;
            }
            if !rest.is_empty() && !r.wildcard {
                continue;
            }
            return Some(RouteMatch {
                target: &r.target,
                raw_route: &r.raw,
                path_info: rest.to_string(),
                params,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[&str]) -> Router<String> {
        Router::new(routes.iter().map(|r| (r.to_string(), r.to_string()))).unwrap()
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins() {
        let r = router(&["/...", "/order/...", "/order", "/order/special"]);
        assert_eq!(r.route("/order").unwrap().target, "/order");
        assert_eq!(r.route("/order/").unwrap().target, "/order");
        assert_eq!(r.route("/order/special").unwrap().target, "/order/special");
        let m = r.route("/order/123").unwrap();
        assert_eq!(m.target, "/order/...");
        assert_eq!(m.path_info, "/123");
        assert_eq!(m.component_route(), "/order");
        let m = r.route("/other/x").unwrap();
        assert_eq!(m.target, "/...");
        assert_eq!(m.path_info, "/other/x");
        assert_eq!(m.component_route(), "");
        assert_eq!(r.route("/").unwrap().target, "/...");
    }

    #[test]
    fn wildcard_matches_its_own_prefix_with_empty_path_info() {
        let r = router(&["/api/..."]);
        let m = r.route("/api").unwrap();
        assert_eq!(m.path_info, "");
        assert_eq!(m.raw_route, "/api/...");
        assert!(r.route("/apix").is_none());
        assert!(r.route("/").is_none());
    }

    #[test]
    fn exact_routes_do_not_match_longer_paths() {
        let r = router(&["/order", "/"]);
        assert!(r.route("/order/1").is_none());
        assert_eq!(r.route("/").unwrap().target, "/");
        assert!(r.route("/x").is_none());
    }

    #[test]
    fn named_segments() {
        let r = router(&["/order/:id", "/order/latest", "/user/:uid/..."]);
        assert_eq!(r.route("/order/latest").unwrap().target, "/order/latest");
        let m = r.route("/order/42").unwrap();
        assert_eq!(m.params, vec![("id", "42".to_string())]);
        let m = r.route("/user/7/a/b").unwrap();
        assert_eq!(m.params, vec![("uid", "7".to_string())]);
        assert_eq!(m.path_info, "/a/b");
        assert_eq!(m.component_route(), "/user/:uid");
    }

    #[test]
    fn bad_routes_are_rejected() {
        assert!(validate_route("order").is_err());
        assert!(validate_route("/a//b").is_err());
        assert!(validate_route("/a/.../b").is_err());
        assert!(validate_route("/a/:").is_err());
        assert!(Router::new(vec![("/a".to_string(), 1), ("/a/".to_string(), 2)]).is_err());
    }
}
