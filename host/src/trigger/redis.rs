//! The Redis trigger: subscribe to channels and call `fermyon:spin/inbound-redis`'s
//! `handle-message` on a fresh instance per message. This module is the broker side (connect,
//! subscribe, listen); the messages go through the triggers' shared delivery path
//! (`super::delivery`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::delivery::{self, Dispatch, Export, Fresh, Guest, Handled, Message, Route, Sink};
use crate::app::App;
use crate::bindings::redis_trigger::RedisTriggerIndices;
use crate::expressions::Resolver;
use crate::manifest::Manifest;

/// A component that handles Redis messages.
type Handler = Guest<RedisTriggerIndices>;

impl Export for RedisTriggerIndices {
    async fn handle(&self, fresh: Fresh<'_>, message: &Message) -> Handled {
        let exports = self.load(&mut *fresh.store, &fresh.instance)?;
        let payload = message.payload.to_vec();
        let inbound = exports.fermyon_spin_inbound_redis();
        let r = inbound.call_handle_message(fresh.store, &payload).await?;
        Ok(r.map_err(|e| format!("{e:?}")))
    }
}

/// The configure stage's part for the Redis trigger: every `[[trigger.redis]]`, its address
/// and channel resolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct RedisPlan {
    pub subscriptions: Vec<RedisSubscription>,
}

#[derive(Clone)]
pub(crate) struct RedisSubscription {
    pub component: String,
    /// May carry a password (`redis://:pw@host`): its `Debug` shows it masked.
    pub address: String,
    pub channel: String,
}

impl std::fmt::Debug for RedisSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSubscription")
            .field("component", &self.component)
            .field("address", &crate::redact::url(&self.address))
            .field("channel", &self.channel)
            .finish()
    }
}

impl RedisPlan {
    pub(crate) fn configure(manifest: &Manifest, resolver: &Resolver) -> Result<RedisPlan> {
        let app_address = manifest.application.trigger.redis.as_ref();
        let mut subscriptions = Vec::new();
        for t in &manifest.trigger.redis {
            let address = t.address.as_ref().or(app_address.map(|r| &r.address));
            let address = resolver
                .resolve(address.map_or("", String::as_str))
                .context("[application.trigger.redis] address")?;
            redis::Client::open(address.as_str()).with_context(|| {
                format!("invalid Redis address {:?}", crate::redact::url(&address))
            })?;
            subscriptions.push(RedisSubscription {
                component: Manifest::component_id(&t.component).to_string(),
                address,
                channel: resolver
                    .resolve(&t.channel)
                    .context("[[trigger.redis]] channel")?,
            });
        }
        Ok(RedisPlan { subscriptions })
    }
}

/// Connects to every Redis server the plan names and subscribes; errors if one cannot be
/// reached, so a wrong address fails at start-up.
pub(crate) async fn start(
    app: Arc<App>,
    plan: &RedisPlan,
    chaining: crate::outbound_http::ServiceChaining,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>> {
    let mut by_address: BTreeMap<&str, Vec<(Route, Arc<Handler>)>> = BTreeMap::new();
    let mut handlers: HashMap<&str, Arc<Handler>> = HashMap::new();
    for s in &plan.subscriptions {
        let handler = match handlers.get(s.component.as_str()) {
            Some(h) => h.clone(),
            None => {
                let h = Arc::new(Guest::prepare(
                    &app,
                    &s.component,
                    RedisTriggerIndices::new,
                    "export fermyon:spin/inbound-redis (a Redis trigger handler)",
                    &chaining,
                )?);
                handlers.insert(s.component.as_str(), h.clone());
                h
            }
        };
        let route = Route::Channel(s.channel.clone());
        by_address
            .entry(&s.address)
            .or_default()
            .push((route, handler));
    }

    let mut tasks = Vec::new();
    for (address, routes) in by_address {
        let channels = channels(&routes);
        let pubsub = subscribe(address, &channels).await?;
        tracing::info!(
            "Redis trigger subscribed to {channels:?} on {}",
            crate::redact::url(address)
        );
        let dispatch = Dispatch::new("Redis", routes);
        let listen = listen(address.to_string(), pubsub, dispatch, shutdown.clone());
        tasks.push(delivery::spawn_loop(app.clone(), listen));
    }
    Ok(tasks)
}

/// Each channel the routes name, once.
fn channels<H>(routes: &[(Route, H)]) -> Vec<String> {
    let mut channels: Vec<String> = Vec::new();
    for (route, _) in routes {
        if let Route::Channel(ch) = route {
            if !channels.contains(ch) {
                channels.push(ch.clone());
            }
        }
    }
    channels
}

/// A connection to `address` subscribed to `channels`, or the reason there is none.
async fn subscribe(
    address: &str,
    channels: impl IntoIterator<Item = &String>,
) -> Result<redis::aio::PubSub> {
    let shown = crate::redact::url(address);
    let client =
        redis::Client::open(address).with_context(|| format!("invalid Redis address {shown:?}"))?;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| format!("Redis trigger cannot connect to {shown}"))?;
    for ch in channels {
        pubsub
            .subscribe(ch)
            .await
            .with_context(|| format!("cannot subscribe to {ch:?} on {shown}"))?;
    }
    // redis-rs (0.32, as in Spin 3.6.3) drops the server's answer to SUBSCRIBE, a refusal
    // included: given an address without the password a Redis wants, the trigger would run
    // subscribed to nothing, which Spin 3.6.3 does (host/README, differences). A PING on the same
    // connection meets the same refusal, and its answer is read.
    let answer = pubsub
        .ping::<redis::Value>()
        .await
        .with_context(|| format!("Redis trigger lost {shown} while subscribing"))?;
    if let redis::Value::ServerError(refusal) = answer {
        if refusal.code() == "NOAUTH" {
            anyhow::bail!(
                "Redis trigger cannot subscribe on {shown}: {} (the address has no password)",
                redis::RedisError::from(refusal)
            );
        }
    }
    Ok(pubsub)
}

/// Hands every message to `sink` until shutdown. A lost connection is the error that ends the
/// app, as in Spin 3.6.3, whose Redis trigger returns "disconnected from <address>" and takes
/// `spin up` down with it: a process manager (Kubernetes, systemd) restarts it. Resubscribing
/// here would hide that.
async fn listen(
    address: String,
    pubsub: redis::aio::PubSub,
    sink: impl Sink,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut stream = pubsub.into_on_message();
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(msg) = msg else {
            anyhow::bail!(
                "Redis trigger disconnected from {}",
                crate::redact::url(&address)
            );
        };
        sink.deliver(Message::new(
            msg.get_channel_name(),
            msg.get_payload_bytes(),
        ));
    }
}

#[cfg(test)]
mod tests;
