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

/// The resolved application variables.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    values: HashMap<String, String>,
    secret: std::collections::HashSet<String>,
}

impl Resolver {
    /// Resolves every `[variables]` entry from `env` (normally `std::env::vars`) and defaults.
    /// All missing required variables are reported together.
    pub fn new(
        decls: &BTreeMap<String, VariableDecl>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Resolver> {
        let mut values = HashMap::new();
        let mut secret = std::collections::HashSet::new();
        let mut missing = Vec::new();
        for (name, decl) in decls {
            let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
            match env(&env_name).or_else(|| decl.default.clone()) {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None => missing.push(format!("{name} (set {env_name})")),
            }
            if decl.secret {
                secret.insert(name.clone());
            }
        }
        if !missing.is_empty() {
            bail!("required variable(s) not set: {}", missing.join(", "));
        }
        // From here on, no log line or error message shows a secret's value.
        for name in &secret {
            if let Some(v) = values.get(name) {
                crate::redact::register_secret(v);
            }
        }
        Ok(Resolver { values, secret })
    }

    pub fn get(&self, name: &str) -> Result<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("no variable named {name:?} in [variables]"))
    }

    pub fn is_secret(&self, name: &str) -> bool {
        self.secret.contains(name)
    }

    /// Renders a template over the application variables.
    pub fn resolve(&self, template: &str) -> Result<String> {
        Template::parse(template)?.render(|v| self.get(v).map(str::to_string))
    }

    /// Resolves a component's `variables` table (templates over application variables).
    pub fn component_variables(
        &self,
        vars: &BTreeMap<String, String>,
    ) -> Result<HashMap<String, String>> {
        vars.iter()
            .map(|(k, t)| {
                let v = self
                    .resolve(t)
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
            .map(|(n, d, req)| {
                (
                    n.to_string(),
                    VariableDecl {
                        default: d.map(str::to_string),
                        required: *req,
                        secret: false,
                        description: None,
                    },
                )
            })
            .collect()
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
        assert_eq!(r.get("host").unwrap(), "10.0.0.1");
        assert_eq!(r.resolve("{{ token }}-x").unwrap(), "t-x");

        let r = Resolver::new(&decls(&[("host", Some("127.0.0.1"), false)]), |_| None).unwrap();
        assert_eq!(r.get("host").unwrap(), "127.0.0.1");

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
        assert_eq!(out["url"], "http://h/");
        assert_eq!(out["fixed"], "lit");
        vars.insert("bad".to_string(), "{{ nope }}".to_string());
        assert!(r.component_variables(&vars).is_err());
    }
}
