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

use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use self::bindings::fermyon::spin2_0_0::redis::{self as v2, Error, RedisParameter, RedisResult};
use crate::allowed_hosts::AllowedHosts;

/// Bindings of just this capability's interface.
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "nanohost:host/outbound-redis",
        imports: { default: async | trappable },
        with: { "fermyon:spin/redis.connection": super::RedisConnection },
    });
}

/// Per-instance state: what this component may reach, the app's pool, its open connections.
pub struct OutboundRedisInstance {
    component_id: Arc<str>,
    allowed_hosts: Arc<AllowedHosts>,
    pool: Arc<Pool>,
    table: ResourceTable,
}

impl OutboundRedisInstance {
    pub fn new(
        component_id: Arc<str>,
        allowed_hosts: Arc<AllowedHosts>,
        pool: Arc<Pool>,
    ) -> OutboundRedisInstance {
        OutboundRedisInstance {
            component_id,
            allowed_hosts,
            pool,
            table: ResourceTable::new(),
        }
    }
}

/// Links `fermyon:spin/redis@2.0.0`; `get` finds this capability's state in the store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut OutboundRedisInstance,
) -> anyhow::Result<()> {
    v2::add_to_linker::<T, HasSelf<OutboundRedisInstance>>(linker, get)?;
    Ok(())
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
    fn redis_conn(&self, c: &Resource<RedisConnection>) -> wasmtime::Result<ConnectionManager> {
        Ok(self.table.get(c)?.conn.clone())
    }
}

impl v2::Host for OutboundRedisInstance {}

impl v2::HostConnection for OutboundRedisInstance {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, Error>> {
        if !self.allowed_hosts.allows_url(&address, "redis") {
            tracing::info!(component = %self.component_id, address = %crate::redact::url(&address), "outbound Redis refused: not in allowed_outbound_hosts");
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

    async fn publish(
        &mut self,
        c: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        // Opens when the host side of `publish` is entered: the benchmark times the hop from it.
        let _send = tracing::trace_span!(target: "nanohost::hop", "send", key = payload.as_slice());
        let mut conn = self.redis_conn(&c)?;
        let r = conn.publish::<_, _, ()>(channel, payload).await;
        Ok(r.map_err(other))
    }

    async fn get(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let mut conn = self.redis_conn(&c)?;
        let r: redis::RedisResult<Option<Vec<u8>>> = conn.get(key).await;
        Ok(r.map_err(other).and_then(|v| {
            let size = std::mem::size_of::<Option<Vec<u8>>>() + v.as_ref().map_or(0, Vec::len);
            within_limit(v, size)
        }))
    }

    async fn set(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let mut conn = self.redis_conn(&c)?;
        let r = conn.set::<_, _, ()>(key, value).await;
        Ok(r.map_err(other))
    }

    async fn incr(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let mut conn = self.redis_conn(&c)?;
        let r = conn.incr(key, 1).await;
        Ok(r.map_err(other))
    }

    async fn del(
        &mut self,
        c: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let mut conn = self.redis_conn(&c)?;
        let r = conn.del(keys).await;
        Ok(r.map_err(other))
    }

    async fn sadd(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let mut conn = self.redis_conn(&c)?;
        let r = conn.sadd(key, values).await;
        Ok(match r {
            Err(e) if e.kind() == redis::ErrorKind::TypeError => Err(Error::TypeError),
            r => r.map_err(other),
        })
    }

    async fn smembers(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let mut conn = self.redis_conn(&c)?;
        let r = conn.smembers(key).await;
        Ok(r.map_err(other))
    }

    async fn srem(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let mut conn = self.redis_conn(&c)?;
        let r = conn.srem(key, values).await;
        Ok(r.map_err(other))
    }

    async fn execute(
        &mut self,
        c: Resource<RedisConnection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<RedisResult>, Error>> {
        let mut conn = self.redis_conn(&c)?;
        let mut cmd = redis::cmd(&command);
        for a in arguments {
            match a {
                RedisParameter::Int64(v) => cmd.arg(v),
                RedisParameter::Binary(v) => cmd.arg(v),
            };
        }
        let r = cmd.query_async::<Results>(&mut conn).await;
        Ok(r.map_err(other).and_then(|Results(r)| {
            let size = results_size(&r);
            within_limit(r, size)
        }))
    }

    async fn drop(&mut self, c: Resource<RedisConnection>) -> wasmtime::Result<()> {
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
