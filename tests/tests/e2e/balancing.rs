//! Catalog in front of several Discount replicas: RPCs spread over all of them, a replica that
//! dies or hangs leaves the rotation without failing a request, one that comes back gets
//! traffic again, and a name is followed as its addresses change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use catalog_service::balancer::ReplicaSettings;
use catalog_service::discount::{CoalesceSettings, DiscountAddr};
use e2e_tests::{
    CatalogOptions, CountingDiscount, Replica, TestResolver, service_pki, spawn_black_hole,
    spawn_catalog_balancing, spawn_catalog_for, spawn_counting_discount,
};
use otlp_receiver::{ReceivedSpan, Receiver, kind};

use crate::stream::{STALL_GUARD, Stream};
use crate::tracing::{http_to, telemetry};

/// Fast health checks and lookups, and a deadline roomy enough for a loaded CI machine. Slots
/// for every request, so that RPCs spread over the replicas; but a request still queues behind
/// RPCs in flight at their usual speed until a batch's worth waits, so an RPC may carry a few
/// requests and the assertions count requests per replica loosely. Coalescing has tests of its
/// own.
fn options() -> CatalogOptions {
    CatalogOptions {
        discount_timeout: Duration::from_secs(2),
        replicas: ReplicaSettings {
            health_interval: Duration::from_millis(100),
            resolve_interval: Duration::from_millis(50),
            ..ReplicaSettings::default()
        },
        coalescing: CoalesceSettings {
            rpcs_in_flight: 64,
            ..CoalesceSettings::default()
        },
        ..CatalogOptions::default()
    }
}

async fn three_replicas() -> (e2e_tests::pki::ServicePki, Vec<Replica>) {
    let pki = service_pki();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&pki).await);
    }
    (pki, replicas)
}

fn answered(replicas: &[Replica]) -> Vec<usize> {
    replicas.iter().map(Replica::answered).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_stream_is_shared_fairly_by_three_replicas() {
    // Three equal replicas: served by the same threads (this test's runtime), so that none is
    // slower than the others. (A replica on a thread of its own can get less CPU on a busy
    // machine, answer slower, and rightly be sent less: picking steers away from a slow one.)
    let pki = service_pki();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let counting = CountingDiscount::default();
        let server = spawn_counting_discount(&pki, counting.clone()).await;
        replicas.push((counting, server));
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(|(_, server)| server.addr).collect();
    let catalog = spawn_catalog_balancing(&pki, &addrs, options()).await;

    let mut stream = Stream::start(catalog.addr, 4);
    stream.wait_for_more(600).await;
    let (requests, _) = stream.stop().await;

    let answered: Vec<usize> = replicas
        .iter()
        .map(|(counting, _)| counting.calls())
        .collect();
    let total: usize = answered.iter().sum();
    // An RPC carries at most the four clients' requests (the last few may still be in flight
    // when counted).
    assert!(
        total * 4 + 4 >= requests,
        "{total} RPCs for {requests} requests"
    );
    for (i, n) in answered.iter().enumerate() {
        assert!(
            n * 5 >= total,
            "replica {i} was sent {n} of {total} RPCs, under 20%: {answered:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_fails_no_request_and_gets_traffic_again_once_restarted() {
    let (pki, mut replicas) = three_replicas().await;
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let catalog = spawn_catalog_balancing(&pki, &addrs, options()).await;
    let mut stream = Stream::start(catalog.addr, 4);
    stream.wait_for_more(150).await;

    // Killed mid-stream: its connections drop with RPCs in flight.
    replicas[1].kill().await;
    let at_kill = replicas[1].answered();
    let others_at_kill = replicas[0].answered() + replicas[2].answered();
    stream.wait_for_more(300).await;
    // An RPC carries at most the four clients' requests.
    assert!(
        replicas[0].answered() + replicas[2].answered() >= others_at_kill + 300 / 4 - 4,
        "the others did not take over: {:?}",
        answered(&replicas)
    );

    // Back on the same address: the health checks put it back in rotation.
    replicas[1].restart().await;
    stream
        .run_until("the restarted replica answers again", || {
            replicas[1].answered() >= at_kill + 30
        })
        .await;
    stream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_with_coalesced_rpcs_in_flight_fails_no_request() {
    let (pki, mut replicas) = three_replicas().await;
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    // Default coalescing (two RPCs in flight) under sixteen concurrent clients: requests queue
    // and go out together.
    let options = CatalogOptions {
        coalescing: CoalesceSettings::default(),
        ..options()
    };
    let catalog = spawn_catalog_balancing(&pki, &addrs, options).await;
    let mut stream = Stream::start(catalog.addr, 16);
    stream.wait_for_more(300).await;

    // Killed mid-stream: the coalesced RPCs in flight on it fail, and every request in them
    // is retried on another replica (the stream checks each answer is discounted).
    replicas[1].kill().await;
    stream.wait_for_more(300).await;
    let (requests, _) = stream.stop().await;
    let rpcs: usize = answered(&replicas).iter().sum();
    assert!(
        rpcs < requests,
        "{rpcs} RPCs for {requests} requests: nothing was coalesced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_accepts_but_never_answers_leaves_the_rotation() {
    let pki = service_pki();
    let replicas = [Replica::start(&pki).await, Replica::start(&pki).await];
    let hung = spawn_black_hole().await;
    let addrs = [replicas[0].addr, hung.addr, replicas[1].addr];
    let catalog = spawn_catalog_balancing(&pki, &addrs, options()).await;

    // One request at a time: the hung replica never has more RPCs in flight than the others,
    // so only taking it out of rotation keeps requests away from it.
    let mut stream = Stream::start(catalog.addr, 1);
    stream.wait_for_more(60).await;
    let (requests, waited) = stream.stop().await;

    // Every request got its discount from a real replica (`stop` checks each response), and,
    // once the hung one was out of rotation, none waited on it again: only the few
    // sent to it before the first timeout or health check took it out did.
    assert!(
        waited <= 2,
        "{waited} of {requests} requests waited on the hung replica: it stayed in rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_rpcs_hang_while_its_health_passes_is_kept_out_longer_each_time() {
    let pki = service_pki();
    let replicas = [Replica::start(&pki).await, Replica::start(&pki).await];
    // TLS, HTTP/2 and health checks work; discount RPCs never answer.
    let hung_rpcs = CountingDiscount {
        hang: true,
        ..CountingDiscount::default()
    };
    let hung = spawn_counting_discount(&pki, hung_rpcs.clone()).await;
    let addrs = [replicas[0].addr, hung.addr, replicas[1].addr];
    let base = Duration::from_millis(100);
    let mut options = options();
    options.replicas.health_interval = Duration::from_millis(20);
    options.replicas.base_ejection_time = base;
    options.replicas.max_ejection_time = Duration::from_secs(2);
    // Catalog's own record of when it sent each RPC to the hung replica and when it gave up
    // on it: the client span of each attempt (every span kept: the queue holds them all).
    let receiver = Receiver::start().await.unwrap();
    let mut vars = http_to(&receiver);
    vars.push(("OTEL_BSP_MAX_QUEUE_SIZE", "65536".to_owned()));
    let telemetry = telemetry("catalog", &vars);
    options.tracer = telemetry.tracer();
    let catalog = spawn_catalog_balancing(&pki, &addrs, options).await;

    let arrivals = || hung_rpcs.arrivals.lock().unwrap().len();
    let mut stream = Stream::start(catalog.addr, 1);
    stream
        .run_until("the hung replica is sent 5 RPCs", || arrivals() >= 5)
        .await;
    stream.stop().await;

    // Every request still got its discount, from a real replica, within the deadline (`stop`
    // checks each response), and each time an RPC gave up on the hung replica, Catalog sent
    // it no other for twice as long as the time before, although every health round in
    // between passed. Without the back-off it would be back one health round (20 ms) later.
    telemetry.flush().await;
    let sent = arrivals();
    let hung_port = hung.addr.port().to_string();
    let on_hung = |spans: &[ReceivedSpan]| -> Vec<ReceivedSpan> {
        let mut attempts: Vec<ReceivedSpan> = spans
            .iter()
            .filter(|s| s.kind == kind::CLIENT && s.attr("server.port") == Some(&hung_port))
            .cloned()
            .collect();
        attempts.sort_by_key(|s| s.start);
        attempts
    };
    let spans = receiver
        .wait_for("a span for every RPC sent to the hung replica", |spans| {
            on_hung(spans).len() >= sent
        })
        .await;
    let attempts = on_hung(&spans);
    for (n, pair) in attempts.windows(2).take(4).enumerate() {
        let out = pair[1]
            .start
            .duration_since(pair[0].end)
            .unwrap_or_default();
        let back_off = base * (1 << n);
        assert!(
            out >= back_off,
            "RPC {} went to the hung replica {out:?} after RPC {} gave up on it: sooner than \
             its back-off of {back_off:?}",
            n + 2,
            n + 1
        );
    }
    drop(hung);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_the_name_as_its_addresses_change() {
    let (pki, replicas) = three_replicas().await;
    let resolver = Arc::new(TestResolver::default());
    resolver.set(&[replicas[0].addr]);
    let mut options = options();
    options.replicas.resolver = resolver.clone();
    let name = DiscountAddr {
        host: "discount.shop.test".into(),
        port: replicas[0].addr.port(),
    };
    let catalog = spawn_catalog_for(&pki, vec![name], options).await;

    let mut stream = Stream::start(catalog.addr, 2);
    stream.wait_for_more(50).await;
    assert_eq!(
        answered(&replicas)[1..],
        [0, 0],
        "only the resolved replica"
    );

    // Scaled up: the new addresses get traffic.
    resolver.set(&[replicas[0].addr, replicas[1].addr, replicas[2].addr]);
    stream
        .run_until("every replica answers", || {
            answered(&replicas).iter().all(|&n| n >= 20)
        })
        .await;

    // Scaled down to one: the others stop getting RPCs.
    resolver.set(&[replicas[2].addr]);
    let give_up = tokio::time::Instant::now() + STALL_GUARD;
    loop {
        let before = answered(&replicas);
        stream.wait_for_more(50).await;
        let after = answered(&replicas);
        if after[0] == before[0] && after[1] == before[1] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "removed replicas still get RPCs: {after:?}"
        );
    }
    stream.stop().await;
}
