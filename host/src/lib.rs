//! nanohost: a small Spin-compatible host for this project's components.
//!
//! It runs a Spin manifest v2 (`spin.toml`) with the Spin host interfaces the components
//! import (key-value, variables, outbound Redis/MQTT/HTTP) and the HTTP, Redis and MQTT
//! triggers, with Spin's semantics: a fresh instance per request from a pre-instantiated
//! component (WASIp3 HTTP handlers: reused instances, as Spin 4 does), per-instance memory and time limits, `allowed_outbound_hosts` enforced.
//! See README.md for what it supports and what it does not.
//!
//! The embedding API, all the rest being the host's own:
//! - [`RunningHost`] runs an app as `nanohost up` does ([`HostOptions`], [`Limits`],
//!   [`ListenerLimits`], [`InstanceReuse`], [`StateDir`]);
//! - [`check`] is `nanohost check`;
//! - [`InstanceBuilder`], [`engine_config`] and [`linker`] run components outside a manifest the
//!   way nanohost runs them (the benchmark's in-process measurements), with [`HostState`] as their
//!   store's data;
//! - [`RedactingStderr`] and [`redact_secrets`] keep secret values out of logs and messages.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod allowed_hosts;
mod app;
mod bindings;
mod check;
mod dependencies;
mod embed;
mod engine;
mod expressions;
mod key_value;
mod manifest;
mod outbound_http;
mod outbound_mqtt;
mod outbound_redis;
mod plan;
mod redact;
mod routes;
mod runtime_config;
mod secret;
/// Runs a unit test's async body on a runtime of its own.
#[cfg(test)]
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
// The manifest builder of the integration tests, so unit tests build their manifests the same way.
#[cfg(test)]
#[path = "../tests/support/spin_toml.rs"]
mod spin_toml;
mod state;
mod trigger;
mod variables;
mod wasip3;

pub use app::StateDir;
pub use check::main as check;
pub use embed::{
    engine_config, link_at_load, linker, sized_engine_config, ComponentFiles, InstanceBuilder,
};
pub use engine::{Footprint, Limits, PoolShare};
pub use redact::{secrets as redact_secrets, Stderr as RedactingStderr};
pub use state::HostState;
pub use trigger::http::ListenerLimits;
pub use wasip3::{Draw, InstanceReuse};

/// What to run and where.
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub manifest: PathBuf,
    pub runtime_config: Option<PathBuf>,
    pub listen: SocketAddr,
    /// Values for application variables (like `spin up --variable name=value`); they win over
    /// `SPIN_VARIABLE_*` in the environment and over defaults.
    pub variables: Vec<(String, String)>,
    /// Where the default key-value store lives. The `nanohost up` command uses `.spin` next to
    /// the manifest, as `spin up` does; embedders (tests, the benchmark) default to memory, so
    /// runs do not see each other's orders.
    pub state_dir: StateDir,
    /// Timeouts and caps of the HTTP listener.
    pub listener: ListenerLimits,
    /// How long WASIp3 instances live (Spin 4's reuse flags and defaults); WASIp2 instances
    /// serve one request each.
    pub reuse: InstanceReuse,
    /// Run only these components (and their triggers), like `spin up -c`; empty: all.
    pub components: Vec<String>,
}

impl Default for HostOptions {
    /// `spin.toml` in the current directory, no runtime config, 127.0.0.1:3000, the default
    /// store in memory.
    fn default() -> Self {
        HostOptions {
            manifest: PathBuf::from("spin.toml"),
            runtime_config: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            variables: Vec::new(),
            state_dir: StateDir::InMemory,
            listener: Default::default(),
            reuse: Default::default(),
            components: Vec::new(),
        }
    }
}

/// A host serving an app in the background of the current tokio runtime.
pub struct RunningHost {
    app: Arc<app::App>,
    http_addr: Option<SocketAddr>,
    max_in_flight: Option<usize>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    ticker: Option<engine::EpochTicker>,
}

impl RunningHost {
    /// Loads the manifest, compiles the components, connects triggers, binds `listen` (port 0 =
    /// ephemeral), and serves in the background on the current tokio runtime.
    pub async fn start(opts: HostOptions) -> Result<RunningHost> {
        RunningHost::start_with_limits(opts, Limits::default()).await
    }

    /// [`RunningHost::start`] with explicit per-instance limits.
    pub async fn start_with_limits(opts: HostOptions, limits: Limits) -> Result<RunningHost> {
        let env = |k: &str| std::env::var(k).ok();
        let plan = plan::configure(&plan::Inputs {
            manifest: &opts.manifest,
            runtime_config: opts.runtime_config.as_deref(),
            variables: &opts.variables,
            env: &env,
            state_dir: &opts.state_dir,
            components: &opts.components,
        });
        plan.ready()?;
        let http_components = plan.http.components();
        let app = app::App::open(&plan.components, &plan.key_value, &http_components, limits);
        let app = Arc::new(app.await?);
        let ticker = engine::EpochTicker::start(app.engine.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let mut http_addr = None;
        let http = trigger::http::HttpTrigger::new(
            app.clone(),
            &plan.http,
            opts.listener.clone(),
            opts.reuse,
        )?;
        let max_in_flight = http.as_ref().map(|h| h.max_in_flight());
        let chaining = http.as_ref().map(|h| h.chaining()).unwrap_or_default();
        if let Some(http) = http {
            let listener = tokio::net::TcpListener::bind(opts.listen)
                .await
                .with_context(|| format!("cannot listen on {}", opts.listen))?;
            let addr = listener.local_addr()?;
            http_addr = Some(addr);
            tracing::info!("serving HTTP on http://{addr}");
            tasks.push(tokio::spawn(http.serve(listener, shutdown_rx.clone())));
        }
        let redis = trigger::redis::start(
            app.clone(),
            &plan.redis,
            chaining.clone(),
            shutdown_rx.clone(),
        );
        tasks.extend(redis.await?);
        let mqtt = trigger::mqtt::start(
            app.clone(),
            plan.mqtt.as_ref(),
            chaining,
            shutdown_rx.clone(),
        );
        tasks.extend(mqtt.await?);
        if tasks.is_empty() {
            anyhow::bail!(
                "{} has no triggers: nothing to run",
                opts.manifest.display()
            );
        }
        Ok(RunningHost {
            app,
            http_addr,
            max_in_flight,
            shutdown,
            tasks,
            ticker: Some(ticker),
        })
    }

    /// Resolves when a trigger failed for good (a lost Redis subscription, as on Spin), with
    /// the reason; the caller should stop the host and exit with an error.
    pub async fn failed(&self) -> String {
        self.app.failed().await
    }

    /// HTTP requests that may run in a component at once, when the app has HTTP triggers.
    pub fn max_in_flight(&self) -> Option<usize> {
        self.max_in_flight
    }

    /// What one instance of each component takes from the pooling allocator (measured at load).
    pub fn footprints(&self) -> &std::collections::HashMap<String, Footprint> {
        &self.app.footprints
    }

    /// The bound address when the app has HTTP triggers.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Stops accepting work, lets in-flight HTTP requests finish (up to 10 s), and stops.
    pub async fn shutdown(mut self) -> Result<()> {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            if let Err(e) = t.await {
                if e.is_panic() {
                    tracing::error!("a trigger task panicked: {e}");
                }
            }
        }
        self.ticker.take();
        Ok(())
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
