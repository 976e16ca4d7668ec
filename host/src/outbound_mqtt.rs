//! `fermyon:spin/mqtt@2.0.0`: outbound MQTT from components, on rumqttc.
//!
//! An address outside `allowed_outbound_hosts` gets `connection-failed("address … is not
//! permitted")`, as in Spin. Spin makes a client per `open` and drives it inside `publish`;
//! nanohost keeps one client per (address, credentials, keep-alive) for the whole process,
//! driven by a background task, so a publish is a channel send rather than a TCP and MQTT
//! handshake. QoS 1/2 acknowledgements are handled by that task (rumqttc resends unacked
//! messages after a reconnect). Sockets have TCP_NODELAY set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, NetworkOptions, QoS};
use wasmtime::component::Resource;

use crate::bindings::spin_host::fermyon::spin2_0_0::mqtt::{self as v2, Error, Qos};
use crate::state::HostState;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CHANNEL_CAP: usize = 1000;

/// Builds client options from a Spin-style MQTT address: `mqtt://host[:port][?client_id=..]`.
pub fn options(
    address: &str,
    username: &str,
    password: &str,
    keep_alive: Duration,
) -> Result<MqttOptions> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let url =
        url::Url::parse(address).with_context(|| format!("invalid MQTT address {address:?}"))?;
    if !matches!(url.scheme(), "mqtt" | "tcp") {
        bail!("MQTT address {address:?} must start with mqtt:// (TLS is not supported)");
    }
    let host = url
        .host_str()
        .with_context(|| format!("MQTT address {address:?} has no host"))?;
    let port = url.port().unwrap_or(1883);
    let mut client_id = None;
    for (k, v) in url.query_pairs() {
        if k == "client_id" {
            client_id = Some(v.into_owned());
        }
    }
    // Two clients with one id kick each other off the broker: make each one unique.
    let id = format!(
        "{}-{}-{}",
        client_id.as_deref().unwrap_or("nanohost"),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut opts = MqttOptions::new(id, host.trim_start_matches('[').trim_end_matches(']'), port);
    if !username.is_empty() {
        opts.set_credentials(username, password);
    }
    if keep_alive.is_zero() || keep_alive >= Duration::from_secs(1) {
        opts.set_keep_alive(keep_alive);
    }
    opts.set_max_packet_size(16 << 20, 16 << 20);
    Ok(opts)
}

/// Creates a client and drives its event loop until the broker accepts the connection, so an
/// unreachable broker is an error now rather than a silent retry loop later.
pub async fn connect(opts: MqttOptions) -> Result<(AsyncClient, EventLoop)> {
    let (host, port) = opts.broker_address();
    let (client, mut eventloop) = AsyncClient::new(opts, CHANNEL_CAP);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(CONNECT_TIMEOUT.as_secs());
    eventloop.set_network_options(net);
    let connack = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(anyhow!(e)),
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connack)
        .await
        .map_err(|_| anyhow!("timed out"))
        .and_then(|r| r)
        .with_context(|| format!("cannot connect to MQTT broker at {host}:{port}"))?;
    Ok((client, eventloop))
}

/// Keeps an event loop turning; rumqttc reconnects on the next poll after an error.
pub fn drive(
    mut eventloop: EventLoop,
    what: String,
    up: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    up.store(true, Ordering::Relaxed);
                    failing = false;
                }
                Ok(_) => failing = false,
                Err(e) => {
                    up.store(false, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!("{what}: MQTT connection error: {e}; reconnecting");
                    }
                    failing = true;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    })
}

type Key = (String, String, String, u64);

/// Clients shared by all instances.
#[derive(Default)]
pub struct Pool {
    clients: tokio::sync::Mutex<HashMap<Key, MqttConnection>>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Pool {
    async fn get(&self, key: Key) -> Result<MqttConnection, Error> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let opts = options(&key.0, &key.1, &key.2, Duration::from_secs(key.3)).map_err(|e| {
            tracing::error!("MQTT URL parse error: {e:#}");
            Error::InvalidAddress
        })?;
        let (client, eventloop) = connect(opts)
            .await
            .map_err(|e| Error::ConnectionFailed(format!("{e:#}")))?;
        let up = Arc::new(AtomicBool::new(true));
        let task = drive(eventloop, format!("outbound MQTT {}", key.0), up.clone());
        let conn = MqttConnection { client, up };
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        clients.insert(key, conn.clone());
        Ok(conn)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// The host side of a `connection` resource: a handle on a pooled client.
#[derive(Clone)]
pub struct MqttConnection {
    client: AsyncClient,
    /// False while the pooled client is reconnecting: a publish then fails, as it would in
    /// Spin, instead of queueing silently.
    up: Arc<AtomicBool>,
}

impl v2::Host for HostState {}

impl v2::HostConnection for HostState {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, Error>> {
        if !self.component.allowed_hosts.allows_url(&address, "mqtt") {
            tracing::info!(component = %self.component.id, %address, "outbound MQTT refused: not in allowed_outbound_hosts");
            return Ok(Err(Error::ConnectionFailed(format!(
                "address {address} is not permitted"
            ))));
        }
        let key = (address, username, password, keep_alive_interval_in_secs);
        let conn = match self.component.shared.mqtt.get(key).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.table.push(conn).map_err(|_| Error::TooManyConnections))
    }

    async fn publish(
        &mut self,
        c: Resource<MqttConnection>,
        topic: String,
        payload: Vec<u8>,
        qos: Qos,
    ) -> wasmtime::Result<Result<(), Error>> {
        crate::hop::record(crate::hop::Point::Sent, &payload);
        let conn = self.table.get(&c)?;
        if !conn.up.load(Ordering::Relaxed) {
            return Ok(Err(Error::ConnectionFailed(
                "not connected to the MQTT broker (reconnecting)".into(),
            )));
        }
        let client = conn.client.clone();
        let qos = match qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
            Qos::ExactlyOnce => QoS::ExactlyOnce,
        };
        Ok(client
            .publish(topic, qos, false, payload)
            .await
            .map_err(|e| Error::Other(e.to_string())))
    }

    async fn drop(&mut self, c: Resource<MqttConnection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}
