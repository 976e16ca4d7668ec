//! The processes the benchmark starts: `redis-server`, `mosquitto` and the harness running a
//! shape's apps. Each is killed when its guard drops, so an error or a panic leaves nothing
//! behind; Ctrl-C reaches them all through the terminal's process group.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_until_accepting(port: u16, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited early with {status}");
        }
        if Instant::now() > deadline {
            bail!("{what} did not start on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child killed on drop.
pub struct Guard {
    pub child: Child,
    pub port: u16,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_redis() -> Result<Guard> {
    let port = free_port()?;
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run redis-server (apt-get install redis-server)")?;
    let guard_port = port;
    wait_until_accepting(port, &mut child, "redis-server")?;
    Ok(Guard {
        child,
        port: guard_port,
    })
}

/// Mosquitto with `set_tcp_nodelay true` (design.md section 7), no persistence, no logging.
pub fn start_mosquitto(dir: &Path) -> Result<Guard> {
    let port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             set_tcp_nodelay true\nlog_dest none\n"
        ),
    )?;
    let mut child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run mosquitto (apt-get install mosquitto)")?;
    wait_until_accepting(port, &mut child, "mosquitto")?;
    Ok(Guard { child, port })
}

/// `nano-bench host ...` running a shape's apps; talks over its stdin/stdout.
pub struct Harness {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Harness {
    pub fn start(
        apps: &[(PathBuf, Option<u16>)],
        runtime_config: Option<&Path>,
        env: &[(String, String)],
        log: &Path,
        root: &Path,
    ) -> Result<Harness> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.current_dir(root).arg("host");
        for (manifest, port) in apps {
            let mut arg = manifest.display().to_string();
            if let Some(p) = port {
                arg.push_str(&format!("@127.0.0.1:{p}"));
            }
            cmd.arg("--app").arg(arg);
        }
        if let Some(rc) = runtime_config {
            cmd.arg("--runtime-config").arg(rc);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let log_file = append_to(log)?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("cannot start the harness")?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut h = Harness {
            child,
            stdin,
            lines,
        };
        // Compiling the components (Cranelift) takes a few seconds in a debug build.
        let ready = h.line(Duration::from_secs(120)).with_context(|| {
            format!(
                "the apps did not start; see {} for the host's log",
                log.display()
            )
        })?;
        if !ready.contains("\"ready\"") {
            bail!("unexpected answer from the harness: {ready}");
        }
        Ok(h)
    }

    fn line(&mut self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(_) => {
                if let Some(status) = self.child.try_wait()? {
                    bail!("the harness exited with {status}");
                }
                bail!("the harness did not answer in {timeout:?}")
            }
        }
    }

    /// Sends one command, returns its one-line JSON answer.
    pub fn command(&mut self, cmd: &str) -> Result<serde_json::Value> {
        let stdin = self.stdin.as_mut().context("harness stdin closed")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        let line = self.line(Duration::from_secs(30))?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Asks the harness to stop, and kills it if it does not within a few seconds.
    pub fn stop(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "quit");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `log`, opened to add a process's output after what earlier runs wrote.
fn append_to(log: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
}

/// A peer server (real Spin, `wasmtime serve`) run as its own process, its output in `log`.
/// Waits until it accepts connections on `port`.
pub fn start_server(mut cmd: Command, port: u16, what: &str, log: &Path) -> Result<Guard> {
    let log_file = append_to(log)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    wait_until_accepting(port, &mut child, what)
        .with_context(|| format!("see {} for its output", log.display()))?;
    Ok(Guard { child, port })
}

/// A program found as the tests find it: the environment variable, then `PATH`, then the
/// given fallback files. `None` when it is nowhere.
pub fn find_tool(env: &str, name: &str, fallbacks: &[PathBuf]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| fallbacks.iter().find(|p| p.is_file()).cloned())
}
