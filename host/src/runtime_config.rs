//! Spin's runtime config file (`--runtime-config-file` in Spin), the key-value part of it.
//!
//! ```toml
//! [key_value_store.default]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//!
//! [key_value_store.cache]
//! type = "spin"        # the embedded store
//! ```
//!
//! Without a file, or for a label the file does not mention, `default` is the embedded store.
//! Spin's `spin` type is a SQLite file; nanohost's embedded store is in memory and does **not**
//! persist across restarts (a `path` is accepted for compatibility and ignored).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub key_value_store: BTreeMap<String, KeyValueStoreConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyValueStoreConfig {
    /// The embedded in-memory store.
    Spin {
        #[serde(default)]
        path: Option<String>,
    },
    Redis {
        url: String,
    },
}

impl RuntimeConfig {
    pub fn from_file(path: &Path) -> Result<RuntimeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config {}", path.display()))?;
        RuntimeConfig::parse(&text)
            .with_context(|| format!("invalid runtime config {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<RuntimeConfig> {
        let cfg: RuntimeConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!(crate::manifest::one_line(&e)))?;
        for (label, store) in &cfg.key_value_store {
            if let KeyValueStoreConfig::Redis { url } = store {
                let parsed = url::Url::parse(url).with_context(|| {
                    format!("key_value_store.{label}: url {url:?} is not a valid URL")
                })?;
                if !matches!(parsed.scheme(), "redis" | "rediss") {
                    bail!("key_value_store.{label}: url {url:?} must start with redis://");
                }
            }
        }
        Ok(cfg)
    }

    /// The configuration of every store label: those in the file, plus the embedded `default`.
    pub fn stores(&self) -> BTreeMap<String, KeyValueStoreConfig> {
        let mut out = self.key_value_store.clone();
        out.entry("default".to_string())
            .or_insert(KeyValueStoreConfig::Spin { path: None });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_embedded() {
        let cfg = RuntimeConfig::parse("").unwrap();
        assert_eq!(
            cfg.stores()["default"],
            KeyValueStoreConfig::Spin { path: None }
        );
    }

    #[test]
    fn redis_and_spin_stores() {
        let cfg = RuntimeConfig::parse(
            r#"
[key_value_store.default]
type = "redis"
url = "redis://127.0.0.1:6379"
[key_value_store.other]
type = "spin"
path = "kv.db"
"#,
        )
        .unwrap();
        let stores = cfg.stores();
        assert_eq!(
            stores["default"],
            KeyValueStoreConfig::Redis {
                url: "redis://127.0.0.1:6379".into()
            }
        );
        assert!(matches!(stores["other"], KeyValueStoreConfig::Spin { .. }));
    }

    #[test]
    fn bad_configs_are_clear_one_line_errors() {
        for (text, needle) in [
            (
                "[key_value_store.default]\ntype = \"azure_cosmos\"\n",
                "azure_cosmos",
            ),
            ("[key_value_store.default]\ntype = \"redis\"\n", "url"),
            (
                "[key_value_store.default]\ntype = \"redis\"\nurl = \"http://x\"\n",
                "redis://",
            ),
            (
                "[sqlite_database.default]\ntype = \"spin\"\n",
                "sqlite_database",
            ),
        ] {
            let e = format!("{:#}", RuntimeConfig::parse(text).unwrap_err());
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
