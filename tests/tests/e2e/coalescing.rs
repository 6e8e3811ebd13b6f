//! Coalescing: HTTP requests that arrive while Catalog's discount RPC is in flight go out
//! together in one RPC, and each still gets exactly its own answer, within its own deadline; a
//! batch's worth waiting goes out beside the RPC in flight; a full queue is answered at once;
//! older Discounts (without the groups RPC, or original-style) still work; per-product
//! fallback calls stay within their bounds.
//!
//! The counting Discount holds every answer until the test lets it go (a gate), so which
//! requests share an RPC is decided by the test, not by timing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use catalog_service::discount::{CoalesceSettings, DiscountGateway, FallbackSettings};
use e2e_tests::{
    CatalogOptions, CountingDiscount, Running, generated_catalog, service_pki, spawn_catalog,
    spawn_catalog_watched, spawn_counting_discount,
};
use tokio::task::JoinHandle;

use crate::{FULL_PRICE_JSON, SPEC_CUSTOMER_1_JSON, get_products, until};

/// One RPC in flight at a time, so every request after the first queues behind it.
fn one_at_a_time(timeout: Duration) -> CatalogOptions {
    CatalogOptions {
        discount_timeout: timeout,
        coalescing: CoalesceSettings {
            rpcs_in_flight: 1,
            ..CoalesceSettings::default()
        },
        ..CatalogOptions::default()
    }
}

/// A request's status, `x-discount-unavailable` header and body.
type Answer = (u16, Option<String>, String);

fn request(catalog: &Running, user: &'static str) -> JoinHandle<Answer> {
    let addr = catalog.addr;
    tokio::spawn(async move {
        let response = get_products(addr, Some(user)).await;
        let status = response.status().as_u16();
        let fallback = response
            .headers()
            .get("x-discount-unavailable")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, fallback, response.text().await.unwrap())
    })
}

fn discounted() -> Answer {
    (200, None, SPEC_CUSTOMER_1_JSON.to_owned())
}

fn no_discount() -> Answer {
    (200, None, FULL_PRICE_JSON.to_owned())
}

fn fallback(reason: &str) -> Answer {
    (200, Some(reason.to_owned()), FULL_PRICE_JSON.to_owned())
}

/// Sends one request that takes the only slot, and waits until its RPC is at Discount, held
/// by the gate. (An original-style Discount refuses the batch RPC at once and is sent the
/// request's per-product calls instead, so its count of calls only passes through 1: what is
/// waited for is a call held, not a count.)
async fn occupy(catalog: &Running, discount: &CountingDiscount) -> JoinHandle<Answer> {
    let first = request(catalog, "1");
    until("the first RPC reaches Discount", || {
        discount.in_flight.load(Ordering::SeqCst) > 0
    })
    .await;
    first
}

async fn queue(
    catalog: &Running,
    gateway: &DiscountGateway,
    users: &[&'static str],
) -> Vec<JoinHandle<Answer>> {
    let before = gateway.queued();
    let waiting: Vec<_> = users.iter().map(|user| request(catalog, user)).collect();
    until("the requests queue", || {
        gateway.queued() == before + users.len()
    })
    .await;
    waiting
}

#[tokio::test]
async fn concurrent_requests_of_different_customers_share_one_rpc_and_get_their_own_prices() {
    let pki = service_pki();
    let (counting, gate) = CountingDiscount::default().gated();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let (catalog, gateway) =
        spawn_catalog_watched(&pki, discount.addr, one_at_a_time(Duration::from_secs(10))).await;

    let first = occupy(&catalog, &counting).await;
    let users = ["1", "2", "1", "2", "1", "2"];
    let waiting = queue(&catalog, &gateway, &users).await;
    // An unknown customer needs no discount: answered at once, queue or not.
    assert_eq!(request(&catalog, "99").await.unwrap(), no_discount());

    gate.add_permits(1);
    assert_eq!(first.await.unwrap(), discounted());
    until("the coalesced RPC reaches Discount", || {
        counting.calls() == 2
    })
    .await;
    gate.add_permits(1);
    for (user, answer) in users.iter().zip(waiting) {
        let expected = if *user == "1" {
            discounted()
        } else {
            no_discount()
        };
        assert_eq!(answer.await.unwrap(), expected, "customer {user}");
    }
    // Seven requests that asked Discount, two RPCs: the first request's own, the second
    // carrying the six others' groups.
    assert_eq!(counting.calls(), 2);
    assert_eq!(*counting.group_sizes.lock().unwrap(), [1, 6]);
    assert_eq!(counting.batch_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_batch_s_worth_waiting_goes_out_beside_the_rpc_in_flight() {
    let pki = service_pki();
    let (counting, gate) = CountingDiscount::default().gated();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let options = CatalogOptions {
        discount_timeout: Duration::from_secs(10),
        // The default: two RPCs in flight.
        coalescing: CoalesceSettings::default(),
        ..CatalogOptions::default()
    };
    let (catalog, gateway) = spawn_catalog_watched(&pki, discount.addr, options).await;
    // Before any RPC has succeeded, every RPC in flight counts as slow and any request goes
    // out at once. One that took a second makes a second the usual time, so what follows is
    // decided by the batch's worth, not by slowness: the sleep sets that time, it waits for
    // nothing.
    let warm_up = occupy(&catalog, &counting).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    gate.add_permits(1);
    assert_eq!(warm_up.await.unwrap(), discounted());

    // The first request's RPC carries one request, so one more waiting is a batch's worth:
    // it goes out at once, while the first is still held at Discount.
    let occupied = std::time::Instant::now();
    let first = occupy(&catalog, &counting).await;
    let second = request(&catalog, "1");
    until("the second RPC reaches Discount beside the first", || {
        counting.in_flight.load(Ordering::SeqCst) == 2
    })
    .await;
    // Well within twice the usual second: the first RPC was not yet slow, so the second went
    // out as a batch's worth, not past a slow one.
    assert!(
        occupied.elapsed() < Duration::from_secs(1),
        "too slow to tell pipelining from a slow RPC: {:?}",
        occupied.elapsed()
    );
    assert_eq!(gateway.queued(), 0);
    // Both slots in use: the next requests queue, and the first slot to be free takes them.
    let waiting = queue(&catalog, &gateway, &["1", "2"]).await;
    gate.add_permits(1_000);
    for answer in [first, second] {
        assert_eq!(answer.await.unwrap(), discounted());
    }
    let [one, two] = <[_; 2]>::try_from(waiting).unwrap();
    assert_eq!(one.await.unwrap(), discounted());
    assert_eq!(two.await.unwrap(), no_discount());
    let mut sizes = counting.group_sizes.lock().unwrap().clone();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 1, 1, 2]);
}

#[tokio::test]
async fn a_request_whose_deadline_passes_in_flight_gets_full_prices_and_the_rest_their_discounts() {
    let pki = service_pki();
    let (counting, gate) = CountingDiscount::default().gated();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let timeout = Duration::from_secs(3);
    let (catalog, gateway) =
        spawn_catalog_watched(&pki, discount.addr, one_at_a_time(timeout)).await;

    let first = occupy(&catalog, &counting).await;
    let early = queue(&catalog, &gateway, &["1"]).await;
    // Half a deadline later, a second request joins the queue: its deadline is later. (Not a
    // wait for anything: this sets the two deadlines apart.)
    tokio::time::sleep(timeout / 2).await;
    let late = queue(&catalog, &gateway, &["1"]).await;

    gate.add_permits(1);
    assert_eq!(first.await.unwrap(), discounted());
    until("the coalesced RPC reaches Discount", || {
        counting.calls() == 2
    })
    .await;
    assert_eq!(*counting.group_sizes.lock().unwrap(), [1, 2]);
    // Discount holds the coalesced RPC: the early request's deadline passes meanwhile, and it
    // is answered then, on its own, with full prices.
    for answer in early {
        assert_eq!(answer.await.unwrap(), fallback("deadline-exceeded"));
    }
    gate.add_permits(1);
    for answer in late {
        assert_eq!(answer.await.unwrap(), discounted());
    }
}

#[tokio::test]
async fn a_full_queue_is_answered_at_once_with_full_prices() {
    let pki = service_pki();
    let (counting, gate) = CountingDiscount::default().gated();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let options = CatalogOptions {
        coalescing: CoalesceSettings {
            rpcs_in_flight: 1,
            max_queued: 2,
            ..CoalesceSettings::default()
        },
        ..one_at_a_time(Duration::from_secs(10))
    };
    let (catalog, gateway) = spawn_catalog_watched(&pki, discount.addr, options).await;

    let first = occupy(&catalog, &counting).await;
    let waiting = queue(&catalog, &gateway, &["1", "1"]).await;
    // Discount still holds every answer: this one can only have come from the full queue.
    assert_eq!(
        request(&catalog, "1").await.unwrap(),
        fallback("overloaded")
    );

    gate.add_permits(2);
    assert_eq!(first.await.unwrap(), discounted());
    for answer in waiting {
        assert_eq!(answer.await.unwrap(), discounted());
    }
}

/// Coalesced requests to `counting`, which holds answers until the test lets them all go.
async fn coalesced_requests_succeed(counting: CountingDiscount) -> CountingDiscount {
    let pki = service_pki();
    let (counting, gate) = counting.gated();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let (catalog, gateway) =
        spawn_catalog_watched(&pki, discount.addr, one_at_a_time(Duration::from_secs(10))).await;
    let first = occupy(&catalog, &counting).await;
    let waiting = queue(&catalog, &gateway, &["1", "1", "1"]).await;
    gate.add_permits(1_000);
    assert_eq!(first.await.unwrap(), discounted());
    for answer in waiting {
        assert_eq!(answer.await.unwrap(), discounted());
    }
    counting
}

#[tokio::test]
async fn a_discount_without_the_groups_rpc_gets_each_request_on_its_own() {
    let counting = coalesced_requests_succeed(CountingDiscount::without_groups()).await;
    assert!(counting.group_sizes.lock().unwrap().is_empty());
    assert_eq!(counting.batch_calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_discount_that_denies_the_groups_rpc_gets_each_request_on_its_own() {
    let denying = CountingDiscount {
        deny_groups: true,
        ..CountingDiscount::default()
    };
    let counting = coalesced_requests_succeed(denying).await;
    assert_eq!(counting.batch_calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn an_original_style_discount_gets_one_call_per_product() {
    let counting = coalesced_requests_succeed(CountingDiscount::original_style()).await;
    assert!(counting.group_sizes.lock().unwrap().is_empty());
    // Four requests of three products each.
    assert_eq!(counting.unary_calls.load(Ordering::SeqCst), 12);
}

/// The most `ApplyDiscount` calls an original-style Discount had in flight at once while
/// `requests` requests of ten products each were priced, with `fallback` bounds.
async fn fallback_concurrency(requests: usize, fallback: FallbackSettings) -> usize {
    let pki = service_pki();
    let (counting, gate) = CountingDiscount::original_style().gated();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let options = CatalogOptions {
        discount_timeout: Duration::from_secs(10),
        data: generated_catalog(10),
        fallback,
        ..CatalogOptions::default()
    };
    let catalog = spawn_catalog(&pki, discount.addr, options).await;
    let answers: Vec<_> = (0..requests).map(|_| request(&catalog, "1")).collect();
    let bound = fallback
        .per_request
        .saturating_mul(requests)
        .min(fallback.max_in_flight);
    until("the calls fill their bound", || {
        counting.in_flight.load(Ordering::SeqCst) == bound
    })
    .await;
    gate.add_permits(1_000);
    for answer in answers {
        let (status, header, _) = answer.await.unwrap();
        assert_eq!((status, header), (200, None));
    }
    counting.max_in_flight.load(Ordering::SeqCst)
}

#[tokio::test]
async fn per_product_calls_are_bounded_per_request() {
    let bounds = FallbackSettings {
        per_request: 2,
        max_in_flight: 64,
    };
    assert_eq!(fallback_concurrency(1, bounds).await, 2);
}

#[tokio::test]
async fn per_product_calls_are_bounded_in_all() {
    let bounds = FallbackSettings {
        per_request: 4,
        max_in_flight: 5,
    };
    assert_eq!(fallback_concurrency(3, bounds).await, 5);
}
