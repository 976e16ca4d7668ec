//! Brokers that let no one in without a password: `redis-server --requirepass` and a Mosquitto
//! with `allow_anonymous false` and a `password_file`. The plain fixtures (`Redis::start`,
//! `Mosquitto::start`) ask for nothing; these are for the credential cases of issue 10.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, Mosquitto, Redis, TempDir};

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

/// `redis-server` on a free loopback port that refuses every command before `AUTH password`.
pub fn redis(password: &str) -> SecuredRedis {
    let args = ["--appendonly", "no", "--requirepass", password];
    SecuredRedis {
        redis: Redis::start_with(free_port(), &args),
        password: password.to_string(),
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
        super::redis_runtime_config(&self.url_with(password), dir)
    }

    /// A blocking connection that has passed `AUTH`.
    pub fn connection(&self) -> redis::Connection {
        self.redis.connection()
    }

    /// How many clients are subscribed to `channel`.
    pub fn subscribers(&self, channel: &str) -> i64 {
        self.redis.subscribers(channel)
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
    _password_file: TempDir,
}

/// `mosquitto` on a free loopback port with `allow_anonymous false` and a `password_file` that
/// holds `username` (hashed by `mosquitto_passwd`, as an operator would make it).
pub fn mosquitto(username: &str, password: &str) -> SecuredMosquitto {
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
    // Started as root, mosquitto drops to its own user, which must read the password file.
    std::fs::set_permissions(
        &passwords,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("open the password file to the broker's user");
    let access = format!(
        "allow_anonymous false\npassword_file {}",
        passwords.display()
    );
    SecuredMosquitto {
        mosquitto: Mosquitto::try_start(free_port(), &access).unwrap_or_else(|e| panic!("{e}")),
        username: username.to_string(),
        password: password.to_string(),
        _password_file: dir,
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
