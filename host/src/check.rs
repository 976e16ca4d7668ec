//! `nanohost check`: what `nanohost up` would make of a manifest, without compiling a component
//! or opening a connection. The deploy checks (deploy/tools) call it so that the rules for
//! variables, templates and `allowed_outbound_hosts` live in one place, here, and not in a second
//! copy in Python.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::allowed_hosts::{AllowedHosts, OutboundUrl};
use crate::expressions::{Resolver, Template};
use crate::manifest::{HttpRoute, Manifest};
use crate::routes::Router;
use crate::runtime_config::RuntimeConfig;

/// The JSON `nanohost check` prints. Secret values are never printed.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub application: Option<String>,
    pub variables: BTreeMap<String, VariableReport>,
    pub triggers: Vec<TriggerReport>,
    pub components: BTreeMap<String, ComponentReport>,
    /// Labels the runtime config defines (`--runtime-config`), before Spin's implicit `default`.
    pub runtime_config_stores: Option<Vec<String>>,
    /// For each path asked about (`--route`), the component the HTTP router sends it to, if any.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, Option<String>>,
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct VariableReport {
    /// None for a secret, or when the variable has no value.
    pub value: Option<String>,
    /// Given by `--variable` or `SPIN_VARIABLE_*`, not taken from `default`.
    pub set: bool,
    pub required: bool,
    pub secret: bool,
}

#[derive(Debug, Serialize)]
pub struct TriggerReport {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub component: String,
    /// HTTP: the route; `None` for a private route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Redis and MQTT: the resolved broker address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Redis channel or MQTT topic, resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ComponentReport {
    /// `source` as written in the manifest.
    pub source: Option<String>,
    /// Entries with their templates resolved.
    pub allowed_outbound_hosts: Vec<String>,
    /// Application variables the component's templates refer to.
    pub uses_variables: BTreeSet<String>,
    pub key_value_stores: Vec<String>,
    /// Every component variable whose value is a `scheme://host` URL, and whether the
    /// component's `allowed_outbound_hosts` let it connect there.
    pub urls: Vec<UrlReport>,
}

#[derive(Debug, Serialize)]
pub struct UrlReport {
    pub variable: String,
    pub url: String,
    pub allowed: bool,
}

/// Checks `manifest` with `variables` (as `nanohost up --variable`) over `env`, the way
/// `nanohost up` resolves them: explicit values, then `SPIN_VARIABLE_*`, then defaults; and
/// routes each of `paths` as the HTTP trigger would.
pub fn check(
    manifest_path: &Path,
    runtime_config: Option<&Path>,
    variables: &[(String, String)],
    paths: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Report {
    let mut report = Report::default();
    if let Some(path) = runtime_config {
        match RuntimeConfig::from_file(path) {
            Ok(rc) => report.runtime_config_stores = Some(rc.key_value_store.into_keys().collect()),
            Err(e) => report.errors.push(format!("{e:#}")),
        }
    }
    let manifest = match Manifest::from_file(manifest_path) {
        Ok(m) => m,
        Err(e) => {
            report.errors.push(format!("{e:#}"));
            return report;
        }
    };
    report.application = Some(manifest.application.name.clone());

    let mut explicit = HashMap::new();
    for (name, value) in variables {
        // `up` only warns (Spin ignores such a value); for a check it means the deployment and the
        // manifest disagree on a name, so the value the deployment meant to set never arrives.
        if !manifest.variables.contains_key(name) {
            report.errors.push(format!(
                "variable {name:?} is set but [variables] does not declare it"
            ));
        }
        explicit.insert(env_name(name), value.clone());
    }
    let lookup = |k: &str| explicit.get(k).cloned().or_else(|| env(k));
    let resolver = match Resolver::new(&manifest.variables, lookup) {
        Ok(r) => r,
        Err(e) => {
            report.errors.push(format!("{e:#}"));
            Resolver::default()
        }
    };
    for (name, decl) in &manifest.variables {
        let value = resolver.get(name).ok().map(str::to_string);
        report.variables.insert(
            name.clone(),
            VariableReport {
                value: value.filter(|_| !decl.secret),
                set: lookup(&env_name(name)).is_some(),
                required: decl.required,
                secret: decl.secret,
            },
        );
    }

    let mut resolve = |what: String, template: &str| match resolver.resolve(template) {
        Ok(v) => Some(v),
        Err(e) => {
            report.errors.push(format!("{what}: {e:#}"));
            None
        }
    };
    let mut triggers = Vec::new();
    for t in &manifest.trigger.http {
        triggers.push(TriggerReport {
            kind: "http",
            component: Manifest::component_id(&t.component).to_string(),
            route: match &t.route {
                HttpRoute::Path(p) => Some(p.clone()),
                HttpRoute::Private(_) => None,
            },
            address: None,
            channel: None,
        });
    }
    let app_redis = manifest.application.trigger.redis.as_ref();
    for t in &manifest.trigger.redis {
        let address = t.address.as_ref().or(app_redis.map(|r| &r.address));
        triggers.push(TriggerReport {
            kind: "redis",
            component: Manifest::component_id(&t.component).to_string(),
            route: None,
            address: address.and_then(|a| resolve("[application.trigger.redis] address".into(), a)),
            channel: resolve("[[trigger.redis]] channel".into(), &t.channel),
        });
    }
    let mqtt_address = manifest
        .application
        .trigger
        .mqtt
        .as_ref()
        .and_then(|m| resolve("[application.trigger.mqtt] address".into(), &m.address));
    for t in &manifest.trigger.mqtt {
        triggers.push(TriggerReport {
            kind: "mqtt",
            component: Manifest::component_id(&t.component).to_string(),
            route: None,
            address: mqtt_address.clone(),
            channel: resolve("[[trigger.mqtt]] topic".into(), &t.topic),
        });
    }
    report.triggers = triggers;
    if !paths.is_empty() {
        route(&manifest, paths, &mut report);
    }

    let component_ids: Vec<String> = manifest.component.keys().cloned().collect();
    for (id, decl) in &manifest.component {
        let mut uses = BTreeSet::new();
        for template in decl.variables.values().chain(&decl.allowed_outbound_hosts) {
            if let Ok(t) = Template::parse(template) {
                uses.extend(t.variables().map(str::to_string));
            }
        }
        let allowed = AllowedHosts::parse(&decl.allowed_outbound_hosts, &resolver, &component_ids);
        let resolved_hosts = decl
            .allowed_outbound_hosts
            .iter()
            .map(|h| resolver.resolve(h).unwrap_or_else(|_| h.clone()))
            .collect();
        let mut urls = Vec::new();
        match (&allowed, resolver.component_variables(&decl.variables)) {
            (Ok(allowed), Ok(values)) => {
                let values: BTreeMap<_, _> = values.into_iter().collect();
                for (variable, value) in values {
                    if let Some((scheme, _)) = value.split_once("://") {
                        if OutboundUrl::parse(&value, scheme).is_ok() {
                            urls.push(UrlReport {
                                allowed: allowed.allows_url(&value, scheme),
                                url: value,
                                variable,
                            });
                        }
                    }
                }
            }
            (Err(e), _) => report.errors.push(format!("component {id:?}: {e:#}")),
            (_, Err(e)) => report.errors.push(format!("component {id:?}: {e:#}")),
        }
        report.components.insert(
            id.clone(),
            ComponentReport {
                source: match &decl.source {
                    crate::manifest::ComponentSource::Path(p) => Some(p.clone()),
                    crate::manifest::ComponentSource::Remote(_) => None,
                },
                allowed_outbound_hosts: resolved_hosts,
                uses_variables: uses,
                key_value_stores: decl.key_value_stores.clone(),
                urls,
            },
        );
    }
    report
}

/// The component `nanohost up`'s router would send each of `paths` to.
fn route(manifest: &Manifest, paths: &[String], report: &mut Report) {
    match Router::for_manifest(manifest, str::to_string) {
        Ok(router) => {
            for path in paths {
                let target = router.route(path).map(|m| m.target.clone());
                report.routes.insert(path.clone(), target);
            }
        }
        Err(e) => report.errors.push(format!("{e:#}")),
    }
}

/// `nanohost check`: the report as JSON on stdout; failure when it lists errors.
pub fn main(
    manifest: &Path,
    runtime_config: Option<&Path>,
    variables: &[(String, String)],
    paths: &[String],
) -> std::process::ExitCode {
    let report = check(manifest, runtime_config, variables, paths, |k| {
        std::env::var(k).ok()
    });
    match serde_json::to_string_pretty(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("error: cannot print the report: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if report.errors.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn env_name(variable: &str) -> String {
    format!("SPIN_VARIABLE_{}", variable.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spin_toml::SpinToml;

    fn run(manifest: &str, variables: &[(&str, &str)]) -> Report {
        run_routing(manifest, variables, &[])
    }

    fn run_routing(manifest: &str, variables: &[(&str, &str)], paths: &[&str]) -> Report {
        let paths: Vec<_> = paths.iter().map(|p| p.to_string()).collect();
        let dir = std::env::temp_dir().join(format!(
            "nanohost-check-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spin.toml");
        std::fs::write(&path, manifest).unwrap();
        let vars: Vec<_> = variables
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let report = check(&path, None, &vars, &paths, |_| None);
        std::fs::remove_dir_all(&dir).unwrap();
        report
    }

    /// App `a`: component `c` may reach the broker its variable `mqtt_address` names.
    fn mqtt_app() -> String {
        SpinToml::new("a", "/order/...", "c", "c.wasm")
            .variable("mqtt_address", r#"{ default = "mqtt://127.0.0.1:1883" }"#)
            .variable("password", r#"{ default = "", secret = true }"#)
            .field(r#"allowed_outbound_hosts = ["{{ mqtt_address }}"]"#)
            .section("[component.c.variables]\nmqtt_address = \"{{ mqtt_address }}\"")
            .section(r#"password = "{{ password }}""#)
            .to_string()
    }

    #[test]
    fn resolves_and_reports_reachable_urls() {
        let r = run(&mqtt_app(), &[("mqtt_address", "mqtt://mosquitto:1883")]);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let c = &r.components["c"];
        assert_eq!(c.allowed_outbound_hosts, ["mqtt://mosquitto:1883"]);
        assert_eq!(
            c.uses_variables.iter().collect::<Vec<_>>(),
            ["mqtt_address", "password"]
        );
        assert_eq!(c.urls.len(), 1);
        assert!(c.urls[0].allowed);
        assert!(r.variables["mqtt_address"].set);
        assert!(!r.variables["password"].set);
        assert_eq!(r.variables["password"].value, None);
        assert_eq!(r.triggers[0].route.as_deref(), Some("/order/..."));
    }

    #[test]
    fn a_url_outside_the_allowed_hosts_is_reported() {
        let manifest = mqtt_app().replace(
            r#"["{{ mqtt_address }}"]"#,
            r#"["mqtt://broker.example:1883"]"#,
        );
        let r = run(&manifest, &[]);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(!r.components["c"].urls[0].allowed);
    }

    /// Checking `manifest` with `variables` reports an error that contains `want`.
    fn fails_with(manifest: &str, variables: &[(&str, &str)], want: &str) {
        let r = run(manifest, variables);
        assert!(
            r.errors.iter().any(|e| e.contains(want)),
            "{want}: {:?}",
            r.errors
        );
    }

    #[test]
    fn undeclared_and_missing_variables_are_errors() {
        fails_with(&mqtt_app(), &[("nope", "x")], "\"nope\"");
        let required = mqtt_app().replace(
            r#"mqtt_address = { default = "mqtt://127.0.0.1:1883" }"#,
            "mqtt_address = { required = true }",
        );
        fails_with(&required, &[], "required variable");
    }

    #[test]
    fn bad_allowed_host_and_bad_template_are_errors() {
        let bad_host = mqtt_app().replace(r#"["{{ mqtt_address }}"]"#, r#"["mqtt://*a.b"]"#);
        fails_with(&bad_host, &[], "component \"c\"");
        let undeclared = mqtt_app().replace("{{ password }}", "{{ undeclared }}");
        fails_with(&undeclared, &[], "undeclared");
    }

    #[test]
    fn an_unreadable_manifest_is_an_error() {
        let r = check(Path::new("/nonexistent/spin.toml"), None, &[], &[], |_| {
            None
        });
        assert_eq!(r.application, None);
        assert_eq!(r.errors.len(), 1);
    }

    #[test]
    fn routes_paths_as_the_http_trigger_does() {
        let app = SpinToml::new("a", "/order/...", "c", "c.wasm")
            .section("[[trigger.http]]\nroute = \"/sweep\"\ncomponent = \"s\"")
            .section("[component.s]\nsource = \"s.wasm\"")
            .section("[[trigger.http]]\nroute = { private = true }\ncomponent = \"p\"")
            .section("[component.p]\nsource = \"p.wasm\"")
            .to_string();
        let r = run_routing(
            &app,
            &[],
            &["/sweep", "/order/1", "/order", "/sweep/x", "/"],
        );
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let served: Vec<_> = r
            .routes
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_deref()))
            .collect();
        assert_eq!(
            served,
            [
                ("/", None),
                ("/order", Some("c")),
                ("/order/1", Some("c")),
                ("/sweep", Some("s")),
                ("/sweep/x", None)
            ]
        );
    }
}
