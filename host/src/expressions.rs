//! Spin's variable templates: `"redis://{{ redis_host }}:6379"`.
//!
//! Application variables (`[variables]`) get their value from `SPIN_VARIABLE_<NAME>` in the
//! environment first, then from `default`; a `required` variable with no value stops the app at
//! start-up, as in Spin. Component variables (`[component.x.variables]`) are templates over the
//! application variables. Everything is resolved once at start-up: Spin's environment provider
//! also reads the environment of the host process, which does not change while it runs.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};

use crate::manifest::VariableDecl;
use crate::secret::{Secret, Value};

/// A parsed template: literal text interleaved with variable references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

impl Template {
    pub fn parse(s: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("unterminated `{{{{` in template {s:?}"))?;
            let name = after[..end].trim();
            crate::manifest::check_variable_name(name)
                .with_context(|| format!("in template {s:?}"))?;
            parts.push(Part::Var(name.to_string()));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            bail!("unmatched `}}}}` in template {s:?}");
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    #[cfg(test)]
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    pub fn render(&self, lookup: impl Fn(&str) -> Result<String>) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Var(v) => out.push_str(&lookup(v)?),
            }
        }
        Ok(out)
    }
}

/// The resolved application variables; a `secret = true` one is held as a [`Secret`], so a
/// `{:?}` of the resolver shows `***` for it.
#[derive(Debug, Default)]
pub struct Resolver {
    values: HashMap<String, Value>,
}

impl Resolver {
    /// Resolves every `[variables]` entry from `env` (normally `std::env::vars`) and defaults.
    /// All missing required variables are reported together.
    pub fn new(
        decls: &BTreeMap<String, VariableDecl>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Resolver> {
        let mut values = HashMap::new();
        let mut missing = Vec::new();
        for (name, decl) in decls {
            let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
            let Some(v) = env(&env_name).or_else(|| decl.default.clone()) else {
                missing.push(format!("{name} (set {env_name})"));
                continue;
            };
            let value = if decl.secret {
                // The type keeps it out of what nanohost prints; this keeps it out of what
                // libraries print (an error quoting a URL made from it).
                crate::redact::register_secret(&v);
                Value::Secret(Secret::from(v))
            } else {
                Value::Plain(v)
            };
            values.insert(name.clone(), value);
        }
        if !missing.is_empty() {
            bail!("required variable(s) not set: {}", missing.join(", "));
        }
        Ok(Resolver { values })
    }

    pub fn get(&self, name: &str) -> Result<&Value> {
        self.values
            .get(name)
            .with_context(|| format!("no variable named {name:?} in [variables]"))
    }

    /// Renders a template over the application variables: secret when a secret variable went
    /// into it.
    pub fn value(&self, template: &str) -> Result<Value> {
        let template = Template::parse(template)?;
        let secret = template
            .variables()
            .any(|v| matches!(self.values.get(v), Some(Value::Secret(_))));
        let text = template.render(|v| self.get(v).map(|v| v.expose().to_string()))?;
        Ok(if secret {
            Value::Secret(Secret::from(text))
        } else {
            Value::Plain(text)
        })
    }

    /// Renders a setting that is shown (an address, a topic, an allowed host) as plain text: a
    /// secret variable in it comes out in the clear, so anything that may hold one (a password,
    /// a component variable) goes through [`Resolver::value`] instead.
    pub fn resolve(&self, template: &str) -> Result<String> {
        Template::parse(template)?.render(|v| self.get(v).map(|v| v.expose().to_string()))
    }

    /// Resolves a component's `variables` table (templates over application variables).
    pub fn component_variables(
        &self,
        vars: &BTreeMap<String, String>,
    ) -> Result<HashMap<String, Value>> {
        vars.iter()
            .map(|(k, t)| {
                let v = self
                    .value(t)
                    .with_context(|| format!("component variable {k:?}"))?;
                Ok((k.clone(), v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls(items: &[(&str, Option<&str>, bool)]) -> BTreeMap<String, VariableDecl> {
        items
            .iter()
            .map(|(n, d, req)| (n.to_string(), decl(*d, *req, false)))
            .collect()
    }

    fn decl(default: Option<&str>, required: bool, secret: bool) -> VariableDecl {
        VariableDecl {
            default: default.map(str::to_string),
            required,
            secret,
            description: None,
        }
    }

    #[test]
    fn templates_parse_and_render() {
        let t = Template::parse("redis://{{ host }}:{{port}}/x").unwrap();
        assert!(!t.is_literal());
        assert_eq!(t.variables().collect::<Vec<_>>(), vec!["host", "port"]);
        let out = t
            .render(|v| Ok(if v == "host" { "h".into() } else { "1".into() }))
            .unwrap();
        assert_eq!(out, "redis://h:1/x");
        assert!(Template::parse("plain").unwrap().is_literal());
        assert!(Template::parse("{{ Bad }}").is_err());
        assert!(Template::parse("{{ open").is_err());
        assert!(Template::parse("x }}").is_err());
    }

    #[test]
    fn env_overrides_default_and_required_must_be_set() {
        let d = decls(&[("host", Some("127.0.0.1"), false), ("token", None, true)]);
        let env = |k: &str| match k {
            "SPIN_VARIABLE_HOST" => Some("10.0.0.1".to_string()),
            "SPIN_VARIABLE_TOKEN" => Some("t".to_string()),
            _ => None,
        };
        let r = Resolver::new(&d, env).unwrap();
        assert_eq!(r.get("host").unwrap().plain(), Some("10.0.0.1"));
        assert_eq!(r.resolve("{{ token }}-x").unwrap(), "t-x");

        let r = Resolver::new(&decls(&[("host", Some("127.0.0.1"), false)]), |_| None).unwrap();
        assert_eq!(r.get("host").unwrap().plain(), Some("127.0.0.1"));

        let e = Resolver::new(&d, |_| None).unwrap_err().to_string();
        assert!(
            e.contains("token") && e.contains("SPIN_VARIABLE_TOKEN"),
            "{e}"
        );
    }

    #[test]
    fn component_variables_are_templates_over_app_variables() {
        let r = Resolver::new(&decls(&[("host", Some("h"), false)]), |_| None).unwrap();
        let mut vars = BTreeMap::new();
        vars.insert("url".to_string(), "http://{{ host }}/".to_string());
        vars.insert("fixed".to_string(), "lit".to_string());
        let out = r.component_variables(&vars).unwrap();
        assert_eq!(out["url"].plain(), Some("http://h/"));
        assert_eq!(out["fixed"].plain(), Some("lit"));
        vars.insert("bad".to_string(), "{{ nope }}".to_string());
        assert!(r.component_variables(&vars).is_err());
    }

    #[test]
    fn a_secret_and_what_is_made_from_it_stay_secret() {
        let mut d = decls(&[("host", Some("h"), false)]);
        d.insert("password".into(), decl(Some("hunter2-pw"), false, true));
        let r = Resolver::new(&d, |_| None).unwrap();
        assert!(!format!("{r:?}").contains("hunter2"), "{r:?}");
        assert_eq!(r.get("password").unwrap().plain(), None);
        assert_eq!(r.get("password").unwrap().expose(), "hunter2-pw");
        let url = r.value("redis://:{{ password }}@{{ host }}:6379").unwrap();
        assert_eq!(url.plain(), None, "a template over a secret is secret");
        assert_eq!(url.expose(), "redis://:hunter2-pw@h:6379");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(
            r.value("redis://{{ host }}").unwrap().plain(),
            Some("redis://h")
        );
    }
}
