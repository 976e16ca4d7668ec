use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nanohost::{Draw, HostOptions, Limits, RunningHost};

/// A small Spin-compatible host: runs a spin.toml without the Spin CLI.
#[derive(Parser)]
#[command(name = "nanohost", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the app described by a Spin manifest.
    Up {
        /// The Spin manifest.
        #[arg(long, short = 'f', default_value = "spin.toml")]
        manifest: PathBuf,
        /// A Spin runtime config file (key-value stores).
        #[arg(long)]
        runtime_config: Option<PathBuf>,
        /// Address for the HTTP trigger.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// Set an application variable (repeatable): `--variable name=value`.
        #[arg(long = "variable", value_name = "NAME=VALUE", value_parser = parse_variable)]
        variables: Vec<(String, String)>,
        /// Time limit per request or message, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        /// Memory limit per linear memory of an instance, in MiB.
        #[arg(long, default_value_t = 128)]
        memory_limit_mb: usize,
        /// Time a client may take to send a request body once the component waits for it, in
        /// milliseconds (then a JSON 408 and the connection is closed).
        #[arg(long, default_value_t = 10_000)]
        body_timeout_ms: u64,
        /// Requests one WASIp3 instance serves before it is dropped, as in Spin 4 (WASIp2
        /// components get a fresh instance per request, whatever this says); a range `a..b`
        /// draws a value per instance.
        #[arg(long, default_value = "128", value_parser = Draw::parse_count)]
        max_instance_reuse_count: Draw<usize>,
        /// Requests one WASIp3 instance serves at once, as in Spin 4 (or a range `a..b`).
        #[arg(long, default_value = "16", value_parser = Draw::parse_count)]
        max_instance_concurrent_reuse_count: Draw<usize>,
        /// How long an idle WASIp3 instance is kept for another request, as in Spin 4: seconds,
        /// or a number with `s`, `ms`, `us` or `ns` (or a range such as `100ms..2s`).
        #[arg(long, default_value = "1s", value_parser = Draw::parse_duration)]
        idle_instance_timeout: Draw<Duration>,
        /// Run only this component and its triggers (repeatable), like `spin up -c`; default:
        /// every component.
        #[arg(long = "component-id", short = 'c', value_name = "ID")]
        components: Vec<String>,
    },
    /// Load a manifest as `up` would, without compiling or connecting; print a JSON report
    /// (components, allowed hosts, variables, errors) and fail on errors.
    Check {
        #[arg(long, short = 'f', default_value = "spin.toml")]
        manifest: PathBuf,
        /// A Spin runtime config file, parsed and its key-value store labels reported.
        #[arg(long)]
        runtime_config: Option<PathBuf>,
        /// Set an application variable (repeatable): `--variable name=value`.
        #[arg(long = "variable", value_name = "NAME=VALUE", value_parser = parse_variable)]
        variables: Vec<(String, String)>,
        /// Report the component the HTTP router sends this path to (repeatable).
        #[arg(long = "route", value_name = "PATH")]
        routes: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(|| nanohost::RedactingStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Command::Check {
        manifest,
        runtime_config,
        variables,
        routes,
    } = &cli.command
    {
        return nanohost::check(manifest, runtime_config.as_deref(), variables, routes);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// One line, no backtrace: the message chain joined with ": ".
fn fail(e: anyhow::Error) -> ExitCode {
    let msg = format!("{e:#}").replace('\n', " ");
    let msg = nanohost::redact_secrets(&msg);
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Up {
        manifest,
        runtime_config,
        listen,
        variables,
        timeout_ms,
        memory_limit_mb,
        body_timeout_ms,
        max_instance_reuse_count,
        max_instance_concurrent_reuse_count,
        idle_instance_timeout,
        components,
    } = cli.command
    else {
        unreachable!("`check` returns in main");
    };
    let limits = Limits {
        timeout: Duration::from_millis(timeout_ms),
        max_memory_bytes: memory_limit_mb << 20,
        ..Limits::default()
    };
    let host = RunningHost::start_with_limits(
        HostOptions {
            manifest,
            runtime_config,
            listen,
            variables,
            state_dir: nanohost::StateDir::Beside,
            listener: nanohost::ListenerLimits {
                body_read_timeout: Duration::from_millis(body_timeout_ms),
                ..Default::default()
            },
            reuse: nanohost::InstanceReuse {
                max_instance_reuse_count,
                max_instance_concurrent_reuse_count,
                idle_instance_timeout,
            },
            components,
        },
        limits,
    )
    .await?;
    if let Some(addr) = host.http_addr() {
        eprintln!("nanohost: serving on http://{addr} (Ctrl-C to stop)");
    } else {
        eprintln!("nanohost: running (Ctrl-C to stop)");
    }
    let failure = tokio::select! {
        r = stop_signal() => { r?; None }
        why = host.failed() => Some(why),
    };
    eprintln!("nanohost: shutting down");
    host.shutdown().await?;
    match failure {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}

/// Ctrl-C, or SIGTERM (what Kubernetes, systemd and `cargo xtask up` send): both stop the host
/// the same graceful way.
async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
}

fn parse_variable(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}
