//! `nanohost check`: the plan `nanohost up` would open (`plan`), printed, without compiling a
//! component or opening a connection. The deploy checks (deploy/tools) call it so that the rules for
//! variables, templates and `allowed_outbound_hosts` live in one place, here, and not in a second
//! copy in Python.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::allowed_hosts::OutboundUrl;
use crate::app::{ComponentPlan, StateDir};
use crate::plan::{AppPlan, Inputs, VariablePlan};
use crate::secret::Value;

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
    /// None for a secret, or when the variable has no value; a URL without its password.
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
    /// Redis and MQTT: the resolved broker address, without its password.
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

/// Checks `manifest` with `variables` (as `nanohost up --variable`) over `env`: the plan
/// `nanohost up` would open (`plan::configure`), printed; and routes each of `paths` as the HTTP
/// trigger would.
pub fn check(
    manifest_path: &Path,
    runtime_config: Option<&Path>,
    variables: &[(String, String)],
    paths: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Report {
    let plan = crate::plan::configure(&Inputs {
        manifest: manifest_path,
        runtime_config,
        variables,
        env: &env,
        state_dir: &StateDir::Beside,
        components: &[],
    });
    let mut report = Report {
        application: plan.application.as_ref().map(|a| a.name.clone()),
        variables: plan.variables.iter().map(variable).collect(),
        triggers: triggers(&plan),
        components: plan.components.iter().map(component).collect(),
        runtime_config_stores: plan.runtime_config_stores.clone(),
        routes: BTreeMap::new(),
        errors: plan.problems.iter().map(|p| p.message.clone()).collect(),
    };
    if plan.application.is_some() && !paths.is_empty() {
        route(&plan, paths, &mut report);
    }
    report
}

fn variable((name, v): (&String, &VariablePlan)) -> (String, VariableReport) {
    let report = VariableReport {
        // A plain variable may still be a URL with a password (a Redis trigger's address).
        value: v
            .value
            .as_ref()
            .and_then(Value::plain)
            .map(crate::redact::url),
        set: v.set,
        required: v.required,
        secret: v.secret,
    };
    (name.clone(), report)
}

/// The triggers in the manifest's order within each type: HTTP, Redis, MQTT.
fn triggers(plan: &AppPlan) -> Vec<TriggerReport> {
    let trigger = |kind, component: &String| TriggerReport {
        kind,
        component: component.clone(),
        route: None,
        address: None,
        channel: None,
    };
    let http = plan
        .http
        .triggers
        .iter()
        .map(|(component, route)| TriggerReport {
            route: route.clone(),
            ..trigger("http", component)
        });
    let redis = plan.redis.subscriptions.iter().map(|s| TriggerReport {
        address: Some(crate::redact::url(&s.address)),
        channel: Some(s.channel.clone()),
        ..trigger("redis", &s.component)
    });
    let mqtt = plan.mqtt.iter().flat_map(|m| {
        m.topics.iter().map(|t| TriggerReport {
            address: Some(crate::redact::url(&m.address)),
            channel: Some(t.topic.clone()),
            ..trigger("mqtt", &t.component)
        })
    });
    http.chain(redis).chain(mqtt).collect()
}

fn component((id, c): (&String, &ComponentPlan)) -> (String, ComponentReport) {
    let report = ComponentReport {
        source: c.source_as_written.clone(),
        allowed_outbound_hosts: c.allowed_outbound_hosts.clone(),
        uses_variables: c.uses_variables.clone(),
        key_value_stores: c.key_value_stores.clone(),
        urls: urls(c),
    };
    (id.clone(), report)
}

/// Every component variable whose value is a `scheme://host` URL, and whether the component's
/// allowed hosts let it connect there. A URL made from a secret is checked all the same, and
/// shown as `***`.
fn urls(c: &ComponentPlan) -> Vec<UrlReport> {
    let values: BTreeMap<_, _> = c.variables.iter().collect();
    let mut urls = Vec::new();
    for (variable, value) in values {
        let url = value.expose();
        if let Some((scheme, _)) = url.split_once("://") {
            if OutboundUrl::parse(url, scheme).is_ok() {
                urls.push(UrlReport {
                    allowed: c.allowed_hosts.allows_url(url, scheme),
                    url: value.plain().map_or("***".into(), crate::redact::url),
                    variable: variable.clone(),
                });
            }
        }
    }
    urls
}

/// The component `nanohost up`'s router would send each of `paths` to.
fn route(plan: &AppPlan, paths: &[String], report: &mut Report) {
    match plan.http.router(str::to_string) {
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

    #[test]
    fn no_secret_is_reported() {
        let app = SpinToml::new("a", "/...", "c", "c.wasm")
            .application("[application.trigger.redis]\naddress = \"{{ redis_address }}\"")
            .variable("token", r#"{ required = true, secret = true }"#)
            // As in apps/fulfilment-redis: a plain variable whose URL carries a password.
            .variable(
                "redis_address",
                r#"{ default = "redis://:url-s3cret@127.0.0.1:6379" }"#,
            )
            .field(r#"allowed_outbound_hosts = ["redis://127.0.0.1:6379"]"#)
            .section(
                "[component.c.variables]\ntoken = \"{{ token }}\"\n\
                 url = \"redis://:{{ token }}@127.0.0.1:6379\"",
            )
            .section("[[trigger.redis]]\nchannel = \"orders\"\ncomponent = \"c\"")
            .to_string();
        let r = run(&app, &[("token", "token-s3cret")]);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let json = serde_json::to_string(&r).unwrap();
        for secret in ["token-s3cret", "url-s3cret"] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
        assert_eq!(r.variables["token"].value, None);
        let url = &r.components["c"].urls[0];
        assert_eq!((url.url.as_str(), url.allowed), ("***", true));
        let redis = &r.triggers[1];
        assert_eq!(
            redis.address.as_deref(),
            Some("redis://:***@127.0.0.1:6379")
        );
    }
}
