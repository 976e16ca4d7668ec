//! `fermyon:spin/mqtt@2.0.0`: outbound MQTT from components, on rumqttc, with Spin 3.6.3's
//! policy (spin `crates/factor-outbound-mqtt`), so that what works here works on Spin:
//! - the address goes to rumqttc's `MqttOptions::parse_url`, which requires a `client_id` query
//!   parameter: `mqtt://host:1883` alone is `invalid-address`;
//! - an address outside `allowed_outbound_hosts` is `connection-failed("address … is not
//!   permitted")`;
//! - each `open` makes a new client that connects lazily, on its first publish, so an
//!   unreachable broker shows up as `connection-failed` from `publish`, not from `open`;
//! - `publish` returns once the broker acknowledged it: after the PUBACK at QoS 1, the PUBCOMP
//!   at QoS 2, or once the packet is written at QoS 0.
//!
//! No connection is pooled across instances: the benchmark's MQTT shape pays a TCP and MQTT
//! handshake per order, exactly as it would on Spin.

use anyhow::{bail, Context, Result};
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};
use wasmtime::component::{Resource, ResourceTable};

use self::bindings::fermyon::spin2_0_0::mqtt::{self as v2, Error, Qos};
use crate::allowed_hosts::OutboundGate;
use crate::secret::Secret;

crate::bindings::capability!("nanohost:host/outbound-mqtt", OutboundMqtt, OutboundMqttInstance, {
    "fermyon:spin/mqtt.connection": super::MqttConnection,
});

/// Per-instance state: what this component may reach and its open connections. There is no
/// per-app state: nothing is pooled (see above).
pub struct OutboundMqttInstance {
    gate: OutboundGate,
    table: ResourceTable,
}

impl OutboundMqttInstance {
    pub fn new(gate: OutboundGate) -> OutboundMqttInstance {
        OutboundMqttInstance {
            gate,
            table: ResourceTable::new(),
        }
    }
}

/// Requests a client may queue before `publish` waits (Spin's `MQTT_CHANNEL_CAP`).
const CHANNEL_CAP: usize = 1000;

/// Client options from a Spin MQTT address, as Spin builds them: `parse_url` (so `client_id` is
/// required), then the credentials and keep-alive from `open`.
pub fn options(
    address: &str,
    username: &str,
    password: &Secret,
    keep_alive: std::time::Duration,
) -> Result<MqttOptions> {
    let mut opts = MqttOptions::parse_url(address)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "invalid MQTT address {:?} (Spin requires mqtt://host:port?client_id=<id>)",
                crate::redact::url(address)
            )
        })?;
    // The one place the password leaves nanohost: to the client that logs in with it.
    opts.set_credentials(username, password.expose());
    // rumqttc panics on a keep-alive under one second other than zero; seconds cannot be.
    if keep_alive.is_zero() || keep_alive >= std::time::Duration::from_secs(1) {
        opts.set_keep_alive(keep_alive);
    } else {
        bail!("keep-alive must be whole seconds");
    }
    Ok(opts)
}

/// The host side of a `connection` resource: one client and its event loop, driven by
/// `publish` (nothing runs in the background between calls, as in Spin).
pub struct MqttConnection {
    client: AsyncClient,
    event_loop: EventLoop,
}

impl MqttConnection {
    /// Queues the message, then turns the event loop until the acknowledgement the QoS calls
    /// for. The instance's time limit bounds the wait.
    pub async fn publish(
        &mut self,
        topic: String,
        qos: QoS,
        payload: Vec<u8>,
    ) -> Result<(), Error> {
        self.client
            .publish(topic, qos, false, payload)
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        loop {
            let event = self
                .event_loop
                .poll()
                .await
                .map_err(|e| Error::ConnectionFailed(e.to_string()))?;
            match (qos, event) {
                (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_)))
                | (QoS::AtLeastOnce, Event::Incoming(Incoming::PubAck(_)))
                | (QoS::ExactlyOnce, Event::Incoming(Incoming::PubComp(_))) => return Ok(()),
                _ => continue,
            }
        }
    }
}

impl v2::Host for OutboundMqttInstance {}

impl v2::HostConnection for OutboundMqttInstance {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, Error>> {
        // A secret from here on: an error or a `{:?}` of the options cannot show it.
        let password = Secret::from(password);
        if !self.gate.opens(&address, "mqtt", "MQTT") {
            return Ok(Err(Error::ConnectionFailed(format!(
                "address {} is not permitted",
                crate::redact::url(&address)
            ))));
        }
        let keep_alive = std::time::Duration::from_secs(keep_alive_interval_in_secs);
        let opts = match options(&address, &username, &password, keep_alive) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(component = %self.gate.component_id(), "MQTT URL parse error: {e:#}");
                return Ok(Err(Error::InvalidAddress));
            }
        };
        let (client, event_loop) = AsyncClient::new(opts, CHANNEL_CAP);
        let conn = MqttConnection { client, event_loop };
        Ok(self.table.push(conn).map_err(|_| Error::TooManyConnections))
    }

    async fn publish(
        &mut self,
        c: Resource<MqttConnection>,
        topic: String,
        payload: Vec<u8>,
        qos: Qos,
    ) -> wasmtime::Result<Result<(), Error>> {
        // Opens when the host side of `publish` is entered: the benchmark times the hop from it.
        let _send = tracing::trace_span!(target: "nanohost::hop", "send", key = payload.as_slice());
        let qos = match qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
            Qos::ExactlyOnce => QoS::ExactlyOnce,
        };
        let conn = self.table.get_mut(&c)?;
        Ok(conn.publish(topic, qos, payload).await)
    }

    async fn drop(&mut self, c: Resource<MqttConnection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::options;
    use crate::secret::Secret;
    use std::time::Duration;

    /// Addresses as Spin 3.6.3 takes them (rumqttc `parse_url`): `(address, accepted)`.
    const ADDRESSES: &[(&str, bool)] = &[
        ("mqtt://127.0.0.1:1883?client_id=orders-1", true),
        ("mqtt://broker?client_id=a", true),
        ("tcp://broker:1883?client_id=a", true),
        // No client id: Spin's `open` says invalid-address, and every publish fails.
        ("mqtt://127.0.0.1:1883", false),
        ("mqtt://127.0.0.1:1883?clean_session=true", false),
        ("http://broker:1883?client_id=a", false),
        ("broker:1883", false),
    ];

    #[test]
    fn addresses_are_parsed_as_spin_parses_them() {
        for (address, accepted) in ADDRESSES {
            let r = options(address, "", &Secret::default(), Duration::from_secs(30));
            assert_eq!(r.is_ok(), *accepted, "{address}: {:?}", r.err());
        }
    }

    #[test]
    fn refusals_do_not_show_passwords() {
        let e = options(
            "mqtt://user:hunter2@broker:1883",
            "",
            &Secret::default(),
            Duration::from_secs(30),
        )
        .unwrap_err();
        assert!(!format!("{e:#}").contains("hunter2"), "{e:#}");
        // rumqttc's own Debug of the options would print a plain password; ours is typed until
        // it is handed over.
        let password = Secret::from("hunter2");
        let opts = options(
            "mqtt://broker:1883?client_id=a",
            "u",
            &password,
            Duration::ZERO,
        );
        assert_eq!(
            opts.unwrap().credentials().map(|login| login.password),
            Some("hunter2".to_string())
        );
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}
