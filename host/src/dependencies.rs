//! `[component.<id>.dependencies]`: Spin's load-time composition. Spin 3.6.3 and 4.0.2
//! (`crates/compose`) link a component's dependencies with wac-graph on every start; this module
//! does the same, with the same library, and refuses what they refuse:
//!
//! - a dependency plugs only the declaring component's own imports; whatever the dependency
//!   imports itself is left to the host (so a dependency cannot plug another dependency);
//! - each dependency is registered in the graph under its package name (`ns:pkg`, no version),
//!   so two entries from one package fail ("package `ns:pkg` has already been registered");
//! - a name that matches none of the imports, an import two names match, an export the
//!   dependency lacks or whose type is not a subtype of the import: each stops the start;
//! - `export = "..."` is not allowed on a package-wide name (`ns:pkg` without an interface).
//!
//! One difference, on the strict side: without `dependencies_inherit_configuration = true` Spin
//! wraps each dependency in its deny-all adapter (3.6.3: `fermyon:spin/*` calls refused, but
//! `wasi:keyvalue` still reaches the store; 4.0.2: the capabilities trap). nanohost has no such
//! adapter; it refuses to start when such a dependency imports a host capability, naming them.
//! A dependency that imports none runs as it is, as on Spin.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use semver::Version;
use wac_graph::types::{Package, SubtypeChecker, WorldId};
use wac_graph::{CompositionGraph, EncodeOptions, NodeId};

/// A key of `[component.<id>.dependencies]`: a plain kebab name (`my-dep`) or a package name
/// with an optional interface and version (`ns:pkg`, `ns:pkg/iface`, `ns:pkg/iface@1.0.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencyName {
    Plain(String),
    Package {
        /// `ns:pkg`.
        package: String,
        interface: Option<String>,
        version: Option<Version>,
    },
}

impl std::str::FromStr for DependencyName {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        if !s.contains(':') {
            check_kebab(s).with_context(|| format!("dependency name {s:?}"))?;
            return Ok(DependencyName::Plain(s.to_string()));
        }
        let (name, version) = match s.split_once('@') {
            Some((name, v)) => (
                name,
                Some(Version::parse(v).with_context(|| format!("dependency name {s:?}"))?),
            ),
            None => (s, None),
        };
        let (package, interface) = match name.split_once('/') {
            Some((p, i)) => (p, Some(i)),
            None => (name, None),
        };
        let Some((namespace, pkg)) = package.split_once(':') else {
            bail!("dependency name {s:?}: expected `namespace:package`");
        };
        for part in [namespace, pkg].into_iter().chain(interface) {
            check_kebab(part).with_context(|| format!("dependency name {s:?}"))?;
        }
        Ok(DependencyName::Package {
            package: package.to_string(),
            interface: interface.map(str::to_string),
            version,
        })
    }
}

impl std::fmt::Display for DependencyName {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DependencyName::Plain(name) => f.write_str(name),
            DependencyName::Package {
                package,
                interface,
                version,
            } => {
                f.write_str(package)?;
                if let Some(i) = interface {
                    write!(f, "/{i}")?;
                }
                if let Some(v) = version {
                    write!(f, "@{v}")?;
                }
                Ok(())
            }
        }
    }
}

fn check_kebab(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.split('-').all(|word| {
            word.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && (word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    || word
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
        });
    if !ok {
        bail!("{s:?} is not a kebab-case identifier");
    }
    Ok(())
}

impl DependencyName {
    /// Whether this name plugs the import `import` (an import name of the declaring component):
    /// plain names only plain imports of the same name; package names every interface of their
    /// package, narrowed by interface and exact version when given.
    pub fn matches(&self, import: &str) -> bool {
        match self {
            DependencyName::Plain(name) => !import.contains([':', '/']) && name == import,
            DependencyName::Package {
                package,
                interface,
                version,
            } => {
                let Some((import_package, rest)) = import.split_once('/') else {
                    return false;
                };
                let (import_interface, import_version) = match rest.split_once('@') {
                    Some((i, v)) => (i, Version::parse(v).ok()),
                    None => (rest, None),
                };
                import_package == package
                    && interface.as_deref().is_none_or(|i| i == import_interface)
                    && version
                        .as_ref()
                        .is_none_or(|v| import_version.as_ref() == Some(v))
            }
        }
    }

    /// Whether two names of one component could plug the same import, which Spin's manifest
    /// validation refuses: same package, semver-compatible versions (or either without one), and
    /// the same interface (or either package-wide).
    pub fn overlaps(&self, other: &DependencyName) -> bool {
        let (
            DependencyName::Package {
                package: a,
                interface: ai,
                version: av,
            },
            DependencyName::Package {
                package: b,
                interface: bi,
                version: bv,
            },
        ) = (self, other)
        else {
            return false;
        };
        if a != b {
            return false;
        }
        if let (Some(av), Some(bv)) = (av, bv) {
            if compatible(av) != compatible(bv) {
                return false;
            }
        }
        match (ai, bi) {
            (Some(ai), Some(bi)) => ai == bi,
            _ => true,
        }
    }

    /// The name the dependency is registered under in the graph, as Spin registers it.
    fn package_name(&self) -> String {
        match self {
            DependencyName::Plain(name) => name.clone(),
            DependencyName::Package { package, .. } => package.clone(),
        }
    }
}

/// The part of a version that semver compatibility keeps: `1.2.3` -> `1.0.0`, `0.2.3` -> `0.2.0`;
/// a pre-release stays as it is.
fn compatible(v: &Version) -> Version {
    let mut v = v.clone();
    v.build = semver::BuildMetadata::EMPTY;
    if v.pre.is_empty() {
        if v.major > 0 {
            (v.minor, v.patch) = (0, 0);
        } else if v.minor > 0 {
            v.patch = 0;
        }
    }
    v
}

/// Refuses names of one component that could plug the same import (Spin refuses the manifest).
pub fn check_disjoint<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let parsed: Vec<(&str, DependencyName)> = names
        .into_iter()
        .map(|n| Ok((n, n.parse()?)))
        .collect::<Result<_>>()?;
    for (i, (a, pa)) in parsed.iter().enumerate() {
        for (b, pb) in &parsed[i + 1..] {
            if pa.overlaps(pb) {
                bail!("dependency {a:?} conflicts with dependency {b:?}");
            }
        }
    }
    Ok(())
}

/// One entry of `[component.<id>.dependencies]`, its path resolved.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub path: PathBuf,
    /// The dependency's export that plugs the import; by default the import's own name.
    pub export: Option<String>,
}

/// The host capabilities Spin's deny-all adapters stand in for (3.6.3's and 4.0.2's lists
/// together, without versions): what a dependency that does not inherit configuration may not
/// reach.
const CAPABILITIES: &[&str] = &[
    "fermyon:spin/llm",
    "fermyon:spin/redis",
    "fermyon:spin/mqtt",
    "fermyon:spin/rdbms-types",
    "fermyon:spin/postgres",
    "fermyon:spin/mysql",
    "fermyon:spin/sqlite",
    "fermyon:spin/key-value",
    "fermyon:spin/variables",
    "fermyon:spin/config",
    "fermyon:spin/http",
    "spin:key-value/key-value",
    "spin:mqtt/mqtt",
    "spin:postgres/postgres",
    "spin:redis/redis",
    "spin:sqlite/sqlite",
    "spin:variables/variables",
    "wasi:config/store",
    "wasi:keyvalue/store",
    "wasi:http/outgoing-handler",
    "wasi:http/client",
    "wasi:cli/environment",
    "wasi:filesystem/preopens",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/tcp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/udp",
];

fn is_capability(import: &str) -> bool {
    let name = import.split_once('@').map_or(import, |(n, _)| n);
    CAPABILITIES.contains(&name)
}

/// Links `dependencies` into the component `source` (the component `id`), as `spin up` does at
/// load; returns the composed component. Without dependencies, `source` unchanged.
pub fn compose(
    id: &str,
    source: Vec<u8>,
    dependencies: &BTreeMap<String, Dependency>,
    inherit_configuration: bool,
) -> Result<Vec<u8>> {
    if dependencies.is_empty() {
        return Ok(source);
    }
    let mut graph = CompositionGraph::new();
    let (world, instance) = register(&mut graph, id, source)?;
    let imports: Vec<String> = graph.types()[world].imports.keys().cloned().collect();

    // Which imports each name plugs; an import two names plug is a conflict.
    let mut plugged: BTreeMap<String, Vec<Plug>> = BTreeMap::new();
    for (name, dependency) in dependencies {
        let parsed: DependencyName = name.parse()?;
        let matched: Vec<&String> = imports.iter().filter(|i| parsed.matches(i)).collect();
        if matched.is_empty() {
            bail!("dependency '{name}' doesn't match any imports of component '{id}'");
        }
        let bytes = std::fs::read(&dependency.path).with_context(|| {
            format!(
                "dependency '{name}': cannot read {}",
                dependency.path.display()
            )
        })?;
        let (dep_world, dep_instance) = register(&mut graph, &parsed.package_name(), bytes)
            .with_context(|| format!("dependency '{name}'"))?;
        if !inherit_configuration {
            refuse_capabilities(&graph, dep_world, name, id)?;
        }
        for import in matched {
            plugged.entry(import.clone()).or_default().push((
                name.clone(),
                dep_world,
                dep_instance,
                dependency.export.clone(),
            ));
        }
    }
    refuse_conflicts(&plugged, id)?;
    plug(&mut graph, world, instance, &plugged)?;
    let exports: Vec<String> = graph.types()[world].exports.keys().cloned().collect();
    for name in exports {
        let alias = graph.alias_instance_export(instance, &name)?;
        graph.export(alias, &name)?;
    }
    graph
        .encode(EncodeOptions::default())
        .context("failed to encode composition graph")
}

/// A dependency that does not inherit the component's configuration may not import a host
/// capability: Spin would wrap it in a deny-all adapter, which nanohost does not have.
fn refuse_capabilities(
    graph: &CompositionGraph,
    dep_world: WorldId,
    name: &str,
    id: &str,
) -> Result<()> {
    let denied: Vec<&str> = graph.types()[dep_world]
        .imports
        .keys()
        .map(String::as_str)
        .filter(|i| is_capability(i))
        .collect();
    if !denied.is_empty() {
        bail!(
            "dependency '{name}' imports host capabilities ({}) but does not inherit the \
             configuration of component '{id}'; Spin would wrap it in its deny-all adapter, \
             which nanohost does not have: set `dependencies_inherit_configuration = true`",
            denied.join(", ")
        );
    }
    Ok(())
}

/// An import two dependencies plug is an error, all such imports named at once, as in Spin.
fn refuse_conflicts(plugged: &BTreeMap<String, Vec<Plug>>, id: &str) -> Result<()> {
    let conflicts: Vec<String> = plugged
        .iter()
        .filter(|(_, by)| by.len() > 1)
        .map(|(import, by)| {
            let names: Vec<&str> = by.iter().map(|(n, ..)| n.as_str()).collect();
            format!(
                "import '{import}' satisfied by dependencies: '{}'",
                names.join(", ")
            )
        })
        .collect();
    if !conflicts.is_empty() {
        bail!(
            "component '{id}' has dependency conflicts: {}",
            conflicts.join("; ")
        );
    }
    Ok(())
}

/// Plugs each import with its dependency's export, checked to be a subtype of the import.
fn plug(
    graph: &mut CompositionGraph,
    world: WorldId,
    instance: NodeId,
    plugged: &BTreeMap<String, Vec<Plug>>,
) -> Result<()> {
    let mut cache = Default::default();
    let mut checker = SubtypeChecker::new(&mut cache);
    let mut arguments = Vec::new();
    for (import, by) in plugged {
        let (name, dep_world, dep_instance, export) = &by[0];
        let export = export.clone().unwrap_or_else(|| import.clone());
        let Some(export_ty) = graph.types()[*dep_world].exports.get(&export).copied() else {
            bail!("dependency '{name}' doesn't export '{export}' to satisfy import '{import}'");
        };
        let import_ty = graph.types()[world].imports[import];
        checker
            .is_subtype(export_ty, graph.types(), import_ty, graph.types())
            .with_context(|| {
                format!(
                    "dependency '{name}' exports '{export}' which is not compatible with import '{import}'"
                )
            })?;
        let alias = graph.alias_instance_export(*dep_instance, &export)?;
        arguments.push((import.clone(), alias));
    }
    for (import, node) in arguments {
        graph.set_instantiation_argument(instance, &import, node)?;
    }
    Ok(())
}

/// A dependency that plugs an import: its manifest name, its world and instance in the graph,
/// and the export asked for.
type Plug = (String, WorldId, NodeId, Option<String>);

fn register(graph: &mut CompositionGraph, name: &str, bytes: Vec<u8>) -> Result<(WorldId, NodeId)> {
    let package = Package::from_bytes(name, None, bytes, graph.types_mut())?;
    let world = package.ty();
    let id = graph.register_package(package)?;
    Ok((world, graph.instantiate(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spin's own table of names and imports (crates/compose, `test_matches_import`).
    #[test]
    fn names_match_imports_as_in_spin() {
        let cases: &[(&str, &[&str], bool)] = &[
            ("foo:bar/baz@0.1.0", &["foo:bar/baz@0.1.0"], true),
            ("foo:bar/baz", &["foo:bar/baz@0.1.0", "foo:bar/baz"], true),
            ("foo:bar", &["foo:bar/baz@0.1.0", "foo:bar/baz"], true),
            ("foo:bar@0.1.0", &["foo:bar/baz@0.1.0"], true),
            ("foo-bar", &["foo-bar"], true),
            ("foo:bar/baz@0.1.0", &["foo:bar/baz"], false),
            ("foo:bar/baz", &["foo:bar/bub", "foo:bar/bub@0.1.0"], false),
            ("foo:bar", &["foo:bub/bib"], false),
            ("foo:bar@0.1.0", &["foo:bar/baz"], false),
            ("foo:bar/baz", &["foo:bar/baz-bub", "foo-bar"], false),
        ];
        for (name, imports, expected) in cases {
            let parsed: DependencyName = name.parse().unwrap();
            for import in *imports {
                assert_eq!(parsed.matches(import), *expected, "{name} vs {import}");
            }
        }
    }

    #[test]
    fn names_that_are_not_names_are_refused() {
        for bad in [
            "",
            "Foo_bar",
            "foo:",
            ":bar",
            "foo:bar@x",
            "foo:bar/Baz_",
            "1foo",
        ] {
            assert!(bad.parse::<DependencyName>().is_err(), "{bad:?} parsed");
        }
        for good in ["nano:orders@0.1.0", "nano:orders/intake", "my-dep"] {
            assert_eq!(good.parse::<DependencyName>().unwrap().to_string(), good);
        }
    }

    #[test]
    fn names_that_could_plug_one_import_overlap() {
        let cases = [
            ("nano:orders@0.1.0", "nano:orders/intake@0.1.0", true),
            ("nano:orders/intake", "nano:orders/status", false),
            ("nano:orders/intake@0.1.0", "nano:orders/intake@0.1.5", true),
            (
                "nano:orders/intake@0.1.0",
                "nano:orders/intake@0.2.0",
                false,
            ),
            ("nano:orders/intake@1.1.0", "nano:orders/intake@1.4.0", true),
            ("nano:orders", "nano:other", false),
            ("my-dep", "nano:orders", false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(check_disjoint([a, b]).is_err(), expected, "{a} and {b}");
        }
    }

    #[test]
    fn capabilities_are_recognised_whatever_their_version() {
        assert!(is_capability("fermyon:spin/key-value@2.0.0"));
        assert!(is_capability("wasi:keyvalue/store@0.2.0-draft2"));
        assert!(is_capability("wasi:http/outgoing-handler@0.2.6"));
        assert!(!is_capability("wasi:keyvalue/atomics@0.2.0-draft2"));
        assert!(!is_capability("wasi:io/streams@0.2.6"));
        assert!(!is_capability("nano:orders/store@0.1.0"));
    }
}
