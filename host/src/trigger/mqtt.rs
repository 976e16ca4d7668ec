//! The MQTT trigger (spin-trigger-mqtt v0.7.2): subscribe to topics with the configured QoS
//! and call the bare export `handle-message(message, metadata)` on a fresh instance per message.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, Incoming, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::bindings::mqtt_trigger::spin::mqtt_trigger::spin_mqtt_types::Metadata;
use crate::bindings::mqtt_trigger::MqttTriggerPre;
use crate::state::{ComponentCtx, HostState};

struct Handler {
    ctx: Arc<ComponentCtx>,
    pre: MqttTriggerPre<HostState>,
    topic: String,
    qos: QoS,
}

pub async fn start(app: Arc<App>, shutdown: watch::Receiver<bool>) -> Result<Vec<JoinHandle<()>>> {
    let Some(cfg) = app.manifest.application.trigger.mqtt.clone() else {
        return Ok(Vec::new());
    };
    if app.manifest.trigger.mqtt.is_empty() {
        return Ok(Vec::new());
    }
    let mut handlers = Vec::new();
    for t in &app.manifest.trigger.mqtt {
        let id = crate::manifest::Manifest::component_id(&t.component);
        let loaded = app.component(id);
        let pre = app
            .linker
            .instantiate_pre(&loaded.component)
            .and_then(MqttTriggerPre::new)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| format!("component {id:?} cannot be an MQTT trigger handler (does it export handle-message of spin:mqtt-trigger/spin-mqtt?)"))?;
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
        handlers.push(Arc::new(Handler {
            ctx: loaded.ctx.clone(),
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
    let opts = crate::outbound_mqtt::options(
        &address,
        &username,
        &password,
        Duration::from_secs(keep_alive),
    )
    .context("[application.trigger.mqtt]")?;
    let (client, mut eventloop) = crate::outbound_mqtt::connect(opts)
        .await
        .context("MQTT trigger")?;
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

async fn run(
    app: Arc<App>,
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    handlers: Arc<Vec<Arc<Handler>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing = false;
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
                failing = false;
                let topic = p.topic.clone();
                let payload = p.payload.clone();
                for h in handlers.iter().filter(|h| topic_matches(&h.topic, &topic)) {
                    let (app, h, topic, payload) =
                        (app.clone(), h.clone(), topic.clone(), payload.clone());
                    tokio::spawn(async move {
                        if let Err(e) = deliver(&app, &h, &topic, &payload).await {
                            tracing::error!(component = %h.ctx.id, %topic, "MQTT message handler failed: {e:#}");
                        }
                    });
                }
            }
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                // A reconnect with a clean session forgets subscriptions: renew them.
                failing = false;
                if let Err(e) = subscribe_all(&client, &handlers).await {
                    tracing::warn!("MQTT trigger: {e:#}");
                }
            }
            Ok(_) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!("MQTT trigger connection error: {e}; reconnecting");
                }
                failing = true;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

async fn deliver(app: &App, h: &Handler, topic: &str, payload: &[u8]) -> Result<()> {
    let mut store = app.store(&h.ctx);
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

/// MQTT topic filter matching: `+` is one level, a final `#` is any number of levels.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn topic_filters() {
        assert!(topic_matches("orders", "orders"));
        assert!(!topic_matches("orders", "orders/1"));
        assert!(topic_matches("orders/+", "orders/1"));
        assert!(!topic_matches("orders/+", "orders/1/x"));
        assert!(topic_matches("orders/#", "orders/1/x"));
        assert!(topic_matches("orders/#", "orders"));
        assert!(topic_matches("#", "a/b"));
    }
}
