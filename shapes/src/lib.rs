//! The one list of what nano-orders builds and runs, `shapes.toml` at the repository root, as data:
//! the wasm components with their wac packages, and the shapes with their Spin apps. xtask,
//! composition, the benchmark and the fault tests read it here; deploy/ reads the same file with
//! Python.

use serde::Deserialize;
use std::sync::OnceLock;

/// The file, compiled in: a build always sees the list of its own commit.
pub const SOURCE: &str = include_str!("../../shapes.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(rename = "component")]
    pub components: Vec<Component>,
    #[serde(rename = "shape")]
    pub shapes: Vec<Shape>,
}

/// A wasm crate and the wac package (`ns:name`) its build becomes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    #[serde(rename = "crate")]
    pub krate: String,
    pub package: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    pub name: String,
    pub about: String,
    /// `cargo xtask up` runs it and deploy/ has its overlays.
    pub deployed: bool,
    pub apps: Vec<App>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub name: String,
    /// The Spin manifest, relative to the repository root.
    pub manifest: String,
    pub role: Role,
    /// Has an HTTP trigger.
    pub http: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Takes the HTTP API (and sweeps its outbox).
    Order,
    /// A networked shape's second app, started by its trigger.
    Fulfilment,
}

/// The list, parsed once. `shapes.toml` is part of the source: a malformed one fails every
/// build's tests (this crate's first), so panicking here names a bug, not bad input.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| parse(SOURCE).unwrap_or_else(|e| panic!("shapes.toml: {e}")))
}

pub fn parse(source: &str) -> Result<Catalog, toml::de::Error> {
    toml::from_str(source)
}

impl Catalog {
    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.iter().find(|s| s.name == name)
    }

    /// The shapes `cargo xtask up` runs and deploy/ deploys.
    pub fn deployed(&self) -> impl Iterator<Item = &Shape> {
        self.shapes.iter().filter(|s| s.deployed)
    }
}

impl Shape {
    /// The app of `role`, if the shape has one (the composed shape has no fulfilment app).
    pub fn app(&self, role: Role) -> Option<&App> {
        self.apps.iter().find(|a| a.role == role)
    }

    /// The app that takes the HTTP API; every shape has exactly one (checked by this crate's tests).
    pub fn order_app(&self) -> &App {
        self.app(Role::Order)
            .unwrap_or_else(|| panic!("shapes.toml: shape {} has no order app", self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::Path;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
    }

    #[test]
    fn every_shape_has_one_order_app_and_at_most_one_fulfilment_app() {
        for shape in &catalog().shapes {
            let count = |role| shape.apps.iter().filter(|a| a.role == role).count();
            assert_eq!(count(Role::Order), 1, "{}", shape.name);
            assert!(count(Role::Fulfilment) <= 1, "{}", shape.name);
            assert!(
                shape.order_app().http,
                "{}: the order app takes HTTP",
                shape.name
            );
        }
    }

    #[test]
    fn names_are_unique_and_manifests_exist() {
        let c = catalog();
        let apps: Vec<_> = c.shapes.iter().flat_map(|s| &s.apps).collect();
        let unique = |names: Vec<&str>| names.len() == names.iter().collect::<HashSet<_>>().len();
        assert!(unique(c.shapes.iter().map(|s| s.name.as_str()).collect()));
        // Shapes may share an app (mqtt_p3 runs mqtt's fulfilment app), but one name is one app.
        for app in &apps {
            let same_name = apps.iter().filter(|a| a.name == app.name);
            assert!(
                same_name
                    .clone()
                    .all(|a| (&a.manifest, a.role, a.http) == (&app.manifest, app.role, app.http)),
                "two apps named {}",
                app.name
            );
        }
        let manifests: HashSet<_> = apps.iter().map(|a| (&a.manifest, &a.name)).collect();
        assert!(unique(manifests.iter().map(|(m, _)| m.as_str()).collect()));
        assert!(unique(
            c.components.iter().map(|c| c.krate.as_str()).collect()
        ));
        for app in apps {
            assert!(root().join(&app.manifest).is_file(), "{}", app.manifest);
        }
    }

    #[test]
    fn every_wac_package_has_its_crate_and_is_named_ns_colon_name() {
        for c in &catalog().components {
            assert!(c.package.split_once(':').is_some(), "{}", c.package);
            let found = ["business", "adapters"].iter().any(|dir| {
                root()
                    .join("components")
                    .join(dir)
                    .join(&c.krate)
                    .join("Cargo.toml")
                    .is_file()
            });
            assert!(found, "no crate components/*/{}", c.krate);
        }
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let typo = SOURCE.replacen("deployed = true", "deploy = true", 1);
        assert!(parse(&typo).is_err());
    }
}
