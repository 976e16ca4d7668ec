//! Spin's own store: one SQLite table, the schema of spin `crates/key-value-spin`, so a file
//! written by `spin up` and one written by nanohost are interchangeable.
//!
//! Durability and speed, against Spin 3.6.3 (one connection behind a mutex, rollback journal
//! `DELETE`, `synchronous = FULL`, each call its own transaction inside `block_in_place`):
//! - a file store uses the write-ahead log with `synchronous = FULL`: the log is synced before a
//!   commit returns, so an answered write survives a process kill and a power cut. That is at
//!   least Spin's guarantee (its `DELETE` journal with `FULL` can roll the last commit back
//!   after a power cut, since the journal's unlink is not synced), for one sync per commit
//!   instead of several;
//! - the connection lives on a thread of its own, so no SQLite call (and no sync) runs on the
//!   async workers. Requests queue to it; it runs every request waiting in one transaction, each
//!   request inside a savepoint (a failing request is undone alone), commits once, and only then
//!   answers them all: concurrent writers share one sync, and no caller hears "stored" before the
//!   commit holds. Reads wait for that commit too, so nothing uncommitted is ever seen.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use rusqlite::{named_params, params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::{Backend, BackendError};

/// At most this many requests share one transaction, so that one commit stays short.
const MAX_BATCH: usize = 256;

const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                      ON CONFLICT (store, key) DO UPDATE SET value = ?3";
const SELECT: &str = "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2";
const DELETE: &str = "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2";

pub struct SqliteStore {
    /// The `store` column: the label.
    name: Arc<str>,
    /// To the connection's thread; it stops once every handle is dropped.
    jobs: mpsc::Sender<Box<dyn Job>>,
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
                let conn = Connection::open(path)
                    .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
                // Concurrent hosts on one file (two apps sharing a state dir) wait instead of failing.
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
                anyhow::ensure!(
                    mode.eq_ignore_ascii_case("wal"),
                    "{}: SQLite kept journal mode {mode:?} instead of WAL",
                    path.display()
                );
                conn
            }
            None => Connection::open_in_memory()?,
        };
        // FULL, not NORMAL: with NORMAL a commit in WAL mode may be lost to a power cut.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
            [],
        )?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("kv-sqlite-{label}"))
            .spawn(move || serve(conn, queue))?;
        Ok(SqliteStore {
            name: label.into(),
            jobs,
        })
    }

    /// Runs `work` on the connection's thread, inside a transaction shared with the requests
    /// queued beside it, and answers once that transaction is committed.
    async fn run<R: Send + 'static>(
        &self,
        writes: bool,
        work: impl FnOnce(&Connection, &str) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, BackendError> {
        let (reply, answer) = oneshot::channel();
        let name = self.name.clone();
        let job = Request {
            writes,
            work: Some(move |c: &Connection| work(c, &name).map_err(BackendError::new)),
            result: None,
            reply,
        };
        self.jobs
            .send(Box::new(job))
            .map_err(|_| BackendError("the store's connection is closed".into()))?;
        answer
            .await
            .map_err(|_| BackendError("the store's connection stopped".into()))?
    }
}

#[async_trait::async_trait]
impl Backend for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let key = key.to_string();
        self.run(false, move |c, name| {
            c.prepare_cached(SELECT)?
                .query_row(params![name, key], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.set_many(vec![(key.to_string(), value.to_vec())]).await
    }

    /// All or nothing: one savepoint, as Spin's one transaction.
    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), BackendError> {
        self.run(true, move |c, name| {
            let mut upsert = c.prepare_cached(UPSERT)?;
            for (key, value) in &pairs {
                upsert.execute(params![name, key, value])?;
            }
            Ok(())
        })
        .await
    }

    /// One snapshot: every value as of the same commit. A missing key is `None`.
    async fn get_many(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, BackendError> {
        self.run(false, move |c, name| {
            let mut select = c.prepare_cached(SELECT)?;
            keys.into_iter()
                .map(|key| {
                    let value = select
                        .query_row(params![name, key], |r| r.get(0))
                        .optional()?;
                    Ok((key, value))
                })
                .collect()
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.delete_many(vec![key.to_string()]).await
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), BackendError> {
        self.run(true, move |c, name| {
            let mut delete = c.prepare_cached(DELETE)?;
            for key in &keys {
                delete.execute(params![name, key])?;
            }
            Ok(())
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool, BackendError> {
        self.get(key).await.map(|v| v.is_some())
    }

    async fn get_keys(&self) -> Result<Vec<String>, BackendError> {
        self.run(false, |c, name| {
            c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?
                .query_map(params![name], |r| r.get(0))?
                .collect()
        })
        .await
    }

    /// Spin's encoding: the counter is 8 little-endian bytes; an absent key counts as 0. The
    /// read and the write are one step: requests run one after another on the connection.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, BackendError> {
        let key = key.to_string();
        let outcome = self
            .run(true, move |c, name| {
                let current: Option<Vec<u8>> = c
                    .prepare_cached(SELECT)?
                    .query_row(params![name, key], |r| r.get(0))
                    .optional()?;
                let current = match current {
                    None => 0,
                    Some(bytes) => match <[u8; 8]>::try_from(bytes) {
                        Ok(bytes) => i64::from_le_bytes(bytes),
                        Err(_) => return Ok(Err(format!("the value of {key:?} is not a counter"))),
                    },
                };
                let Some(next) = current.checked_add(delta) else {
                    return Ok(Err(format!("incrementing {key:?} overflows")));
                };
                c.prepare_cached(UPSERT)?.execute(params![
                    name,
                    key,
                    next.to_le_bytes().to_vec()
                ])?;
                Ok(Ok(next))
            })
            .await?;
        outcome.map_err(BackendError)
    }

    /// An absent `old` is an unconditional upsert, as in Spin (see [`Backend::swap_if`]).
    async fn swap_if(
        &self,
        key: &str,
        old: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError> {
        let Some(old) = old.map(<[u8]>::to_vec) else {
            return self.set(key, new).await.map(|()| true);
        };
        let (key, new) = (key.to_string(), new.to_vec());
        self.run(true, move |c, name| {
            c.prepare_cached(
                "UPDATE spin_key_value SET value = :new
                 WHERE store = :store AND key = :key AND value = :old",
            )?
            .execute(named_params! {
                ":new": new, ":store": name, ":key": key, ":old": old,
            })
            .map(|rows| rows == 1)
        })
        .await
    }
}

/// A request queued to the connection's thread.
trait Job: Send {
    fn writes(&self) -> bool;
    /// Runs the request on the open transaction; false if it failed (and must be undone).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the transaction ended: its own result if `commit` holds.
    fn answer(self: Box<Self>, commit: Result<(), BackendError>);
}

struct Request<W, R> {
    writes: bool,
    work: Option<W>,
    result: Option<Result<R, BackendError>>,
    reply: oneshot::Sender<Result<R, BackendError>>,
}

impl<W, R> Job for Request<W, R>
where
    W: FnOnce(&Connection) -> Result<R, BackendError> + Send,
    R: Send,
{
    fn writes(&self) -> bool {
        self.writes
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = catch_unwind(AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|_| Err(BackendError("the store's request panicked".into())));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, commit: Result<(), BackendError>) {
        let result = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(BackendError("the request was not run".into())),
            (Err(e), _) => Err(e),
        };
        // The caller may have gone (its guest timed out); what it asked is stored regardless.
        let _ = self.reply.send(result);
    }
}

/// The connection's thread: every request waiting becomes one transaction.
fn serve(conn: Connection, queue: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = run_batch(&conn, &mut batch);
        for job in batch {
            job.answer(commit.clone());
        }
    }
}

/// Runs `batch` in one transaction and commits it; each writing request in a savepoint of its
/// own, so that one that fails is undone without undoing the others.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), BackendError> {
    let writes = batch.iter().any(|j| j.writes());
    // IMMEDIATE: take the write lock now, so another process on the file cannot make this
    // transaction fail half-way when it upgrades from reading to writing.
    let begin = if writes { "BEGIN IMMEDIATE" } else { "BEGIN" };
    conn.execute_batch(begin).map_err(BackendError::new)?;
    let ran = batch.iter_mut().try_for_each(|job| {
        if !job.writes() {
            job.run(conn);
            return Ok(());
        }
        conn.execute_batch("SAVEPOINT request")?;
        let end = if job.run(conn) {
            "RELEASE request"
        } else {
            "ROLLBACK TO request; RELEASE request"
        };
        conn.execute_batch(end)
    });
    let ended = ran.and_then(|()| conn.execute_batch("COMMIT"));
    if let Err(e) = ended {
        // Some errors (a full disk, an I/O error) end the transaction by themselves; otherwise
        // nothing of it may stay.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        return Err(BackendError::new(format!(
            "the transaction was rolled back: {e}"
        )));
    }
    Ok(())
}
