//! Spin's own store: one SQLite table, the schema of spin `crates/key-value-spin`, so a file
//! written by `spin up` and one written by nanohost are interchangeable.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{named_params, params, Connection, OptionalExtension};

use super::BackendError;

pub struct SqliteStore {
    /// The `store` column: the label.
    name: String,
    /// One connection, as in Spin; the mutex makes each operation (and each increment's read
    /// and write) one atomic step.
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// The file at `path` (its folder created if needed), or a private in-memory database.
    pub fn open(label: &str, path: Option<&Path>) -> anyhow::Result<SqliteStore> {
        let conn = match path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
                }
                Connection::open(path)
                    .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?
            }
            None => Connection::open_in_memory()?,
        };
        // Concurrent hosts on one file (two apps sharing a state dir) wait instead of failing.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
            [],
        )?;
        Ok(SqliteStore {
            name: label.to_string(),
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic inside a statement leaves SQLite itself consistent.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.conn()
            .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")
            .and_then(|mut s| {
                s.query_row(params![self.name, key], |r| r.get(0))
                    .optional()
            })
            .map_err(BackendError::new)
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = ?3",
            )
            .and_then(|mut s| s.execute(params![self.name, key, value]))
            .map(drop)
            .map_err(BackendError::new)
    }

    pub fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.conn()
            .prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")
            .and_then(|mut s| s.execute(params![self.name, key]))
            .map(drop)
            .map_err(BackendError::new)
    }

    pub fn exists(&self, key: &str) -> Result<bool, BackendError> {
        self.get(key).map(|v| v.is_some())
    }

    pub fn get_keys(&self) -> Result<Vec<String>, BackendError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")
            .map_err(BackendError::new)?;
        let keys = stmt
            .query_map(params![self.name], |r| r.get(0))
            .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
            .map_err(BackendError::new);
        keys
    }

    /// Spin's encoding: the counter is 8 little-endian bytes; an absent key counts as 0.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, BackendError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(BackendError::new)?;
        let current: Option<Vec<u8>> = tx
            .query_row(
                "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                params![self.name, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(BackendError::new)?;
        let current = match current {
            None => 0,
            Some(bytes) => i64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| BackendError(format!("the value of {key:?} is not a counter")))?,
            ),
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| BackendError(format!("incrementing {key:?} overflows")))?;
        tx.execute(
            "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (store, key) DO UPDATE SET value = ?3",
            params![self.name, key, next.to_le_bytes().to_vec()],
        )
        .map_err(BackendError::new)?;
        tx.commit().map_err(BackendError::new)?;
        Ok(next)
    }

    /// See [`super::Store::swap_if`]: an absent `old` is an unconditional upsert, as in Spin.
    pub fn swap_if(&self, key: &str, old: Option<&[u8]>, new: &[u8]) -> Result<bool, BackendError> {
        match old {
            Some(old) => self
                .conn()
                .prepare_cached(
                    "UPDATE spin_key_value SET value = :new
                     WHERE store = :store AND key = :key AND value = :old",
                )
                .and_then(|mut s| {
                    s.execute(named_params! {
                        ":new": new, ":store": self.name, ":key": key, ":old": old,
                    })
                })
                .map(|rows| rows == 1)
                .map_err(BackendError::new),
            None => self.set(key, new).map(|()| true),
        }
    }
}
