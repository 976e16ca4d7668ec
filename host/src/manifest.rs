//! The subset of Spin's application manifest (version 2) that nanohost runs.
//!
//! Every struct denies unknown fields: a typo in `spin.toml` must fail loudly at start-up rather
//! than silently change what the app does. Fields real Spin accepts but nanohost ignores on
//! purpose (`build`, `description`, ...) are parsed and kept so that the same file runs on both.
//! A missing `Option` field is `None` (serde's rule); other optional fields say `default`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// A parsed `spin.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
// Parsed so that a Spin manifest parses here, not all read (see the module's comment).
#[allow(dead_code)]
pub struct Manifest {
    pub spin_manifest_version: ManifestVersion,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, Component>,
}

/// Only version 2 exists in the Spin versions this project targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestVersion;

impl<'de> Deserialize<'de> for ManifestVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        if v == 2 {
            Ok(ManifestVersion)
        } else {
            Err(serde::de::Error::custom(format!(
                "spin_manifest_version {v} is not supported (only 2)"
            )))
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
// Parsed so that a Spin manifest parses here, not all read (see the module's comment).
#[allow(dead_code)]
pub struct Application {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub trigger: AppTriggerConfig,
}

/// `[application.trigger.*]`: settings shared by all triggers of one type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppTriggerConfig {
    pub http: Option<AppHttpConfig>,
    pub redis: Option<AppRedisConfig>,
    pub mqtt: Option<AppMqttConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppHttpConfig {
    pub base: Option<String>,
}

/// `address` may be written with its password (`redis://:<password>@host`): its `Debug` shows
/// it masked.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRedisConfig {
    pub address: String,
}

impl std::fmt::Debug for AppRedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRedisConfig")
            .field("address", &crate::redact::url(&self.address))
            .finish()
    }
}

/// The MQTT trigger plugin (spin-trigger-mqtt v0.7) takes these as strings; numbers are accepted too.
/// `password` may be written in the clear: its `Debug` shows `***`.
// `password` stays a `String` while the MQTT trigger (trigger/mqtt.rs) reads it as one; it
// becomes a `crate::secret::Secret` when the trigger resolves it with `Resolver::value`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppMqttConfig {
    pub address: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    pub keep_alive_interval: Option<StringOrInt>,
}

impl std::fmt::Debug for AppMqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppMqttConfig")
            .field("address", &crate::redact::url(&self.address))
            .field("username", &self.username)
            .field("password", &"***")
            .field("keep_alive_interval", &self.keep_alive_interval)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StringOrInt {
    Int(i64),
    String(String),
}

impl std::fmt::Display for StringOrInt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StringOrInt::Int(i) => write!(f, "{i}"),
            StringOrInt::String(s) => f.write_str(s),
        }
    }
}

/// `[variables]` entries: exactly one of `default` or `required = true`. The `default` of a
/// `secret = true` one is a secret: its `Debug` shows `***` (the resolved value is a
/// `secret::Secret`).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct VariableDecl {
    pub default: Option<String>,
    pub required: bool,
    pub secret: bool,
    pub description: Option<String>,
}

impl std::fmt::Debug for VariableDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let default = match &self.default {
            Some(_) if self.secret => Some("***"),
            other => other.as_deref(),
        };
        f.debug_struct("VariableDecl")
            .field("default", &default)
            .field("required", &self.required)
            .field("secret", &self.secret)
            .field("description", &self.description)
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Triggers {
    pub http: Vec<HttpTrigger>,
    pub redis: Vec<RedisTrigger>,
    pub mqtt: Vec<MqttTrigger>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
// Parsed so that a Spin manifest parses here, not all read (see the module's comment).
#[allow(dead_code)]
pub struct HttpTrigger {
    pub id: Option<String>,
    pub route: HttpRoute,
    pub component: ComponentRef,
    pub executor: Option<HttpExecutor>,
}

/// A route is a path pattern, or `{ private = true }` for a component only reachable by
/// service chaining.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum HttpRoute {
    Path(String),
    Private(PrivateRoute),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PrivateRoute {
    pub private: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpExecutor {
    #[serde(rename = "type")]
    pub kind: String,
}

/// Spin also allows inline component tables here; nanohost supports references only.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
// Parsed so that a Spin manifest parses here, not all read (see the module's comment).
#[allow(dead_code)]
pub enum ComponentRef {
    Id(String),
    Inline(toml::Value),
}

/// `address` as in [`AppRedisConfig`]: its `Debug` shows it masked.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
// Parsed so that a Spin manifest parses here, not all read (see the module's comment).
#[allow(dead_code)]
pub struct RedisTrigger {
    pub id: Option<String>,
    pub channel: String,
    pub component: ComponentRef,
    /// Spin 3 lets a trigger override the application-wide address.
    pub address: Option<String>,
}

impl std::fmt::Debug for RedisTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTrigger")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("component", &self.component)
            .field("address", &self.address.as_deref().map(crate::redact::url))
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
// Parsed so that a Spin manifest parses here, not all read (see the module's comment).
#[allow(dead_code)]
pub struct MqttTrigger {
    pub id: Option<String>,
    pub topic: String,
    pub qos: Option<StringOrInt>,
    pub component: ComponentRef,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
// Parsed so that a Spin manifest parses here, not all read (see the module's comment).
#[allow(dead_code)]
pub struct Component {
    pub source: ComponentSource,
    pub description: Option<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Only used by `spin build`; kept so the same manifest parses here.
    pub build: Option<toml::Value>,
    /// Whether the dependencies reach the host capabilities this component is given (see
    /// `crate::dependencies`).
    #[serde(default)]
    pub dependencies_inherit_configuration: bool,
    /// Imports satisfied by other components, linked at load (`crate::dependencies`).
    #[serde(default)]
    pub dependencies: BTreeMap<String, ComponentDependency>,
}

/// A value of `[component.<id>.dependencies]`. Only a local component is supported; a registry
/// package or a URL is refused by `validate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ComponentDependency {
    Local(LocalDependency),
    Other(toml::Value),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalDependency {
    pub path: String,
    pub export: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
// Parsed so that a Spin manifest parses here, not all read (see the module's comment).
#[allow(dead_code)]
pub enum ComponentSource {
    Path(String),
    Remote(toml::Value),
}

impl HttpRoute {
    /// The path a `[[trigger.http]]` route is served on: `None` for `{ private = true }`, which
    /// only service chaining reaches.
    pub fn path(&self) -> Result<Option<&str>> {
        match self {
            HttpRoute::Path(p) => Ok(Some(p)),
            HttpRoute::Private(PrivateRoute { private: true }) => Ok(None),
            HttpRoute::Private(_) => {
                bail!("route must be a string pattern or '{{ private = true }}'")
            }
        }
    }
}

impl Manifest {
    /// Reads and validates a manifest. Errors name the file and say what is wrong.
    pub fn from_file(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        Manifest::parse(&text).with_context(|| format!("invalid manifest {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Manifest> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| anyhow::anyhow!(one_line(&e)))?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<()> {
        for (name, decl) in &self.variables {
            check_variable_name(name)
                .with_context(|| format!("invalid [variables] entry {name:?}"))?;
            match (&decl.default, decl.required) {
                (Some(_), true) => {
                    bail!("variable {name:?} may have `default` or `required = true`, not both")
                }
                (None, false) => {
                    bail!("variable {name:?} needs either `default` or `required = true`")
                }
                _ => {}
            }
        }
        for (id, component) in &self.component {
            component.validate(id)?;
        }
        if let Some(AppHttpConfig { base: Some(base) }) = &self.application.trigger.http {
            if !base.trim_end_matches('/').is_empty() {
                bail!("[application.trigger.http] base {base:?} is not supported (only \"/\")");
            }
        }
        self.validate_triggers()
    }

    /// Each trigger names a component of the manifest and has what its type needs.
    fn validate_triggers(&self) -> Result<()> {
        let check_ref = |kind: &str, r: &ComponentRef| -> Result<()> {
            match r {
                ComponentRef::Id(id) if self.component.contains_key(id) => Ok(()),
                ComponentRef::Id(id) => {
                    bail!("[[trigger.{kind}]] names component {id:?}, which is not defined")
                }
                ComponentRef::Inline(_) => bail!(
                    "[[trigger.{kind}]]: inline component tables are not supported by nanohost; \
                     define a [component.<id>] and reference it"
                ),
            }
        };
        for t in &self.trigger.http {
            check_ref("http", &t.component)?;
            if let Some(exec) = &t.executor {
                if exec.kind != "spin" {
                    bail!(
                        "[[trigger.http]] executor {:?} is not supported (only \"spin\")",
                        exec.kind
                    );
                }
            }
            match &t.route {
                HttpRoute::Path(p) => crate::routes::validate_route(p)?,
                HttpRoute::Private(PrivateRoute { private: true }) => {}
                HttpRoute::Private(_) => bail!("route = {{ private = false }} is not valid"),
            }
        }
        for t in &self.trigger.redis {
            check_ref("redis", &t.component)?;
            if t.address.is_none() && self.application.trigger.redis.is_none() {
                bail!(
                    "[[trigger.redis]] channel {:?} has no address: set [application.trigger.redis] address",
                    t.channel
                );
            }
        }
        for t in &self.trigger.mqtt {
            check_ref("mqtt", &t.component)?;
            if self.application.trigger.mqtt.is_none() {
                bail!("[[trigger.mqtt]] needs [application.trigger.mqtt] with an address");
            }
            if let Some(q) = &t.qos {
                parse_qos(q)?;
            }
        }
        Ok(())
    }

    /// The component id a trigger names (validated to exist).
    pub fn component_id(r: &ComponentRef) -> &str {
        match r {
            ComponentRef::Id(id) => id,
            ComponentRef::Inline(_) => unreachable!("rejected by validate"),
        }
    }

    /// A component's dependencies, their paths resolved against the manifest's folder.
    pub fn dependencies(
        &self,
        manifest_dir: &Path,
        id: &str,
    ) -> BTreeMap<String, crate::dependencies::Dependency> {
        self.component[id]
            .dependencies
            .iter()
            .map(|(name, dependency)| match dependency {
                ComponentDependency::Local(local) => (
                    name.clone(),
                    crate::dependencies::Dependency {
                        path: manifest_dir.join(&local.path),
                        export: local.export.clone(),
                    },
                ),
                ComponentDependency::Other(_) => unreachable!("rejected by validate"),
            })
            .collect()
    }

    /// The components some trigger runs: only those are compiled, as in Spin.
    pub fn used_components(&self) -> std::collections::BTreeSet<&str> {
        let http = self.trigger.http.iter().map(|t| &t.component);
        let redis = self.trigger.redis.iter().map(|t| &t.component);
        let mqtt = self.trigger.mqtt.iter().map(|t| &t.component);
        http.chain(redis)
            .chain(mqtt)
            .map(Manifest::component_id)
            .collect()
    }

    /// Keeps only the given components and the triggers that run them, as `spin up -c` does
    /// (Spin's `retain_components`): every id must exist, and a kept component may not chain
    /// (`http://<id>.spin.internal`) to one left out, nor to `*.spin.internal`.
    pub fn retain_components(&mut self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        for id in ids {
            if !self.component.contains_key(id) {
                bail!("Specified component {id:?} not found in application");
            }
        }
        let kept = |id: &str| ids.iter().any(|k| k == id);
        let triggered: Vec<&str> = self
            .used_components()
            .into_iter()
            .filter(|id| kept(id))
            .collect();
        for id in &triggered {
            for host in &self.component[*id].allowed_outbound_hosts {
                // Templates are not resolved yet: Spin skips what does not parse as a URI.
                let Some(target) = host
                    .split_once("://")
                    .and_then(|(_, rest)| rest.split(['/', ':']).next())
                    .and_then(|h| h.strip_suffix(".spin.internal"))
                else {
                    continue;
                };
                if host.contains("{{") || kept(target) {
                    continue;
                }
                if target == "*" {
                    bail!(
                        "Selected component '{id}' cannot use wildcard service chaining: \
                         allowed_outbound_hosts = [\"http://*.spin.internal\"]"
                    );
                }
                bail!(
                    "Selected component '{id}' cannot use service chaining to unselected \
                     component: allowed_outbound_hosts = [\"http://{target}.spin.internal\"]"
                );
            }
        }
        let triggered: std::collections::BTreeSet<String> =
            triggered.into_iter().map(str::to_string).collect();
        self.component.retain(|id, _| triggered.contains(id));
        self.trigger
            .http
            .retain(|t| triggered.contains(Manifest::component_id(&t.component)));
        self.trigger
            .redis
            .retain(|t| triggered.contains(Manifest::component_id(&t.component)));
        self.trigger
            .mqtt
            .retain(|t| triggered.contains(Manifest::component_id(&t.component)));
        Ok(())
    }

    /// Resolves a component's `source` against the manifest's folder, as Spin does.
    pub fn source_path(&self, manifest_dir: &Path, id: &str) -> PathBuf {
        match &self.component[id].source {
            ComponentSource::Path(p) => manifest_dir.join(p),
            ComponentSource::Remote(_) => unreachable!("rejected by validate"),
        }
    }
}

impl Component {
    /// What nanohost takes of a `[component.<id>]`: a local source, valid variable names, and
    /// local dependencies as Spin's manifest validation has them.
    fn validate(&self, id: &str) -> Result<()> {
        if let ComponentSource::Remote(_) = self.source {
            bail!("component {id:?}: only a local file path is supported as `source` by nanohost");
        }
        for name in self.variables.keys() {
            check_variable_name(name)
                .with_context(|| format!("component {id:?}: invalid variable {name:?}"))?;
        }
        crate::dependencies::check_disjoint(self.dependencies.keys().map(String::as_str))
            .with_context(|| format!("component {id:?} has invalid dependencies"))?;
        for (name, dependency) in &self.dependencies {
            let parsed: crate::dependencies::DependencyName = name
                .parse()
                .with_context(|| format!("component {id:?}: invalid dependency"))?;
            match dependency {
                ComponentDependency::Other(toml::Value::Table(t)) if t.contains_key("path") => {
                    bail!(
                        "component {id:?}: dependency {name:?}: a local dependency takes \
                             `path` and `export` only (as in Spin 3.6.3; Spin 4's per-dependency \
                             `inherit_configuration` is not supported: use \
                             `dependencies_inherit_configuration`)"
                    )
                }
                ComponentDependency::Other(_) => bail!(
                    "component {id:?}: dependency {name:?}: only a local `path` is supported \
                         by nanohost (not a registry package or a URL)"
                ),
                // As Spin's manifest validation: an export may only narrow an interface name.
                ComponentDependency::Local(LocalDependency {
                    export: Some(_), ..
                }) if matches!(
                    parsed,
                    crate::dependencies::DependencyName::Package {
                        interface: None,
                        ..
                    }
                ) =>
                {
                    bail!(
                        "component {id:?}: using an export to satisfy the package dependency \
                             {name:?} is not currently permitted"
                    )
                }
                ComponentDependency::Local(_) => {}
            }
        }
        Ok(())
    }
}

/// MQTT QoS as the trigger plugin takes it: "0", "1" or "2" (default 1).
pub fn parse_qos(q: &StringOrInt) -> Result<u8> {
    match q.to_string().trim() {
        "0" => Ok(0),
        "1" => Ok(1),
        "2" => Ok(2),
        other => bail!("mqtt qos {other:?} is not one of 0, 1, 2"),
    }
}

/// Spin's rule for variable names: lower-case ASCII letters, digits and underscores, starting
/// with a letter.
pub fn check_variable_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && !name.ends_with('_')
        && !name.contains("__");
    if !ok {
        bail!(
            "{name:?} is not a valid variable name (lower-case letters, digits and single \
             underscores, starting with a letter)"
        );
    }
    Ok(())
}

/// toml's errors span several lines with a source excerpt; the CLI promises one line.
pub(crate) fn one_line(e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(_) => {
            // Line numbers are more useful than byte offsets: recover them from the Display.
            let full = e.to_string();
            let line = full
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("TOML parse error at "))
                .map(|l| l.trim().to_string());
            match line {
                Some(l) => format!("{msg} (at {l})"),
                None => msg,
            }
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spin_toml::{mqtt_trigger_settings, SpinToml};

    /// Every part of the subset nanohost reads: app triggers, variables, a private route, a build.
    fn good() -> String {
        SpinToml::new("demo", "/api/...", "api", "target/api.wasm")
            .application("version = \"0.1.0\"")
            .application("[application.trigger.redis]\naddress = \"redis://{{ redis_host }}:6379\"")
            .variable("redis_host", r#"{ default = "127.0.0.1" }"#)
            .variable("token", "{ required = true, secret = true }")
            .field(r#"allowed_outbound_hosts = ["redis://{{ redis_host }}:6379"]"#)
            .field(r#"key_value_stores = ["default"]"#)
            .field(r#"variables = { token = "{{ token }}" }"#)
            .section("[component.api.build]\ncommand = \"cargo build\"")
            .section("[[trigger.http]]\nroute = { private = true }\ncomponent = \"api\"")
            .section("[[trigger.redis]]\nchannel = \"orders\"\ncomponent = \"api\"")
            .to_string()
    }

    #[test]
    fn parses_the_supported_subset() {
        let m = Manifest::parse(&good()).unwrap();
        assert_eq!(m.application.name, "demo");
        assert_eq!(m.trigger.http.len(), 2);
        assert_eq!(
            m.trigger.http[1].route,
            HttpRoute::Private(PrivateRoute { private: true })
        );
        assert_eq!(m.component["api"].key_value_stores, vec!["default"]);
        assert!(m.variables["token"].required);
        assert_eq!(
            m.source_path(Path::new("/app"), "api"),
            PathBuf::from("/app/target/api.wasm")
        );
    }

    #[test]
    fn unknown_field_is_an_error_naming_it() {
        let bad = good().replace("key_value_stores", "key_value_store");
        let e = Manifest::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("key_value_store"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn wrong_version_and_missing_component_are_errors() {
        let e = Manifest::parse(&good().replace("= 2\n", "= 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("spin_manifest_version"), "{e}");
        let e = Manifest::parse(&good().replace(
            "channel = \"orders\"\ncomponent = \"api\"",
            "channel = \"orders\"\ncomponent = \"nope\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"nope\""), "{e}");
    }

    #[test]
    fn variable_needs_default_or_required() {
        let e =
            Manifest::parse(&good().replace("{ default = \"127.0.0.1\" }", "{ secret = true }"))
                .unwrap_err()
                .to_string();
        assert!(e.contains("redis_host"), "{e}");
        assert!(check_variable_name("Bad").is_err());
        assert!(check_variable_name("good_1").is_ok());
    }

    #[test]
    fn mqtt_settings_accept_strings_like_the_plugin() {
        let manifest = SpinToml::new("m", "/...", "c", "c.wasm")
            .application(&mqtt_trigger_settings("mqtt://127.0.0.1:1883"))
            .section("[[trigger.mqtt]]\ncomponent = \"c\"\ntopic = \"orders/#\"\nqos = \"1\"");
        let m = Manifest::parse(&manifest.to_string()).unwrap();
        assert_eq!(
            parse_qos(m.trigger.mqtt[0].qos.as_ref().unwrap()).unwrap(),
            1
        );
        let e = parse_qos(&StringOrInt::String("3".into())).unwrap_err();
        assert!(e.to_string().contains("qos"));
    }
}
