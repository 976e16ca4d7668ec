//! Brokers that let no one in without a password: `redis-server --requirepass` and a Mosquitto
//! with `allow_anonymous false` and a `password_file`. The plain fixtures (`Redis::start`,
//! `Mosquitto::start`) ask for nothing; these are for the credential cases of issue 10.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_until_serving, Mosquitto, Redis, TempDir};

/// The characters a password may not show raw inside a URL's userinfo are escaped (`%40` for
/// `@`): how the password appears in `redis://:<password>@host` and in the runtime config.
pub fn url_encoded(password: &str) -> String {
    percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A Redis that needs `password` (`AUTH`), and what a client needs to get in.
pub struct SecuredRedis {
    pub redis: Redis,
    pub password: String,
}

impl Redis {
    /// `redis-server` on a free loopback port that refuses every command before `AUTH password`.
    pub fn start_with_password(password: &str) -> SecuredRedis {
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                password,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (apt-get install redis-server)");
        let pid = child.id();
        let url = format!("redis://:{}@127.0.0.1:{port}", url_encoded(password));
        wait_until_serving(port, &mut child, "redis-server", || {
            super::redis_process_id(&url) == Some(pid)
        });
        SecuredRedis {
            redis: Redis { child, port },
            password: password.to_string(),
        }
    }
}

impl SecuredRedis {
    /// `redis://127.0.0.1:<port>`: where it is, without credentials (an allowed outbound host).
    pub fn address(&self) -> String {
        self.redis.url()
    }

    /// `redis://:<password>@127.0.0.1:<port>`, the password URL-encoded.
    pub fn url_with(&self, password: &str) -> String {
        format!(
            "redis://:{}@127.0.0.1:{}",
            url_encoded(password),
            self.redis.port
        )
    }

    /// A Spin runtime config in `dir` whose `default` store is this Redis, opened with `password`.
    pub fn runtime_config(&self, password: &str, dir: &Path) -> PathBuf {
        Redis::runtime_config_for(&self.url_with(password), dir)
    }

    /// A blocking connection that has passed `AUTH`.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url_with(&self.password))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("connect to the test's redis-server with its password")
    }

    /// How many clients are subscribed to `channel`.
    pub fn subscribers(&self, channel: &str) -> i64 {
        let mut numsub = redis::cmd("PUBSUB");
        numsub.arg("NUMSUB").arg(channel);
        let (_, count): (String, i64) = numsub.query(&mut self.connection()).unwrap();
        count
    }

    /// Whether a client without the password is refused (so the apps really authenticate).
    pub fn refuses_anonymous_clients(&self) -> bool {
        let anonymous = redis::Client::open(self.redis.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .and_then(|mut c| redis::cmd("DBSIZE").query::<i64>(&mut c));
        matches!(anonymous, Err(e) if e.code() == Some("NOAUTH"))
    }
}

/// A Mosquitto that lets in `username` with `password` and no one else.
pub struct SecuredMosquitto {
    pub mosquitto: Mosquitto,
    pub username: String,
    pub password: String,
}

impl Mosquitto {
    /// `mosquitto` on a free loopback port with `allow_anonymous false` and a `password_file` that
    /// holds `username` (hashed by `mosquitto_passwd`, as an operator would make it).
    pub fn start_with_password(username: &str, password: &str) -> SecuredMosquitto {
        let port = free_port();
        let dir = TempDir::new("mosquitto-secured");
        let passwords = dir.file("passwords", "");
        let hashed = Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&passwords)
            .args([username, password])
            .stdout(Stdio::null())
            .status()
            .expect("mosquitto_passwd is not installed (apt-get install mosquitto)");
        assert!(hashed.success(), "mosquitto_passwd failed: {hashed}");
        // Started as root, mosquitto drops to its own user, which must read the password file and
        // append to the log (the plain fixture explains the log).
        let log = dir.file("mosquitto.log", "");
        for file in [&passwords, &log] {
            std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .expect("open the broker's files to its user");
        }
        let conf = dir.file(
            "mosquitto.conf",
            &format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n\
                 persistence false\nset_tcp_nodelay true\nlog_dest file {}\nlog_type subscribe\n\
                 log_type error\nlog_type information\n",
                passwords.display(),
                log.display()
            ),
        );
        let mut child = super::mosquitto_process(&conf);
        wait_until_serving(port, &mut child, "mosquitto", || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .any(|line| line.ends_with(" running"))
        });
        SecuredMosquitto {
            mosquitto: Mosquitto {
                child,
                port,
                log,
                _dir: dir,
            },
            username: username.to_string(),
            password: password.to_string(),
        }
    }
}

impl SecuredMosquitto {
    /// `mqtt://127.0.0.1:<port>`: where it is; the credentials travel apart.
    pub fn address(&self) -> String {
        self.mosquitto.url()
    }

    /// Whether the broker's answer to a CONNECT with `credentials` (None: anonymous) is a refusal.
    pub async fn refuses(&self, credentials: Option<(&str, &str)>) -> bool {
        let mut options = rumqttc::MqttOptions::new(
            format!("probe-{}", free_port()),
            "127.0.0.1",
            self.mosquitto.port,
        );
        if let Some((username, password)) = credentials {
            options.set_credentials(username, password);
        }
        let (_client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
        let answer = tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("the broker answers a CONNECT within 10 s");
        match answer {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => {
                ack.code != rumqttc::ConnectReturnCode::Success
            }
            Ok(other) => panic!("a CONNECT was answered with {other:?}"),
            Err(rumqttc::ConnectionError::ConnectionRefused(_)) => true,
            Err(e) => panic!("the broker did not answer a CONNECT: {e}"),
        }
    }
}
