//! Claims are fenced across hosts (issue 18, item 5): two hosts serve the composed app on one
//! Redis. Host A's store connection runs through a proxy that holds A's save after A claimed the
//! order's Idempotency-Key; two sweeps (the claim noted, then freed a grace period later) take the
//! claim for dead; host B places the order with the same key; then A's connection carries on.
//! A must not store a second order: counted from Redis, not from what the hosts answer.

mod support;

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use support::faults::{Census, PausingProxy};
use support::harness::{self, case, Case, HostKind};
use support::host::{App, AppDir, AppSpec};
use support::Redis;

/// The apps' `sweep_grace_ms`: how long a claim without its order stays before a sweep frees it.
const GRACE_MS: u64 = 1_000;
/// Long enough for a slow machine; a healthy run holds A for a few seconds.
const DEADLINE: Duration = Duration::from_secs(60);

/// Who stalls (A) and who takes the key over (B): every pair has real Spin in it where there is
/// one, so that nanohost is not the only host the fence is shown on.
const PAIRS: &[(HostKind, HostKind)] = &[
    (HostKind::Nanohost, HostKind::Nanohost),
    (HostKind::Spin, HostKind::Nanohost),
    (HostKind::Nanohost, HostKind::Spin),
];

/// The composed app (`spin.toml` with its sweeper) on `host`, its default store in the Redis at
/// `store_url`.
async fn start_app(host: HostKind, label: &str, store_url: &str) -> App {
    support::composed("order-app");
    support::composed("sweeper");
    let dir = AppDir::new(label);
    let config = support::redis_runtime_config(store_url, &dir.path);
    let spec = AppSpec::new(support::workspace_root().join("spin.toml"))
        .runtime_config(Some(config))
        .variable("sweep_grace_ms", GRACE_MS.to_string())
        .variable("sweep_token", support::SWEEP_TOKEN);
    App::start(host, &spec, &dir).await
}

async fn post_order(client: &Client, base: &str, details: &str, key: &str) -> (StatusCode, Value) {
    let response = client
        .post(format!("{base}/order"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(json!({ "details": details }).to_string())
        .send()
        .await
        .expect("POST /order answered");
    let status = response.status();
    let body = response.text().await.unwrap();
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("POST /order: {status} without JSON ({e}): {body:?}"));
    (status, json)
}

fn order_id(body: &Value) -> Option<String> {
    body["task"]["id"].as_str().map(String::from)
}

async fn sweep(client: &Client, base: &str) -> Value {
    let response = client
        .post(format!("{base}/sweep"))
        .bearer_auth(support::SWEEP_TOKEN)
        .send()
        .await
        .expect("POST /sweep answered");
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "sweep: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Sweeps through `base` until a sweep has freed a claim (the first sweep only notes it, one a
/// grace period later frees it); returns the number of sweeps.
async fn sweep_until_a_claim_is_freed(client: &Client, base: &str) -> usize {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for sweeps in 1.. {
        let report = sweep(client, base).await;
        if report["released_claims"].as_u64().unwrap_or(0) > 0 {
            return sweeps;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no sweep freed the stalled claim in {DEADLINE:?}: {report}"
        );
        tokio::time::sleep(Duration::from_millis(GRACE_MS / 2)).await;
    }
    unreachable!()
}

/// One pair at a time: three hosts' worth of starts at once on a small machine gain nothing.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn stalled_claimant_stores_no_second_order(a: HostKind, b: HostKind) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let redis = Redis::start();
    let proxy = PausingProxy::start(redis.port).await;
    let label = format!("fence-{}-{}", a.name(), b.name());
    let host_a = start_app(a, &format!("{label}-a"), &proxy.url()).await;
    let host_b = start_app(b, &format!("{label}-b"), &redis.url()).await;
    let client = Client::builder().timeout(DEADLINE).build().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (key, details) = (format!("fence-key-{nanos}"), format!("fence {nanos}"));

    // A's save is the first command of A's request to name an `order:` key: A has looked the key
    // up and claimed it by then, and stalls before its order exists.
    proxy.hold_next(b"order:");
    let first = {
        let (client, base, details, key) =
            (client.clone(), host_a.base(), details.clone(), key.clone());
        tokio::spawn(async move { post_order(&client, &base, &details, &key).await })
    };
    if !proxy.held_within(DEADLINE).await {
        panic!("A's save never came: {:?}", first.await);
    }
    let sweeps = sweep_until_a_claim_is_freed(&client, &host_b.base()).await;
    let (b_status, b_body) = post_order(&client, &host_b.base(), &details, &key).await;
    assert_eq!(
        b_status,
        StatusCode::ACCEPTED,
        "B, once the claim is freed: {b_body}"
    );
    let b_id = order_id(&b_body).expect("B's order id");

    proxy.resume();
    let (a_status, a_body) = first.await.unwrap();
    let census = Census::of_redis(&redis).tagged(&details);
    // Once more with the key, on each host: the key must still lead to B's order.
    let mut replays = Vec::new();
    for host in [&host_a, &host_b] {
        replays.push(post_order(&client, &host.base(), &details, &key).await);
    }
    harness::loud(&format!(
        "fencing: {} stalled, {} took over: orders stored for the key={} (ids {:?}), A answered \
         {a_status} {a_body}, B answered {b_status} with {b_id}, replays {:?}, sweeps to free \
         the claim={sweeps}",
        a.name(),
        b.name(),
        census.orders.len(),
        census.orders.iter().map(|o| &o.id).collect::<Vec<_>>(),
        replays
            .iter()
            .map(|(s, b)| (s.as_u16(), order_id(b)))
            .collect::<Vec<_>>(),
    ));

    assert_eq!(census.orders.len(), 1, "one order for the key: {census:?}");
    assert_eq!(census.orders[0].id, b_id, "the stored order is B's");
    assert_ne!(a_status, StatusCode::INTERNAL_SERVER_ERROR, "{a_body}");
    match (a_status, order_id(&a_body)) {
        // The key's order (B's), as any caller with the key and the same details gets it.
        (StatusCode::ACCEPTED, Some(id)) => assert_eq!(id, b_id, "A answered another order"),
        // "retry": the fenced claimant withdrew its order and did not see B's.
        (StatusCode::SERVICE_UNAVAILABLE | StatusCode::CONFLICT, None) => {
            assert!(a_body["error"].is_string(), "{a_body}")
        }
        other => panic!("A answered {other:?}: {a_body}"),
    }
    for (status, body) in replays {
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "a replay with the key: {body}"
        );
        assert_eq!(order_id(&body).as_deref(), Some(b_id.as_str()), "{body}");
    }
    host_a.stop().await;
    host_b.stop().await;
}

fn main() {
    let mut cases: Vec<Case> = Vec::new();
    for &(a, b) in PAIRS {
        let name = format!("composed_redis::stalled_claimant_vs_{}", b.name());
        cases.push(
            case(a, name, move || {
                stalled_claimant_stores_no_second_order(a, b)
            })
            .skip_if(b.unavailable()),
        );
    }
    harness::run(cases)
}
