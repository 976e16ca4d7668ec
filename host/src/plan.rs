//! The configure stage, as Spin's factors have it (`configure_app` in each `crates/factor-*`):
//! from the manifest, the runtime config and the variables, each capability and each trigger
//! resolves and validates its own configuration once, in a pure step (no component compiled, no
//! connection opened, no file created), and the parts are gathered in one [`AppPlan`].
//! `nanohost up` opens what the plan says (`App::open`, the triggers' `start`); `nanohost check`
//! prints the same plan (`check`). Nothing else resolves a template or a label.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::app::{ComponentPlan, StateDir};
use crate::expressions::Resolver;
use crate::key_value::KeyValuePlan;
use crate::manifest::{Application, Manifest};
use crate::runtime_config::RuntimeConfig;
use crate::secret::Value;
use crate::trigger::http::HttpPlan;
use crate::trigger::mqtt::MqttPlan;
use crate::trigger::redis::RedisPlan;

/// What the configure stage reads.
pub(crate) struct Inputs<'a> {
    pub manifest: &'a Path,
    pub runtime_config: Option<&'a Path>,
    /// `--variable name=value`: wins over `SPIN_VARIABLE_*` in `env` and over defaults.
    pub variables: &'a [(String, String)],
    /// The environment (`std::env::var` for `up`; a table in tests).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub state_dir: &'a StateDir,
    /// `spin up -c`: only these components and their triggers; empty: all.
    pub components: &'a [String],
}

/// One application variable, resolved.
#[derive(Debug, Clone)]
pub(crate) struct VariablePlan {
    /// The value: a `secret = true` one is a `Value::Secret`, which `check` cannot print.
    pub value: Option<Value>,
    /// Given by `--variable` or `SPIN_VARIABLE_*`, not taken from `default`.
    pub set: bool,
    pub required: bool,
    pub secret: bool,
}

/// Something wrong with the app's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub message: String,
    /// Whether `up` stops on it. A value for an undeclared variable, or a component no trigger
    /// runs, does not stop `spin up`; a check reports it all the same.
    pub stops_up: bool,
}

/// Everything `up` opens and `check` prints, each capability's part resolved by itself.
#[derive(Default)]
pub(crate) struct AppPlan {
    /// `[application]`; `None` when the manifest could not be read.
    pub application: Option<Application>,
    /// Labels the runtime config defines, before Spin's implicit `default`.
    pub runtime_config_stores: Option<Vec<String>>,
    pub variables: BTreeMap<String, VariablePlan>,
    /// Every component of the manifest (after `-c`), whether a trigger runs it or not.
    pub components: BTreeMap<String, ComponentPlan>,
    pub key_value: KeyValuePlan,
    pub http: HttpPlan,
    pub redis: RedisPlan,
    pub mqtt: Option<MqttPlan>,
    pub problems: Vec<Problem>,
}

impl AppPlan {
    /// Records what went wrong with one part; `up` stops on it.
    fn fails(&mut self, e: anyhow::Error) {
        self.problems.push(Problem {
            message: format!("{e:#}"),
            stops_up: true,
        });
    }

    /// Keeps a part, or records why there is none.
    fn part<T: Default>(&mut self, part: Result<T>) -> T {
        part.unwrap_or_else(|e| {
            self.fails(e);
            T::default()
        })
    }

    /// The plan `up` may open: warns of what does not stop a start, errors with the first
    /// problem that does.
    pub fn ready(&self) -> Result<()> {
        for p in self.problems.iter().filter(|p| !p.stops_up) {
            tracing::warn!("{}; ignored", p.message);
        }
        match self.problems.iter().find(|p| p.stops_up) {
            Some(p) => Err(anyhow::anyhow!("{}", p.message)),
            None => Ok(()),
        }
    }
}

/// The configure stage: never fails, lists every problem it finds in the plan.
pub(crate) fn configure(inputs: &Inputs) -> AppPlan {
    let mut plan = AppPlan::default();
    let runtime_config = inputs.runtime_config.map(RuntimeConfig::from_file);
    let runtime_config = match runtime_config.transpose() {
        Ok(rc) => rc,
        Err(e) => {
            plan.fails(e);
            None
        }
    };
    plan.runtime_config_stores = runtime_config
        .as_ref()
        .map(|rc| rc.key_value_store.keys().cloned().collect());
    let manifest = Manifest::from_file(inputs.manifest).and_then(|mut m| {
        m.retain_components(inputs.components).map_err(|e| {
            e.context(
                "failed to resolve application with only components selected with --component",
            )
        })?;
        Ok(m)
    });
    let manifest = match manifest {
        Ok(m) => m,
        Err(e) => {
            plan.fails(e);
            return plan;
        }
    };
    plan.application = Some(manifest.application.clone());
    let resolver = configure_variables(&manifest, inputs, &mut plan);
    let manifest_dir = inputs.manifest.parent().unwrap_or(Path::new(""));
    configure_components(&manifest, &resolver, manifest_dir, &mut plan);
    let locations = crate::key_value::Locations {
        runtime_config_dir: inputs
            .runtime_config
            .and_then(Path::parent)
            .map(Path::to_path_buf),
        state_dir: inputs.state_dir.folder(manifest_dir),
    };
    let stores = runtime_config
        .map(|rc| rc.key_value_store)
        .unwrap_or_default();
    let used = plan.components.iter().filter(|(_, c)| c.used);
    let wanted: Vec<(&str, &[String])> = used
        .map(|(id, c)| (id.as_str(), c.key_value_stores.as_slice()))
        .collect();
    let key_value = KeyValuePlan::configure(&stores, &locations, &wanted);
    plan.key_value = plan.part(key_value);
    let http = HttpPlan::configure(&manifest);
    plan.http = plan.part(http);
    let redis = RedisPlan::configure(&manifest, &resolver);
    plan.redis = plan.part(redis);
    let mqtt = MqttPlan::configure(&manifest, &resolver);
    plan.mqtt = plan.part(mqtt);
    plan
}

/// Resolves `[variables]`: `--variable`, then `SPIN_VARIABLE_*`, then `default`.
fn configure_variables(manifest: &Manifest, inputs: &Inputs, plan: &mut AppPlan) -> Resolver {
    let mut explicit = HashMap::new();
    for (name, value) in inputs.variables {
        // Spin ignores such a value; for a check it means the deployment and the manifest
        // disagree on a name, so the value the deployment meant to set never arrives.
        if !manifest.variables.contains_key(name) {
            plan.problems.push(Problem {
                message: format!("variable {name:?} is set but [variables] does not declare it"),
                stops_up: false,
            });
        }
        explicit.insert(env_name(name), value.clone());
    }
    let lookup = |k: &str| explicit.get(k).cloned().or_else(|| (inputs.env)(k));
    let resolver = Resolver::new(&manifest.variables, lookup);
    let resolver = plan.part(resolver);
    for (name, decl) in &manifest.variables {
        let variable = VariablePlan {
            value: resolver.get(name).ok().cloned(),
            set: lookup(&env_name(name)).is_some(),
            required: decl.required,
            secret: decl.secret,
        };
        plan.variables.insert(name.clone(), variable);
    }
    resolver
}

/// Each component's own configuration; a problem in one no trigger runs does not stop `up`.
fn configure_components(
    manifest: &Manifest,
    resolver: &Resolver,
    manifest_dir: &Path,
    plan: &mut AppPlan,
) {
    let used = manifest.used_components();
    let ids: Vec<String> = manifest.component.keys().cloned().collect();
    for id in &ids {
        let (component, problems) =
            ComponentPlan::configure(manifest, id, resolver, &ids, manifest_dir);
        let used = used.contains(id.as_str());
        plan.problems.extend(problems.into_iter().map(|e| Problem {
            message: format!("component {id:?}: {e:#}"),
            stops_up: used,
        }));
        plan.components
            .insert(id.clone(), ComponentPlan { used, ..component });
    }
}

/// Spin's environment name for an application variable.
fn env_name(variable: &str) -> String {
    format!("SPIN_VARIABLE_{}", variable.to_ascii_uppercase())
}

impl StateDir {
    /// The folder of the default key-value store; `None`: in memory.
    fn folder(&self, manifest_dir: &Path) -> Option<PathBuf> {
        match self {
            StateDir::Beside => Some(manifest_dir.join(".spin")),
            StateDir::Path(p) => Some(p.clone()),
            StateDir::InMemory => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spin_toml::SpinToml;

    /// Secret values in every place an app can hold one, each in its own words so a leak names
    /// its source: a `secret = true` default, one given by `--variable`, a Redis store URL of
    /// the runtime config, and passwords written into the manifest's trigger settings (the MQTT
    /// trigger's password, a Redis trigger's address).
    const SECRETS: &[&str] = &[
        "default-s3cret",
        "variable-s3cret",
        "store-s3cret",
        "mqtt-s3cret",
        "trigger-s3cret",
    ];

    fn app() -> String {
        SpinToml::new("a", "/...", "c", "c.wasm")
            .application(
                "[application.trigger.mqtt]\naddress = \"mqtt://127.0.0.1:1883\"\n\
                 username = \"u\"\npassword = \"mqtt-s3cret\"",
            )
            .variable(
                "sweep_token",
                r#"{ default = "default-s3cret", secret = true }"#,
            )
            .variable("redis_password", r#"{ required = true, secret = true }"#)
            .field(r#"key_value_stores = ["default"]"#)
            .field(r#"allowed_outbound_hosts = ["redis://127.0.0.1:6379"]"#)
            .section(
                "[component.c.variables]\nsweep_token = \"{{ sweep_token }}\"\n\
                 redis_url = \"redis://:{{ redis_password }}@127.0.0.1:6379\"",
            )
            .section("[[trigger.mqtt]]\ntopic = \"orders\"\ncomponent = \"c\"")
            .section(
                "[[trigger.redis]]\naddress = \"redis://:trigger-s3cret@127.0.0.1:6379\"\n\
                 channel = \"orders\"\ncomponent = \"c\"",
            )
            .to_string()
    }

    #[test]
    fn debug_of_the_plan_shows_no_secret_and_the_guest_gets_each() {
        let dir = std::env::temp_dir().join(format!("nanohost-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join("spin.toml");
        std::fs::write(&manifest, app()).unwrap();
        let runtime_config = dir.join("runtime-config.toml");
        let store = "[key_value_store.default]\ntype = \"redis\"\n\
                     url = \"redis://:store-s3cret@127.0.0.1:6379\"";
        std::fs::write(&runtime_config, store).unwrap();
        let variables = [("redis_password".to_string(), "variable-s3cret".to_string())];
        let plan = configure(&Inputs {
            manifest: &manifest,
            runtime_config: Some(&runtime_config),
            variables: &variables,
            env: &|_| None,
            state_dir: &StateDir::InMemory,
            components: &[],
        });
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        assert_eq!(plan.redis.subscriptions.len(), 1);
        assert!(plan.mqtt.is_some());
        let shown = [
            format!("{:?}", plan.redis),
            format!("{:?}", plan.mqtt),
            format!("{:?}", plan.variables),
            format!("{:?}", plan.components),
            format!("{:?}", plan.key_value),
            format!("{:?}", Manifest::from_file(&manifest).unwrap()),
            format!("{:?}", RuntimeConfig::from_file(&runtime_config).unwrap()),
        ];
        std::fs::remove_dir_all(&dir).unwrap();
        for text in &shown {
            for secret in SECRETS {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        let c = &plan.components["c"].variables;
        assert_eq!(c["sweep_token"].expose(), "default-s3cret");
        assert_eq!(
            c["redis_url"].expose(),
            "redis://:variable-s3cret@127.0.0.1:6379"
        );
    }
}
