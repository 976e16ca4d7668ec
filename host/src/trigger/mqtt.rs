//! The MQTT trigger (spin-trigger-mqtt v0.7.2): subscribe to topics with the configured QoS
//! and call the bare export `handle-message(message, metadata)` on a fresh instance per message.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::bindings::mqtt_trigger::spin::mqtt_trigger::spin_mqtt_types::Metadata;
use crate::bindings::mqtt_trigger::MqttTriggerPre;
use crate::state::{ComponentCtx, HostState};

struct Handler {
    ctx: Arc<ComponentCtx>,
    chaining: crate::outbound_http::ServiceChaining,
    pre: MqttTriggerPre<HostState>,
    topic: String,
    qos: QoS,
}

pub async fn start(
    app: Arc<App>,
    chaining: crate::outbound_http::ServiceChaining,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>> {
    let Some(cfg) = app.manifest.application.trigger.mqtt.clone() else {
        return Ok(Vec::new());
    };
    if app.manifest.trigger.mqtt.is_empty() {
        return Ok(Vec::new());
    }
    let mut handlers = Vec::new();
    for t in &app.manifest.trigger.mqtt {
        let id = crate::manifest::Manifest::component_id(&t.component);
        let (ctx, pre) = app.prepare(
            id,
            MqttTriggerPre::new,
            "export handle-message of spin:mqtt-trigger/spin-mqtt (an MQTT trigger handler)",
        )?;
        let qos = match t
            .qos
            .as_ref()
            .map(crate::manifest::parse_qos)
            .transpose()?
            .unwrap_or(1)
        {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let topic = app
            .resolver
            .resolve(&t.topic)
            .context("[[trigger.mqtt]] topic")?;
        if !rumqttc::valid_filter(&topic) {
            anyhow::bail!("[[trigger.mqtt]] topic {topic:?} is not a valid MQTT topic filter");
        }
        handlers.push(Arc::new(Handler {
            ctx,
            chaining: chaining.clone(),
            pre,
            topic,
            qos,
        }));
    }
    let address = app
        .resolver
        .resolve(&cfg.address)
        .context("[application.trigger.mqtt] address")?;
    let username = app
        .resolver
        .resolve(&cfg.username)
        .context("[application.trigger.mqtt] username")?;
    let password = app
        .resolver
        .resolve(&cfg.password)
        .context("[application.trigger.mqtt] password")?;
    let keep_alive = match &cfg.keep_alive_interval {
        Some(k) => app
            .resolver
            .resolve(&k.to_string())?
            .trim()
            .parse::<u64>()
            .with_context(|| {
                format!(
                    "[application.trigger.mqtt] keep_alive_interval {k} is not a number of seconds"
                )
            })?,
        None => 30,
    };
    let opts = options(
        &address,
        &username,
        &password,
        Duration::from_secs(keep_alive),
    )
    .context("[application.trigger.mqtt]")?;
    let (client, mut eventloop) = connect(opts).await.context("MQTT trigger")?;
    subscribe_all(&client, &handlers).await?;
    // Wait for the broker to confirm, so a message published right after start-up is not
    // missed.
    let mut pending = handlers.len();
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
            anyhow::bail!("MQTT trigger: the broker at {address} did not confirm the subscriptions")
        }
    }
    tracing::info!(
        "MQTT trigger subscribed to {:?} on {address}",
        handlers.iter().map(|h| &h.topic).collect::<Vec<_>>()
    );
    Ok(vec![tokio::spawn(run(
        app,
        client,
        eventloop,
        Arc::new(handlers),
        shutdown,
    ))])
}

async fn subscribe_all(client: &AsyncClient, handlers: &[Arc<Handler>]) -> Result<()> {
    for h in handlers {
        client
            .subscribe(h.topic.clone(), h.qos)
            .await
            .with_context(|| format!("cannot subscribe to {:?}", h.topic))?;
    }
    Ok(())
}

/// Delivers messages until shutdown or until the connection is lost. spin-trigger-mqtt v0.7.2
/// (the trigger of `spin up` and of containerd-shim-spin v0.24.0) does not reconnect after the
/// broker goes away: it keeps running and hears nothing more. nanohost does the same, and says
/// so loudly; the remedy on both is to restart the app (deploy/README.md).
async fn run(
    app: Arc<App>,
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    handlers: Arc<Vec<Arc<Handler>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = shutdown.changed() => {
                let _ = client.try_disconnect();
                return;
            }
        };
        match event {
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                crate::hop::record(crate::hop::Point::Received, &p.payload);
                let topic = p.topic.clone();
                let payload = p.payload.clone();
                for h in handlers
                    .iter()
                    .filter(|h| rumqttc::matches(&topic, &h.topic))
                {
                    let (app, h, topic, payload) =
                        (app.clone(), h.clone(), topic.clone(), payload.clone());
                    tokio::spawn(async move {
                        if let Err(e) = deliver(&app, &h, &topic, &payload).await {
                            tracing::error!(component = %h.ctx.id, %topic, "MQTT message handler failed: {e:#}");
                        }
                    });
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(
                    "MQTT trigger lost its broker connection ({e}); like spin-trigger-mqtt v0.7.2 it \
                     does not reconnect: no more messages will be delivered until the app restarts"
                );
                return;
            }
        }
    }
}

async fn deliver(app: &App, h: &Handler, topic: &str, payload: &[u8]) -> Result<()> {
    let mut store = app.store(&h.ctx, &h.chaining);
    let metadata = Metadata {
        topic: topic.to_string(),
    };
    let run = async {
        let inst = h.pre.instantiate_async(&mut store).await?;
        crate::hop::record(crate::hop::Point::HandlerStart, payload);
        let r = inst
            .call_handle_message(&mut store, &payload.to_vec(), &metadata)
            .await;
        crate::hop::record(crate::hop::Point::HandlerEnd, payload);
        r
    };
    let r = super::time_limited(app, run).await?;
    r.map_err(|e| anyhow::anyhow!("handler returned {e:?}"))
}

/// Client options for the trigger's own subscription. The trigger's address is plain
/// (`mqtt://host:1883`): like spin-trigger-mqtt, it makes up its own client id.
fn options(
    address: &str,
    username: &str,
    password: &str,
    keep_alive: Duration,
) -> Result<MqttOptions> {
    let url =
        url::Url::parse(address).with_context(|| format!("invalid MQTT address {address:?}"))?;
    if !matches!(url.scheme(), "mqtt" | "tcp") {
        anyhow::bail!("MQTT address {address:?} must start with mqtt:// (TLS is not supported)");
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
    if !username.is_empty() {
        opts.set_credentials(username, password);
    }
    if keep_alive.is_zero() || keep_alive >= Duration::from_secs(1) {
        opts.set_keep_alive(keep_alive);
    }
    opts.set_max_packet_size(16 << 20, 16 << 20);
    Ok(opts)
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
mod tests {
    /// The matching the trigger relies on (rumqttc's), pinned: `(filter, topic, matches)`.
    const CASES: &[(&str, &str, bool)] = &[
        ("orders/placed", "orders/placed", true),
        ("orders/placed", "orders/placed/1", false),
        ("orders/+", "orders/1", true),
        ("orders/+", "orders/1/x", false),
        ("orders/#", "orders/1/x", true),
        ("#", "a/b", true),
        // Topics starting with `$` are the broker's own: wildcards at the start do not match.
        ("#", "$SYS/broker/uptime", false),
        ("+/broker/uptime", "$SYS/broker/uptime", false),
    ];

    #[test]
    fn topic_filters_match_as_mqtt_says() {
        for (filter, topic, expected) in CASES {
            assert_eq!(
                rumqttc::matches(topic, filter),
                *expected,
                "filter {filter:?} topic {topic:?}"
            );
        }
    }

    #[test]
    fn invalid_filters_are_refused() {
        for bad in ["orders/#/x", "orders/a+", "orders#", ""] {
            assert!(!rumqttc::valid_filter(bad), "{bad:?}");
        }
        assert!(rumqttc::valid_filter("orders/placed"));
    }
}
