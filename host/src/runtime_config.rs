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
//! Without a file, or if the file does not mention it, `default` is SQLite in
//! `.spin/sqlite_key_value.db` next to the manifest, as in Spin. `type = "spin"` with a `path` is
//! that file (relative to this file's folder); without a `path` it is in memory.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub key_value_store: BTreeMap<String, KeyValueStoreConfig>,
}

pub use crate::key_value::StoreConfig as KeyValueStoreConfig;

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
            store.validate(label)?;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_embedded() {
        let cfg = RuntimeConfig::parse("").unwrap();
        let locations = crate::key_value::Locations {
            runtime_config_dir: None,
            state_dir: Some("/app/.spin".into()),
        };
        assert!(matches!(
            &crate::key_value::effective_configs(&cfg.key_value_store, &locations)["default"],
            KeyValueStoreConfig::Spin { path: Some(p) } if p == Path::new("/app/.spin/sqlite_key_value.db")
        ));
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
        let locations = crate::key_value::Locations {
            runtime_config_dir: Some("/etc/app".into()),
            state_dir: None,
        };
        let stores = crate::key_value::effective_configs(&cfg.key_value_store, &locations);
        assert!(matches!(
            &stores["default"],
            KeyValueStoreConfig::Redis { url } if url.expose() == "redis://127.0.0.1:6379"
        ));
        // Relative paths are relative to the runtime config file, as in Spin.
        assert!(matches!(
            &stores["other"],
            KeyValueStoreConfig::Spin { path: Some(p) } if p == Path::new("/etc/app/kv.db")
        ));
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
