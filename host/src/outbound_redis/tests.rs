//! The capability alone: the `fermyon:spin/redis` methods of an instance called directly, without
//! an engine, against a real `redis-server` (test-brokers), and `execute`'s value conversion.

use std::sync::Arc;

use redis::{FromRedisValue, Value};
use wasmtime::component::Resource;

use super::v2::{Error, HostConnection, RedisParameter, RedisResult};
use super::{
    results_size, within_limit, OutboundRedisInstance, Pool, RedisConnection, Results,
    MAX_HOST_BUFFERED_BYTES,
};
use crate::allowed_hosts::{AllowedHosts, OutboundGate};
use crate::block_on;
use crate::expressions::Resolver;

/// A redis-server of the test's own. Without one the test fails, as the other broker tests do:
/// a skipped case would be counted as passed (`cargo xtask test` installs redis-server).
fn redis_server() -> test_brokers::Redis {
    test_brokers::Redis::start()
}

fn instance(allowed: &[String], pool: &Arc<Pool>) -> OutboundRedisInstance {
    let allowed = AllowedHosts::parse(allowed, &Resolver::default(), &[]).unwrap();
    let gate = OutboundGate::new("caller".into(), Arc::new(allowed));
    OutboundRedisInstance::new(gate, pool.clone())
}

/// An instance allowed to reach `server`, with a connection open to it.
async fn connected(
    server: &test_brokers::Redis,
) -> (OutboundRedisInstance, Resource<RedisConnection>) {
    let mut inst = instance(&[server.url()], &Arc::new(Pool::default()));
    let c = open(&mut inst, &server.url()).await.unwrap();
    (inst, c)
}

/// The same connection again: a guest passes its handle to every call.
fn again(c: &Resource<RedisConnection>) -> Resource<RedisConnection> {
    Resource::new_own(c.rep())
}

/// Opens `address`: a trap is a failure of the test, a guest-visible error is returned.
async fn open(
    inst: &mut OutboundRedisInstance,
    address: &str,
) -> Result<Resource<RedisConnection>, Error> {
    inst.open(address.to_string()).await.expect("no trap")
}

/// How many connections `server` has accepted so far.
fn connections_accepted(admin: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("stats").query(admin).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `(allowed_outbound_hosts, address)` refused before any connection is tried, with Spin's
/// `invalid-address`. `{port}` is a port nothing listens on, so a wrongly allowed address would
/// show as `other(...)` (connection refused) instead.
const REFUSED: &[(&[&str], &str)] = &[
    (&[], "redis://127.0.0.1:{port}"),
    (&["redis://127.0.0.1:1"], "redis://127.0.0.1:{port}"),
    (&["redis://10.0.0.1:{port}"], "redis://127.0.0.1:{port}"),
    (&["mqtt://127.0.0.1:{port}"], "redis://127.0.0.1:{port}"),
    // No port in the entry: only Redis's well-known 6379.
    (&["redis://127.0.0.1"], "redis://127.0.0.1:{port}"),
    // Allowed by the list, but not a URL redis-rs takes (Spin's `Client::open` check).
    (&["*://*:*"], "http://127.0.0.1:{port}"),
    (&["*://*:*"], "not a url"),
];

#[test]
fn addresses_outside_allowed_hosts_are_invalid_address() {
    block_on(async {
        let port = test_brokers::free_port().to_string();
        for (allowed, address) in REFUSED {
            let allowed: Vec<String> = allowed.iter().map(|a| a.replace("{port}", &port)).collect();
            let address = address.replace("{port}", &port);
            let pool = Arc::new(Pool::default());
            let r = open(&mut instance(&allowed, &pool), &address).await;
            assert!(
                matches!(r, Err(Error::InvalidAddress)),
                "{allowed:?} {address}: {r:?}"
            );
            assert!(pool.conns.lock().unwrap().is_empty());
        }
    });
}

#[test]
fn an_allowed_address_where_nothing_listens_is_other_without_the_password() {
    block_on(async {
        let port = test_brokers::free_port();
        let pool = Arc::new(Pool::default());
        let mut inst = instance(&[format!("redis://127.0.0.1:{port}")], &pool);
        let address = format!("redis://:hunter2@127.0.0.1:{port}");
        match open(&mut inst, &address).await {
            Err(Error::Other(message)) => assert!(!message.contains("hunter2"), "{message}"),
            r => panic!("{r:?}"),
        }
        // Nothing half-made is kept for the next request.
        assert!(pool.conns.lock().unwrap().is_empty());
    });
}

#[test]
fn every_command_round_trips_on_a_real_redis() {
    let server = redis_server();
    block_on(async {
        let (mut inst, c) = connected(&server).await;
        let i = &mut inst;

        assert_eq!(i.get(again(&c), "k".into()).await.unwrap().unwrap(), None);
        i.set(again(&c), "k".into(), b"v\0bytes".to_vec())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            i.get(again(&c), "k".into()).await.unwrap().unwrap(),
            Some(b"v\0bytes".to_vec())
        );

        assert_eq!(i.incr(again(&c), "n".into()).await.unwrap().unwrap(), 1);
        assert_eq!(i.incr(again(&c), "n".into()).await.unwrap().unwrap(), 2);
        // Not a number: Redis's refusal, as `other`.
        let r = i.incr(again(&c), "k".into()).await.unwrap();
        assert!(
            matches!(&r, Err(Error::Other(m)) if m.contains("not an integer")),
            "{r:?}"
        );

        let keys = vec!["k".to_string(), "n".into(), "absent".into()];
        assert_eq!(i.del(again(&c), keys).await.unwrap().unwrap(), 2);

        let abc = vec!["a".to_string(), "b".into(), "c".into(), "a".into()];
        assert_eq!(
            i.sadd(again(&c), "s".into(), abc).await.unwrap().unwrap(),
            3
        );
        let mut members = i.smembers(again(&c), "s".into()).await.unwrap().unwrap();
        members.sort();
        assert_eq!(members, ["a", "b", "c"]);
        let gone = vec!["a".to_string(), "z".into()];
        assert_eq!(
            i.srem(again(&c), "s".into(), gone).await.unwrap().unwrap(),
            1
        );
        // A set command on a string: Redis's WRONGTYPE, which Spin also passes on as `other`
        // (its `type-error` is for replies redis-rs cannot convert).
        i.set(again(&c), "str".into(), b"x".to_vec())
            .await
            .unwrap()
            .unwrap();
        let r = i
            .sadd(again(&c), "str".into(), vec!["a".into()])
            .await
            .unwrap();
        assert!(
            matches!(&r, Err(Error::Other(m)) if m.contains("WRONGTYPE")),
            "{r:?}"
        );
        let r = i.smembers(again(&c), "str".into()).await.unwrap();
        assert!(
            matches!(&r, Err(Error::Other(m)) if m.contains("WRONGTYPE")),
            "{r:?}"
        );

        i.drop(c).await.unwrap();
    });
}

#[test]
fn publish_reaches_a_subscriber() {
    let server = redis_server();
    let mut subscriber = server.connection();
    subscriber
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe("orders").unwrap();
    block_on(async {
        let (mut inst, c) = connected(&server).await;
        inst.publish(again(&c), "orders".into(), b"order-1".to_vec())
            .await
            .unwrap()
            .unwrap();
    });
    let message = pubsub.get_message().unwrap();
    assert_eq!(message.get_channel_name(), "orders");
    assert_eq!(message.get_payload_bytes(), b"order-1");
}

fn show(results: &[RedisResult]) -> String {
    format!("{results:?}")
}

#[test]
fn execute_returns_each_reply_kind_flattened() {
    let server = redis_server();
    block_on(async {
        let (mut inst, c) = connected(&server).await;
        let bin = |s: &str| RedisParameter::Binary(s.as_bytes().to_vec());
        let cases: Vec<(&str, Vec<RedisParameter>, Vec<RedisResult>)> = vec![
            (
                "SET",
                vec![bin("k"), bin("v")],
                vec![RedisResult::Status("OK".into())],
            ),
            (
                "GET",
                vec![bin("k")],
                vec![RedisResult::Binary(b"v".to_vec())],
            ),
            ("GET", vec![bin("absent")], vec![RedisResult::Nil]),
            (
                "INCRBY",
                vec![bin("n"), RedisParameter::Int64(-5)],
                vec![RedisResult::Int64(-5)],
            ),
            ("PING", vec![], vec![RedisResult::Status("PONG".into())]),
            (
                "RPUSH",
                vec![bin("l"), bin("x"), bin("y")],
                vec![RedisResult::Int64(2)],
            ),
            // An array reply is flattened into its elements, as Spin does.
            (
                "LRANGE",
                vec![
                    bin("l"),
                    RedisParameter::Int64(0),
                    RedisParameter::Int64(-1),
                ],
                vec![
                    RedisResult::Binary(b"x".to_vec()),
                    RedisResult::Binary(b"y".to_vec()),
                ],
            ),
            (
                "MGET",
                vec![bin("k"), bin("absent")],
                vec![RedisResult::Binary(b"v".to_vec()), RedisResult::Nil],
            ),
            ("LRANGE", vec![bin("absent"), bin("0"), bin("-1")], vec![]),
        ];
        for (command, arguments, want) in cases {
            let got = inst
                .execute(again(&c), command.into(), arguments)
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{command}: {e:?}"));
            assert_eq!(show(&got), show(&want), "{command}");
        }
        // Redis's own refusals are `other`, never a trap.
        for (command, arguments) in [
            ("NOSUCHCOMMAND", vec![]),
            ("INCR", vec![bin("l")]),
            ("GET", vec![]),
        ] {
            let r = inst
                .execute(again(&c), command.into(), arguments)
                .await
                .unwrap();
            assert!(matches!(r, Err(Error::Other(_))), "{command}: {r:?}");
        }
    });
}

/// Every Redis value kind, converted as Spin 3.6.3's `RedisResults` converts it (RESP3 kinds
/// included, though a RESP2 connection never sees them): `Err` for the kinds it refuses.
#[test]
fn results_convert_each_value_kind_as_spin_does() {
    // num-bigint's `BigInt`, which nanohost does not name: built from a `u128`.
    let big = Value::BigNumber(From::from(u128::MAX));
    let cases: Vec<(Value, Result<Vec<RedisResult>, &str>)> = vec![
        (Value::Nil, Ok(vec![RedisResult::Nil])),
        (Value::Int(-7), Ok(vec![RedisResult::Int64(-7)])),
        (
            Value::BulkString(vec![0, 255]),
            Ok(vec![RedisResult::Binary(vec![0, 255])]),
        ),
        (
            Value::SimpleString("QUEUED".into()),
            Ok(vec![RedisResult::Status("QUEUED".into())]),
        ),
        (Value::Okay, Ok(vec![RedisResult::Status("OK".into())])),
        (
            Value::Double(1.5),
            Ok(vec![RedisResult::Binary(b"1.5".to_vec())]),
        ),
        (Value::Boolean(true), Ok(vec![RedisResult::Int64(1)])),
        (Value::Boolean(false), Ok(vec![RedisResult::Int64(0)])),
        (
            big,
            Ok(vec![RedisResult::Binary(
                u128::MAX.to_string().into_bytes(),
            )]),
        ),
        // Nested arrays and sets are flattened depth-first.
        (
            Value::Array(vec![
                Value::Int(1),
                Value::Set(vec![Value::Nil, Value::Okay]),
                Value::Array(vec![]),
            ]),
            Ok(vec![
                RedisResult::Int64(1),
                RedisResult::Nil,
                RedisResult::Status("OK".into()),
            ]),
        ),
        (Value::Map(vec![(Value::Int(1), Value::Int(2))]), Err("Map")),
        (
            Value::Attribute {
                data: Box::new(Value::Nil),
                attributes: vec![],
            },
            Err("Attribute"),
        ),
        (
            Value::VerbatimString {
                format: redis::VerbatimFormat::Text,
                text: "t".into(),
            },
            Err("verbatim"),
        ),
        (
            Value::Push {
                kind: redis::PushKind::Message,
                data: vec![],
            },
            Err("Pub/Sub"),
        ),
        // One unsupported element fails the whole reply.
        (
            Value::Array(vec![Value::Int(1), Value::Map(vec![])]),
            Err("Map"),
        ),
    ];
    for (value, want) in cases {
        let got = Results::from_redis_value(&value);
        match (got, want) {
            (Ok(Results(got)), Ok(want)) => assert_eq!(show(&got), show(&want), "{value:?}"),
            (Err(e), Err(what)) => {
                assert_eq!(e.kind(), redis::ErrorKind::TypeError, "{value:?}");
                assert!(e.to_string().contains(what), "{value:?}: {e}");
            }
            (got, want) => panic!("{value:?}: {:?}, want {want:?}", got.map(|r| show(&r.0))),
        }
    }
}

#[test]
fn one_pooled_connection_per_address_across_instances() {
    let server = redis_server();
    block_on(async {
        let mut admin = server.connection();
        let before = connections_accepted(&mut admin);
        let pool = Arc::new(Pool::default());
        let db0 = server.url();
        let db1 = format!("{}/1", server.url());
        let allowed = [server.url()];
        let mut first = instance(&allowed, &pool);
        let mut second = instance(&allowed, &pool);
        for inst in [&mut first, &mut second] {
            for _ in 0..3 {
                let c = open(inst, &db0).await.unwrap();
                inst.incr(c, "opens".into()).await.unwrap().unwrap();
            }
        }
        assert_eq!(connections_accepted(&mut admin), before + 1);
        // Another address (here another database) is another connection, not a shared one.
        let c1 = open(&mut first, &db1).await.unwrap();
        assert_eq!(connections_accepted(&mut admin), before + 2);
        assert_eq!(
            first
                .get(again(&c1), "opens".into())
                .await
                .unwrap()
                .unwrap(),
            None,
            "database 1 sees database 0's keys"
        );
        let c0 = open(&mut second, &db0).await.unwrap();
        assert_eq!(
            second.get(c0, "opens".into()).await.unwrap().unwrap(),
            Some(b"6".to_vec())
        );
        assert_eq!(pool.conns.lock().unwrap().len(), 2);
    });
}

#[test]
fn a_stopped_redis_is_an_error_for_the_guest_not_a_trap() {
    let server = redis_server();
    block_on(async {
        let pool = Arc::new(Pool::default());
        let url = server.url();
        let mut inst = instance(std::slice::from_ref(&url), &pool);
        let c = open(&mut inst, &url).await.unwrap();
        inst.set(again(&c), "k".into(), b"v".to_vec())
            .await
            .unwrap()
            .unwrap();
        drop(server);
        let r = inst.get(again(&c), "k".into()).await;
        assert!(matches!(r, Ok(Err(Error::Other(_)))), "{r:?}");
        let r = inst.execute(again(&c), "PING".into(), vec![]).await;
        assert!(matches!(r, Ok(Err(Error::Other(_)))), "{r:?}");
    });
}

/// Spin refuses a `get` or `execute` result larger than its host buffer limit (128 MiB), counted
/// as Spin counts it; a real value that large is too heavy for a unit test, so the count and the
/// cut are checked on their own.
#[test]
fn results_beyond_spin_s_buffer_limit_are_other() {
    assert!(within_limit((), MAX_HOST_BUFFERED_BYTES).is_ok());
    let r = within_limit((), MAX_HOST_BUFFERED_BYTES + 1);
    assert!(
        matches!(&r, Err(Error::Other(m)) if m == "query result exceeds limit of 134217728 bytes"),
        "{r:?}"
    );
    let each = std::mem::size_of::<RedisResult>();
    let results = [
        RedisResult::Nil,
        RedisResult::Int64(1),
        RedisResult::Binary(vec![0; 1000]),
        RedisResult::Status("OK".into()),
    ];
    assert_eq!(
        results_size(&results),
        std::mem::size_of::<Vec<RedisResult>>() + 4 * each + 1000 + 2
    );
}
