//! The MQTT trigger (spin-trigger-mqtt v0.7.2): subscribe to topics with the configured QoS
//! and call the bare export `handle-message(message, metadata)` on a fresh instance per message.
//! This module is the broker side (options, connect, subscribe, listen); the messages go through
//! the triggers' shared delivery path (`super::delivery`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::delivery::{self, Dispatch, Export, Fresh, Guest, Handled, Message, Route, Sink};
use crate::app::App;
use crate::bindings::mqtt_trigger::spin::mqtt_trigger::spin_mqtt_types::Metadata;
use crate::bindings::mqtt_trigger::MqttTriggerIndices;
use crate::expressions::Resolver;
use crate::manifest::{parse_qos, Manifest, StringOrInt};
use crate::secret::Secret;

impl Export for MqttTriggerIndices {
    /// The bare `handle-message(message, metadata)`, with the topic it came on.
    async fn handle(&self, fresh: Fresh<'_>, message: &Message) -> Handled {
        let metadata = Metadata {
            topic: message.source.clone(),
        };
        let exports = self.load(&mut *fresh.store, &fresh.instance)?;
        let payload = message.payload.to_vec();
        let r = exports.call_handle_message(fresh.store, &payload, &metadata);
        Ok(r.await?.map_err(|e| format!("{e:?}")))
    }
}

/// The configure stage's part for the MQTT trigger (`None`: the app has no MQTT triggers):
/// `[application.trigger.mqtt]` and every `[[trigger.mqtt]]`, resolved and checked.
#[derive(Debug, Clone)]
pub(crate) struct MqttPlan {
    /// The broker, resolved (`mqtt://host:port`).
    pub address: String,
    pub username: String,
    /// A secret whether or not it comes from a `secret = true` variable: only rumqttc sees it.
    pub password: Secret,
    pub keep_alive: Duration,
    pub topics: Vec<MqttTopic>,
}

#[derive(Debug, Clone)]
pub(crate) struct MqttTopic {
    pub component: String,
    /// A valid topic filter.
    pub topic: String,
    pub qos: QoS,
}

impl MqttPlan {
    pub(crate) fn configure(manifest: &Manifest, resolver: &Resolver) -> Result<Option<MqttPlan>> {
        let Some(cfg) = &manifest.application.trigger.mqtt else {
            return Ok(None);
        };
        if manifest.trigger.mqtt.is_empty() {
            return Ok(None);
        }
        let mut topics = Vec::new();
        for t in &manifest.trigger.mqtt {
            topics.push(MqttTopic::configure(t, resolver)?);
        }
        let setting = |name: &str, template: &str| {
            resolver
                .resolve(template)
                .with_context(|| format!("[application.trigger.mqtt] {name}"))
        };
        let plan = MqttPlan {
            address: setting("address", &cfg.address)?,
            username: setting("username", &cfg.username)?,
            password: Secret::from(setting("password", &cfg.password)?),
            keep_alive: keep_alive(cfg.keep_alive_interval.as_ref(), resolver)?,
            topics,
        };
        plan.options().context("[application.trigger.mqtt]")?;
        Ok(Some(plan))
    }

    /// Client options for the trigger's own subscription. The trigger's address is plain
    /// (`mqtt://host:1883`): like spin-trigger-mqtt, it makes up its own client id.
    fn options(&self) -> Result<MqttOptions> {
        let address = &self.address;
        let url = url::Url::parse(address)
            .with_context(|| format!("invalid MQTT address {address:?}"))?;
        if !matches!(url.scheme(), "mqtt" | "tcp") {
            anyhow::bail!(
                "MQTT address {address:?} must start with mqtt:// (TLS is not supported)"
            );
        }
        let host = url
            .host_str()
            .with_context(|| format!("MQTT address {address:?} has no host"))?;
        let id = format!("nanohost-trigger-{}", uuid_like());
        let mut opts = MqttOptions::new(
            id,
            host.trim_start_matches('[').trim_end_matches(']'),
            url.port().unwrap_or(1883),
        );
        if !self.username.is_empty() {
            opts.set_credentials(&self.username, self.password.expose());
        }
        if self.keep_alive.is_zero() || self.keep_alive >= Duration::from_secs(1) {
            opts.set_keep_alive(self.keep_alive);
        }
        opts.set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET);
        Ok(opts)
    }
}

impl MqttTopic {
    fn configure(t: &crate::manifest::MqttTrigger, resolver: &Resolver) -> Result<MqttTopic> {
        let qos = match t.qos.as_ref().map(parse_qos).transpose()?.unwrap_or(1) {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let topic = resolver
            .resolve(&t.topic)
            .context("[[trigger.mqtt]] topic")?;
        if !rumqttc::valid_filter(&topic) {
            anyhow::bail!("[[trigger.mqtt]] topic {topic:?} is not a valid MQTT topic filter");
        }
        Ok(MqttTopic {
            component: Manifest::component_id(&t.component).to_string(),
            topic,
            qos,
        })
    }
}

/// `keep_alive_interval` in seconds (spin-trigger-mqtt's default: 30).
fn keep_alive(interval: Option<&StringOrInt>, resolver: &Resolver) -> Result<Duration> {
    let Some(k) = interval else {
        return Ok(Duration::from_secs(30));
    };
    let seconds = resolver.resolve(&k.to_string())?.trim().parse::<u64>();
    let seconds = seconds.with_context(|| {
        format!("[application.trigger.mqtt] keep_alive_interval {k} is not a number of seconds")
    })?;
    Ok(Duration::from_secs(seconds))
}

/// Connects, subscribes to the plan's topics and delivers their messages until shutdown.
pub(crate) async fn start(
    app: Arc<App>,
    plan: Option<&MqttPlan>,
    chaining: crate::outbound_http::ServiceChaining,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>> {
    let Some(plan) = plan else {
        return Ok(Vec::new());
    };
    let mut routes = Vec::new();
    for t in &plan.topics {
        let handler = Guest::prepare(
            &app,
            &t.component,
            MqttTriggerIndices::new,
            "export handle-message of spin:mqtt-trigger/spin-mqtt (an MQTT trigger handler)",
            &chaining,
        )?;
        routes.push((Route::Topic(t.topic.clone()), Arc::new(handler)));
    }
    let subscription = Subscription::open(plan).await?;
    tracing::info!(
        "MQTT trigger subscribed to {:?} on {}",
        plan.topics.iter().map(|t| &t.topic).collect::<Vec<_>>(),
        plan.address
    );
    let listen = listen(subscription, Dispatch::new("MQTT", routes), shutdown);
    Ok(vec![delivery::spawn_loop(app, listen)])
}

/// Hands every message to `sink` until shutdown. A lost connection is the error that ends the
/// app, as the Redis trigger's does: spin-trigger-mqtt v0.7.2 (the trigger of `spin up` and of
/// containerd-shim-spin v0.24.0) and 0.8.0 (Spin 4's) do not reconnect either, but keep running
/// deaf, which no process manager can see; an exit is what Kubernetes, systemd and
/// `cargo xtask up` restart. Reconnecting after a lost broker would make nanohost kinder than
/// Spin; the one reconnection is after a message too large to read ([`Subscription::next`]).
async fn listen(
    mut subscription: Subscription,
    sink: impl Sink,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        let p = tokio::select! {
            m = subscription.next() => m?,
            _ = shutdown.changed() => {
                subscription.disconnect();
                return Ok(());
            }
        };
        sink.deliver(Message::new(p.topic, &p.payload));
    }
}

/// The largest MQTT packet the trigger reads (a message and its topic). A larger one is refused
/// from its header, before its body is buffered.
const MAX_INCOMING_PACKET: usize = 16 << 20;

/// The trigger's broker connection, subscribed to every handler's topic.
struct Subscription {
    client: AsyncClient,
    eventloop: rumqttc::EventLoop,
    topics: Vec<(String, QoS)>,
    address: String,
}

impl Subscription {
    /// Connects and subscribes, and waits for the broker to confirm, so that a message
    /// published right after start-up is not missed.
    async fn open(plan: &MqttPlan) -> Result<Subscription> {
        let opts = plan.options().context("[application.trigger.mqtt]")?;
        let topics: Vec<_> = plan
            .topics
            .iter()
            .map(|t| (t.topic.clone(), t.qos))
            .collect();
        let (host, port) = opts.broker_address();
        let address = format!("{host}:{port}");
        let (client, mut eventloop) = connect(opts).await.context("MQTT trigger")?;
        subscribe(&client, &topics).await?;
        let mut pending = topics.len();
        let confirmed = tokio::time::timeout(Duration::from_secs(10), async {
            while pending > 0 {
                if let Event::Incoming(Incoming::SubAck(_)) = eventloop.poll().await? {
                    pending -= 1;
                }
            }
            anyhow::Ok(())
        })
        .await;
        match confirmed {
            Ok(r) => r.with_context(|| format!("MQTT trigger cannot subscribe on {address}"))?,
            Err(_) => {
                anyhow::bail!(
                    "MQTT trigger: the broker at {address} did not confirm the subscriptions"
                )
            }
        }
        Ok(Subscription {
            client,
            eventloop,
            topics,
            address,
        })
    }

    /// The next message, or why no other can come: the broker connection is lost.
    ///
    /// A message larger than [`MAX_INCOMING_PACKET`] cannot be skipped on its connection (its
    /// body is still on the wire): it is logged and dropped with the connection, and the trigger
    /// connects and subscribes again at once. It is not redelivered (a clean session), and
    /// neither is what the broker sent in that gap; an order whose announcement was lost so
    /// stays `accepted` until the order app's next sweep announces it again.
    async fn next(&mut self) -> Result<rumqttc::Publish> {
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => return Ok(p),
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    subscribe(&self.client, &self.topics).await?;
                    tracing::info!(
                        "MQTT trigger connected to {} again and subscribed to {:?}",
                        self.address,
                        self.topics.iter().map(|(t, _)| t).collect::<Vec<_>>()
                    );
                }
                Ok(_) => {}
                Err(e) => match oversized(&e) {
                    Some(size) => tracing::warn!(
                        "MQTT trigger dropped a message of {size} bytes from {} (its limit is \
                         {MAX_INCOMING_PACKET}); reconnecting",
                        self.address
                    ),
                    None => anyhow::bail!(
                        "MQTT trigger lost its broker connection to {} ({e}); like \
                         spin-trigger-mqtt it does not reconnect: the app stops, for its process \
                         manager to restart it",
                        self.address
                    ),
                },
            }
        }
    }

    fn disconnect(&self) {
        let _ = self.client.try_disconnect();
    }
}

async fn subscribe(client: &AsyncClient, topics: &[(String, QoS)]) -> Result<()> {
    for (topic, qos) in topics {
        client
            .subscribe(topic.clone(), *qos)
            .await
            .with_context(|| format!("cannot subscribe to {topic:?}"))?;
    }
    Ok(())
}

/// The size of a packet the connection refused to read for its size, if that is the error.
fn oversized(e: &rumqttc::ConnectionError) -> Option<usize> {
    match e {
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(size),
        )) => Some(*size),
        _ => None,
    }
}

/// Unique enough for an MQTT client id: process id, time and a counter.
fn uuid_like() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos:x}-{n}", std::process::id())
}

/// Creates a client and drives its event loop until the broker accepts the connection, so an
/// unreachable broker is a start-up error, as in Spin.
async fn connect(opts: MqttOptions) -> Result<(AsyncClient, rumqttc::EventLoop)> {
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    let (host, port) = opts.broker_address();
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_connection_timeout(CONNECT_TIMEOUT.as_secs());
    eventloop.set_network_options(net);
    let connack = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(anyhow::anyhow!(e)),
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connack)
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r)
        .with_context(|| format!("cannot connect to MQTT broker at {host}:{port}"))?;
    Ok((client, eventloop))
}

#[cfg(test)]
mod tests;
