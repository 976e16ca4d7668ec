//! The `nanohost` binary: one-line errors with exit code 1, and `SPIN_VARIABLE_*` overrides.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::TempDir;

/// Runs `nanohost up` with `args` and expects it to fail; returns its stderr.
fn up_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nanohost"))
        .arg("up")
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run nanohost");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    stderr
}

fn probe_manifest(dir: &TempDir, extra_component_fields: &str, app_sections: &str) -> String {
    let manifest = support::probe_toml("cli")
        .application(app_sections)
        .variable("greeting", r#"{ default = "hello" }"#)
        .field(r#"variables = { greeting = "{{ greeting }}, world" }"#)
        .field(extra_component_fields);
    dir.file("spin.toml", &manifest.to_string())
        .display()
        .to_string()
}

#[test]
fn missing_manifest() {
    let err = up_fails(&[
        "--manifest",
        "/nonexistent/spin.toml",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(
        err.contains("cannot read manifest /nonexistent/spin.toml"),
        "{err}"
    );
}

#[test]
fn bad_manifest_names_the_problem() {
    let dir = TempDir::new("cli-bad-manifest");
    let m = probe_manifest(&dir, "allowed_hosts = []", "");
    let err = up_fails(&["--manifest", &m, "--listen", "127.0.0.1:0"]);
    assert!(
        err.contains("invalid manifest") && err.contains("allowed_hosts"),
        "{err}"
    );

    let m = dir.file("broken.toml", "spin_manifest_version = 2\n[application\n");
    let err = up_fails(&["--manifest", &m.display().to_string()]);
    assert!(err.contains("invalid manifest"), "{err}");
}

#[test]
fn bad_runtime_config() {
    let dir = TempDir::new("cli-bad-rc");
    let m = probe_manifest(&dir, "", "");
    let rc = dir.file("rc.toml", "[key_value_store.default]\ntype = \"dynamo\"\n");
    let err = up_fails(&[
        "--manifest",
        &m,
        "--runtime-config",
        &rc.display().to_string(),
    ]);
    assert!(
        err.contains("invalid runtime config") && err.contains("dynamo"),
        "{err}"
    );

    let err = up_fails(&["--manifest", &m, "--runtime-config", "/nonexistent/rc.toml"]);
    assert!(err.contains("cannot read runtime config"), "{err}");
}

#[test]
fn port_in_use() {
    let dir = TempDir::new("cli-port");
    let m = probe_manifest(&dir, "", "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = up_fails(&["--manifest", &m, "--listen", &addr]);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

/// An MQTT trigger whose broker cannot be reached stops the start. (A Redis store that is down at
/// start does not, as in Spin: `brokers.rs` checks that on both hosts.)
#[test]
fn unreachable_mqtt_broker() {
    let dir = TempDir::new("cli-unreachable");
    let port = support::free_port();
    let cases = [
        (
            format!("[application.trigger.redis]\naddress = \"redis://127.0.0.1:{port}\"\n[[trigger.redis]]\nchannel = \"c\""),
            format!("Redis trigger cannot connect to redis://127.0.0.1:{port}"),
        ),
        (
            format!("[application.trigger.mqtt]\naddress = \"mqtt://127.0.0.1:{port}\"\n[[trigger.mqtt]]\ntopic = \"t\""),
            format!("cannot connect to MQTT broker at 127.0.0.1:{port}"),
        ),
    ];
    for (trigger, want) in cases {
        let m = probe_manifest(&dir, "", &format!("{trigger}\ncomponent = \"probe\"\n"));
        let err = up_fails(&["--manifest", &m, "--listen", "127.0.0.1:0"]);
        assert!(err.contains(&want), "{err}");
    }
}

#[test]
fn spin_variable_environment_override() {
    let dir = TempDir::new("cli-env");
    let m = probe_manifest(&dir, "", "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nanohost"))
        .args(["up", "--manifest", &m, "--listen", "127.0.0.1:0"])
        .env("SPIN_VARIABLE_GREETING", "bonjour")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run nanohost");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = match lines.next() {
            Some(Ok(l)) => l,
            other => {
                let _ = child.kill();
                panic!("nanohost stopped before serving: {other:?}");
            }
        };
        if let Some(rest) = line.strip_prefix("nanohost: serving on http://") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let body = http_get(&addr, "/p/var/greeting");
    let _ = child.kill();
    let _ = child.wait();
    let body = body.expect("request");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("bonjour, world"), "{body}");
}

/// `nanohost check` prints the plan, and neither its JSON nor its errors show a secret: one given
/// by `--variable`, one from the environment, and a template made from one.
#[test]
fn check_shows_no_secret() {
    let dir = TempDir::new("cli-check-secrets");
    let manifest = support::probe_toml("cli")
        .variable("token", r#"{ required = true, secret = true }"#)
        .variable("redis_password", r#"{ required = true, secret = true }"#)
        .field(r#"allowed_outbound_hosts = ["redis://127.0.0.1:6379"]"#)
        .section(
            "[component.probe.variables]\ntoken = \"{{ token }}\"\n\
             redis_url = \"redis://:{{ redis_password }}@127.0.0.1:6379\"",
        );
    let m = dir.file("spin.toml", &manifest.to_string());
    let out = Command::new(env!("CARGO_BIN_EXE_nanohost"))
        .args(["check", "--manifest"])
        .arg(&m)
        .args([
            "--variable",
            "token=cli-token-s3cret",
            "--variable",
            "nope=1",
        ])
        .env("SPIN_VARIABLE_REDIS_PASSWORD", "cli-env-s3cret")
        .output()
        .expect("run nanohost check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // An undeclared variable is an error, so the run fails and prints its errors.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
    for secret in ["cli-token-s3cret", "cli-env-s3cret"] {
        assert!(!stdout.contains(secret), "{secret} in {stdout}");
        assert!(!stderr.contains(secret), "{secret} in {stderr}");
    }
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report["variables"]["token"]["secret"], true);
    assert_eq!(
        report["variables"]["token"]["value"],
        serde_json::Value::Null
    );
    assert_eq!(report["components"]["probe"]["urls"][0]["url"], "***");
}

/// A blocking GET without pulling in a blocking HTTP client.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
