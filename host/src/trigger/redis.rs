//! The Redis trigger: subscribe to channels and call `fermyon:spin/inbound-redis`'s
//! `handle-message` on a fresh instance per message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::bindings::redis_trigger::RedisTriggerPre;
use crate::expressions::Resolver;
use crate::manifest::Manifest;
use crate::state::{ComponentCtx, HostState};

struct Handler {
    ctx: Arc<ComponentCtx>,
    chaining: crate::outbound_http::ServiceChaining,
    pre: RedisTriggerPre<HostState>,
}

/// Channel name → handlers, for one Redis server.
type Channels = HashMap<String, Vec<Arc<Handler>>>;

/// The configure stage's part for the Redis trigger: every `[[trigger.redis]]`, its address
/// and channel resolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct RedisPlan {
    pub subscriptions: Vec<RedisSubscription>,
}

#[derive(Debug, Clone)]
pub(crate) struct RedisSubscription {
    pub component: String,
    pub address: String,
    pub channel: String,
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
    let mut by_address: BTreeMap<String, Channels> = BTreeMap::new();
    let mut pres: HashMap<String, Arc<Handler>> = HashMap::new();
    for s in &plan.subscriptions {
        let handler = match pres.get(&s.component) {
            Some(h) => h.clone(),
            None => {
                let (ctx, pre) = app.prepare(
                    &s.component,
                    RedisTriggerPre::new,
                    "export fermyon:spin/inbound-redis (a Redis trigger handler)",
                )?;
                let h = Arc::new(Handler {
                    ctx,
                    chaining: chaining.clone(),
                    pre,
                });
                pres.insert(s.component.clone(), h.clone());
                h
            }
        };
        by_address
            .entry(s.address.clone())
            .or_default()
            .entry(s.channel.clone())
            .or_default()
            .push(handler);
    }

    let mut tasks = Vec::new();
    for (address, channels) in by_address {
        let pubsub = subscribe(&address, channels.keys()).await?;
        tracing::info!(
            "Redis trigger subscribed to {:?} on {}",
            channels.keys().collect::<Vec<_>>(),
            crate::redact::url(&address)
        );
        tasks.push(tokio::spawn(run(
            app.clone(),
            address,
            Arc::new(channels),
            pubsub,
            shutdown.clone(),
        )));
    }
    Ok(tasks)
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

/// Delivers messages until shutdown. A lost connection ends the app, as in Spin 3.6.3, whose
/// Redis trigger returns "disconnected from <address>" and takes `spin up` down with it: a
/// process manager (Kubernetes, systemd) restarts it. Resubscribing here would hide that.
async fn run(
    app: Arc<App>,
    address: String,
    channels: Arc<Channels>,
    pubsub: redis::aio::PubSub,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut stream = pubsub.into_on_message();
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = shutdown.changed() => return,
        };
        let Some(msg) = msg else {
            app.fail(format!(
                "Redis trigger disconnected from {}",
                crate::redact::url(&address)
            ));
            return;
        };
        let Some(handlers) = channels.get(msg.get_channel_name()) else {
            continue;
        };
        tracing::trace!(target: "nanohost::hop", key = msg.get_payload_bytes(), "received");
        let payload: Arc<[u8]> = Arc::from(msg.get_payload_bytes());
        for h in handlers {
            let (app, h, payload) = (app.clone(), h.clone(), payload.clone());
            let channel = msg.get_channel_name().to_string();
            tokio::spawn(async move {
                if let Err(e) = deliver(&app, &h, &payload).await {
                    tracing::error!(component = %h.ctx.id, %channel, "Redis message handler failed: {e:#}");
                }
            });
        }
    }
}

async fn deliver(app: &App, h: &Handler, payload: &[u8]) -> Result<()> {
    let mut store = app.store(&h.ctx, &h.chaining);
    let run = async {
        let inst = h.pre.instantiate_async(&mut store).await?;
        let handle = tracing::trace_span!(target: "nanohost::hop", "handle", key = payload);
        let r = inst
            .fermyon_spin_inbound_redis()
            .call_handle_message(&mut store, &payload.to_vec())
            .await;
        drop(handle);
        r
    };
    let r = super::time_limited(app, run).await?;
    r.map_err(|e| anyhow::anyhow!("handler returned {e:?}"))
}

#[cfg(test)]
mod tests {
    //! The trigger's connection alone, against a real redis-server (test-brokers): what it
    //! subscribes to, and the start-up errors that stop an app (the delivery loop needs an app
    //! and runs in host/tests).

    use super::subscribe;
    use test_brokers::{free_port, Redis};

    fn channels(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// `subscribe(address, names)`, with `check` run while the subscription is alive.
    fn subscribed<T>(
        address: &str,
        names: &[&str],
        check: impl FnOnce() -> T,
    ) -> anyhow::Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let _pubsub = subscribe(address, &channels(names)).await?;
            Ok(check())
        })
    }

    #[test]
    fn subscribes_to_every_channel_it_is_given() {
        let redis = Redis::start();
        let counts = subscribed(&redis.url(), &["orders.placed", "other"], || {
            (
                redis.subscribers("orders.placed"),
                redis.subscribers("other"),
            )
        })
        .unwrap();
        assert_eq!(counts, (1, 1));
    }

    #[test]
    fn a_redis_that_wants_a_password_is_reached_only_with_it() {
        let redis = Redis::start_with(free_port(), &["--requirepass", "s3cret-pw"]);
        let with = redis.url().replace("redis://", "redis://:s3cret-pw@");
        let count = subscribed(&with, &["c"], || redis.subscribers("c")).unwrap();
        assert_eq!(count, 1);
        // Without it, redis-rs alone would report a subscription that does not exist.
        let err = format!("{:#}", subscribed(&redis.url(), &["c"], || ()).unwrap_err());
        assert!(
            err.contains("NOAUTH") && err.contains(&redis.url()),
            "{err}"
        );
        let wrong = redis.url().replace("redis://", "redis://:wrong-s3cret@");
        let err = format!("{:#}", subscribed(&wrong, &["c"], || ()).unwrap_err());
        assert!(err.contains("cannot connect"), "{err}");
        assert!(!err.contains("s3cret"), "a password in the error: {err}");
    }

    #[test]
    fn nothing_listening_or_a_bad_address_is_a_start_up_error() {
        let port = free_port();
        let err = format!(
            "{:#}",
            subscribed(&format!("redis://127.0.0.1:{port}"), &["c"], || ()).unwrap_err()
        );
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        let err = format!("{:#}", subscribed("nats://x:1", &["c"], || ()).unwrap_err());
        assert!(err.contains("invalid Redis address"), "{err}");
    }
}
