//! A Redis-backed store, as in spin `crates/key-value-redis`: a connection manager made on first
//! use, which reconnects by itself after Redis restarts (the requests made while Redis is down
//! fail, and later ones succeed again).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::OnceCell;

use super::{Backend, BackendError};
use crate::secret::Secret;

#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    conn: std::sync::Arc<OnceCell<ConnectionManager>>,
}

/// Sets KEYS[1] to ARGV[2] if it holds ARGV[1]; ARGV[3] = "absent" means it must not exist.
const SWAP_IF: &str = r"
local cur = redis.call('GET', KEYS[1])
if ARGV[3] == 'absent' then
  if cur then return 0 end
elseif cur ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1";

impl RedisStore {
    pub fn new(url: &Secret) -> anyhow::Result<RedisStore> {
        let url = url.expose();
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("invalid Redis URL {:?}: {e}", crate::redact::url(url)))?;
        Ok(RedisStore {
            client,
            conn: Default::default(),
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, BackendError> {
        self.conn
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(Duration::from_secs(5))
                    .set_number_of_retries(2)
                    .set_max_delay(500);
                self.client.get_connection_manager_with_config(config)
            })
            .await
            .cloned()
            .map_err(BackendError::new)
    }
}

#[async_trait::async_trait]
impl Backend for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.conn().await?.get(key).await.map_err(BackendError::new)
    }
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.conn()
            .await?
            .set(key, value)
            .await
            .map_err(BackendError::new)
    }
    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.conn().await?.del(key).await.map_err(BackendError::new)
    }
    async fn exists(&self, key: &str) -> Result<bool, BackendError> {
        self.conn()
            .await?
            .exists(key)
            .await
            .map_err(BackendError::new)
    }
    async fn get_keys(&self) -> Result<Vec<String>, BackendError> {
        self.conn()
            .await?
            .keys("*")
            .await
            .map_err(BackendError::new)
    }
    /// One `MSET`, as in Spin: all or nothing.
    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), BackendError> {
        self.conn()
            .await?
            .mset(&pairs)
            .await
            .map_err(BackendError::new)
    }
    async fn get_many(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, BackendError> {
        let values: Vec<Option<Vec<u8>>> = self
            .conn()
            .await?
            .mget(&keys)
            .await
            .map_err(BackendError::new)?;
        Ok(keys.into_iter().zip(values).collect())
    }
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), BackendError> {
        self.conn()
            .await?
            .del(&keys)
            .await
            .map_err(BackendError::new)
    }
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, BackendError> {
        self.conn()
            .await?
            .incr(key, delta)
            .await
            .map_err(BackendError::new)
    }
    async fn swap_if(
        &self,
        key: &str,
        old: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError> {
        let mut conn = self.conn().await?;
        let swapped: i32 = redis::Script::new(SWAP_IF)
            .key(key)
            .arg(old.unwrap_or_default())
            .arg(new)
            .arg(if old.is_some() { "present" } else { "absent" })
            .invoke_async(&mut conn)
            .await
            .map_err(BackendError::new)?;
        Ok(swapped == 1)
    }
}
