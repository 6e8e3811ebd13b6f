//! The real `catalog-service` binary with a log sink that never drains (its stderr is a pipe
//! nobody reads once its addresses are known): requests are still all answered, the access lines
//! that do not fit are dropped and counted in `log_lines_dropped_total`, and once the sink drains
//! again the log says how many were dropped.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::refusing_port;
use process_testing::addr_in;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{ChildStderr, Command};

/// Requests in flight at once.
const CONCURRENCY: usize = 32;
/// Requests per round; the pipe (64 KiB) and the log buffer (1 MiB, about 5,000 access lines)
/// fill within a few rounds.
const ROUND: usize = 2_000;
/// Rounds sent at most before the log buffer must be full.
const MAX_ROUNDS: usize = 40;
/// How long one request may take: a request that waits for the log sink takes forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `count` `GET /products` from [`CONCURRENCY`] tasks; panics unless every one is a 200.
async fn load(client: &reqwest::Client, addr: SocketAddr, count: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..CONCURRENCY {
        let client = client.clone();
        let share = count / CONCURRENCY + usize::from(task < count % CONCURRENCY);
        tasks.spawn(async move {
            for _ in 0..share {
                let response = client
                    .get(format!("http://{addr}/products"))
                    .send()
                    .await
                    .expect("answered although nobody reads the log");
                assert_eq!(response.status(), 200);
            }
        });
    }
    while let Some(task) = tasks.join_next().await {
        task.unwrap();
    }
}

/// `log_lines_dropped_total` from Catalog's `/metrics` on its operations port `ops` (0 before
/// the first drop).
async fn dropped(client: &reqwest::Client, ops: SocketAddr) -> f64 {
    let text = client
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("log_lines_dropped_total "))
        .map_or(0.0, |value| value.parse().unwrap())
}

/// Reads `stderr` up to the lines that give Catalog's public and operations addresses, and no
/// further.
async fn addresses(stderr: &mut BufReader<ChildStderr>) -> (SocketAddr, SocketAddr) {
    let (mut public, mut ops) = (None, None);
    let mut line = String::new();
    while public.is_none() || ops.is_none() {
        line.clear();
        let read = tokio::time::timeout(Duration::from_secs(30), stderr.read_line(&mut line))
            .await
            .expect("Catalog logs its addresses in time")
            .unwrap();
        assert!(read > 0, "Catalog exited before listening");
        if line.contains("Catalog listening") {
            public = Some(addr_in(&line));
        } else if line.contains("Catalog operations port listening") {
            ops = Some(addr_in(&line));
        }
    }
    (public.unwrap(), ops.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_sink_that_never_drains_does_not_stop_requests_and_drops_are_counted() {
    let certs = tempfile::tempdir().unwrap();
    pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(certs.path().to_owned(), 1)).unwrap();
    // Discount's address refuses connections; `GET /products` without a user never calls it.
    let (_refusing, no_discount) = refusing_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_catalog-service"))
        .args(["--listen", "127.0.0.1:0"])
        .args(["--ops-listen", "127.0.0.1:0"])
        .args(["--discount-addr", &no_discount.to_string()])
        .arg("--certs-dir")
        .arg(certs.path())
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // From here on the pipe is held open and never read: Catalog's writes to it block once it
    // holds 64 KiB.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (addr, ops) = addresses(&mut stderr).await;
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();

    // Fill the pipe and the log buffer: lines start being dropped.
    let mut rounds = 0;
    let mut before = dropped(&client, ops).await;
    while before == 0.0 {
        assert!(rounds < MAX_ROUNDS, "no line dropped after {rounds} rounds");
        load(&client, addr, ROUND).await;
        rounds += 1;
        before = dropped(&client, ops).await;
    }

    // The sink is full and stays full: every further request is answered, and its access line
    // is dropped and counted.
    load(&client, addr, ROUND).await;
    let after = dropped(&client, ops).await;
    assert!(
        after - before >= ROUND as f64,
        "dropped {before} then {after} after {ROUND} more requests"
    );

    // Drain the pipe: the writer catches up and says how many lines it dropped.
    let mut rest = String::new();
    let caught_up = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let read = stderr.read(&mut chunk).await.unwrap();
            assert!(read > 0, "Catalog closed its log");
            rest.push_str(&String::from_utf8_lossy(&chunk[..read]));
            if let Some(line) = rest
                .lines()
                .find(|line| line.contains("log lines: the log writer could not keep up"))
            {
                return line.to_owned();
            }
        }
    })
    .await
    .expect("the writer reports the dropped lines once it catches up");
    let count: u64 = caught_up
        .split("dropped ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {caught_up:?}"));
    assert!(count > 0, "{caught_up}");
    assert!(caught_up.contains(" WARN "), "{caught_up}");
    child.kill().await.unwrap();
}
