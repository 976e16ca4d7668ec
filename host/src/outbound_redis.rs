//! `fermyon:spin/redis@2.0.0`: outbound Redis from components.
//!
//! An address outside `allowed_outbound_hosts` gets `invalid-address`, as in Spin. Unlike
//! Spin, which opens a connection per `open`, connections are pooled per address and shared by
//! all instances: a redis-rs connection manager pipelines concurrent commands over one socket
//! and reconnects after Redis restarts. Nothing a guest can observe differs, except that a
//! request pays no connection set-up.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, FromRedisValue, Value};
use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};

use self::bindings::fermyon::spin2_0_0::redis::{self as v2, Error, RedisParameter, RedisResult};
use crate::allowed_hosts::OutboundGate;

crate::bindings::capability!("nanohost:host/outbound-redis", OutboundRedis, OutboundRedisInstance, {
    "fermyon:spin/redis.connection": super::RedisConnection,
});

/// Per-instance state: what this component may reach, the app's pool, its open connections.
pub struct OutboundRedisInstance {
    gate: OutboundGate,
    pool: Arc<Pool>,
    table: ResourceTable,
}

impl OutboundRedisInstance {
    pub fn new(gate: OutboundGate, pool: Arc<Pool>) -> OutboundRedisInstance {
        OutboundRedisInstance {
            gate,
            pool,
            table: ResourceTable::new(),
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection manager (it reconnects by itself after Redis restarts), failing after a
/// few seconds rather than hanging. Errors never show the URL's password.
pub async fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let shown = crate::redact::url(url);
    let client = redis::Client::open(url)
        .map_err(|e| anyhow::anyhow!("invalid Redis URL {shown:?}: {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(Duration::from_secs(30))
        .set_number_of_retries(2)
        .set_max_delay(500);
    client
        .get_connection_manager_with_config(config)
        .await
        // The redis error's Display already includes its I/O cause: no `context` chain.
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to Redis at {shown}: {}",
                crate::redact::message(&e.to_string())
            )
        })
}

/// Connections by address, shared across instances. Nothing is locked while connecting: two
/// first requests may both connect, and one connection is kept.
#[derive(Default)]
pub struct Pool {
    conns: std::sync::Mutex<HashMap<String, ConnectionManager>>,
}

impl Pool {
    fn cached(&self, address: &str) -> Option<ConnectionManager> {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(address)
            .cloned()
    }

    async fn get(&self, address: &str) -> Result<ConnectionManager, Error> {
        if let Some(c) = self.cached(address) {
            return Ok(c);
        }
        redis::Client::open(address).map_err(|_| Error::InvalidAddress)?;
        let conn = connect(address)
            .await
            .map_err(|e| Error::Other(format!("{e:#}")))?;
        Ok(self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(address.to_string())
            .or_insert(conn)
            .clone())
    }
}

/// The host side of a `connection` resource.
pub struct RedisConnection {
    conn: ConnectionManager,
}

fn other(e: redis::RedisError) -> Error {
    Error::Other(crate::redact::message(&e.to_string()))
}

impl OutboundRedisInstance {
    fn redis_conn(&self, c: &Conn) -> wasmtime::Result<ConnectionManager> {
        Ok(self.table.get(c)?.conn.clone())
    }

    /// One command on the open connection `c`, ready to run; a Redis error reaches the guest as
    /// `other`.
    fn run<T, F>(
        &self,
        c: &Conn,
        command: impl FnOnce(ConnectionManager) -> F,
    ) -> wasmtime::Result<impl std::future::Future<Output = Result<T, Error>>>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.redis_conn(c)?;
        Ok(async move { command(conn).await.map_err(other) })
    }
}

/// A guest's handle on an open connection.
type Conn = Resource<RedisConnection>;

/// What a method answers the guest: its result, or a trap.
type Reply<T> = wasmtime::Result<Result<T, Error>>;

impl v2::Host for OutboundRedisInstance {}

impl v2::HostConnection for OutboundRedisInstance {
    async fn open(&mut self, address: String) -> Reply<Conn> {
        if !self.gate.opens(&address, "redis", "Redis") {
            return Ok(Err(Error::InvalidAddress));
        }
        let conn = match self.pool.get(&address).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self
            .table
            .push(RedisConnection { conn })
            .map_err(|_| Error::TooManyConnections))
    }

    async fn publish(&mut self, c: Conn, channel: String, payload: Vec<u8>) -> Reply<()> {
        // Opens when the host side of `publish` is entered: the benchmark times the hop from it.
        let _send = tracing::trace_span!(target: "nanohost::hop", "send", key = payload.as_slice());
        Ok(self
            .run(&c, |mut conn| async move {
                conn.publish(channel, payload).await
            })?
            .await)
    }

    async fn get(&mut self, c: Conn, key: String) -> Reply<Option<Vec<u8>>> {
        let r = self.run(&c, |mut conn| async move { conn.get(key).await })?;
        Ok(r.await.and_then(|v: Option<Vec<u8>>| {
            let size = std::mem::size_of::<Option<Vec<u8>>>() + v.as_ref().map_or(0, Vec::len);
            within_limit(v, size)
        }))
    }

    async fn set(&mut self, c: Conn, key: String, value: Vec<u8>) -> Reply<()> {
        Ok(self
            .run(&c, |mut conn| async move { conn.set(key, value).await })?
            .await)
    }

    async fn incr(&mut self, c: Conn, key: String) -> Reply<i64> {
        Ok(self
            .run(&c, |mut conn| async move { conn.incr(key, 1).await })?
            .await)
    }

    async fn del(&mut self, c: Conn, keys: Vec<String>) -> Reply<u32> {
        Ok(self
            .run(&c, |mut conn| async move { conn.del(keys).await })?
            .await)
    }

    async fn sadd(&mut self, c: Conn, key: String, values: Vec<String>) -> Reply<u32> {
        let mut conn = self.redis_conn(&c)?;
        // Spin's one typed error: adding to a key that holds no set.
        Ok(match conn.sadd(key, values).await {
            Err(e) if e.kind() == redis::ErrorKind::TypeError => Err(Error::TypeError),
            r => r.map_err(other),
        })
    }

    async fn smembers(&mut self, c: Conn, key: String) -> Reply<Vec<String>> {
        Ok(self
            .run(&c, |mut conn| async move { conn.smembers(key).await })?
            .await)
    }

    async fn srem(&mut self, c: Conn, key: String, values: Vec<String>) -> Reply<u32> {
        Ok(self
            .run(&c, |mut conn| async move { conn.srem(key, values).await })?
            .await)
    }

    async fn execute(
        &mut self,
        c: Conn,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> Reply<Vec<RedisResult>> {
        let mut cmd = redis::cmd(&command);
        for a in arguments {
            match a {
                RedisParameter::Int64(v) => cmd.arg(v),
                RedisParameter::Binary(v) => cmd.arg(v),
            };
        }
        let query = |mut conn| async move { cmd.query_async::<Results>(&mut conn).await };
        Ok(self.run(&c, query)?.await.and_then(|Results(r)| {
            let size = results_size(&r);
            within_limit(r, size)
        }))
    }

    async fn drop(&mut self, c: Conn) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

/// What Spin lets one host call buffer for the guest (`spin_world::MAX_HOST_BUFFERED_BYTES`):
/// a larger `get` or `execute` result is an error there, so it is one here.
const MAX_HOST_BUFFERED_BYTES: usize = 128 << 20;

fn within_limit<T>(value: T, size: usize) -> Result<T, Error> {
    if size > MAX_HOST_BUFFERED_BYTES {
        return Err(Error::Other(format!(
            "query result exceeds limit of {MAX_HOST_BUFFERED_BYTES} bytes"
        )));
    }
    Ok(value)
}

/// The size Spin counts for `execute`'s results (its `memory_size`).
fn results_size(results: &[RedisResult]) -> usize {
    let each = std::mem::size_of::<RedisResult>();
    std::mem::size_of::<Vec<RedisResult>>()
        + results
            .iter()
            .map(|r| match r {
                RedisResult::Nil | RedisResult::Int64(_) => each,
                RedisResult::Binary(b) => each + b.len(),
                RedisResult::Status(s) => each + s.len(),
            })
            .sum::<usize>()
}

/// `execute`'s results, flattened as Spin flattens them.
struct Results(Vec<RedisResult>);

impl FromRedisValue for Results {
    fn from_redis_value(value: &Value) -> redis::RedisResult<Self> {
        fn unsupported(what: &str) -> redis::RedisError {
            redis::RedisError::from((
                redis::ErrorKind::TypeError,
                "Could not convert Redis response",
                format!("Redis {what} type is not supported"),
            ))
        }
        fn append(out: &mut Vec<RedisResult>, v: &Value) -> redis::RedisResult<()> {
            match v {
                Value::Nil => out.push(RedisResult::Nil),
                Value::Int(i) => out.push(RedisResult::Int64(*i)),
                Value::BulkString(b) => out.push(RedisResult::Binary(b.clone())),
                Value::SimpleString(s) => out.push(RedisResult::Status(s.clone())),
                Value::Okay => out.push(RedisResult::Status("OK".into())),
                Value::Array(a) | Value::Set(a) => {
                    for x in a {
                        append(out, x)?;
                    }
                }
                Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
                Value::Boolean(b) => out.push(RedisResult::Int64(i64::from(*b))),
                Value::BigNumber(n) => out.push(RedisResult::Binary(n.to_string().into_bytes())),
                Value::Map(_) => return Err(unsupported("Map")),
                Value::Attribute { .. } => return Err(unsupported("Attribute")),
                Value::VerbatimString { .. } => return Err(unsupported("verbatim string")),
                Value::Push { .. } => return Err(unsupported("Pub/Sub")),
                Value::ServerError(e) => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::ResponseError,
                        "Server error",
                        format!("{e:?}"),
                    )))
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        append(&mut out, value)?;
        Ok(Results(out))
    }
}

#[cfg(test)]
mod tests;
