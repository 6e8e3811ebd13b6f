//! The real `discount-service` binary: start-up errors are one clear line and exit 1; SIGTERM
//! is a clean exit 0.
#![allow(clippy::unwrap_used)]

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(dir.path(), 1)).unwrap();
    dir
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_discount-service"));
    command.args(args).env_clear().kill_on_drop(true);
    command
}

async fn run(args: &[&str]) -> Output {
    tokio::time::timeout(Duration::from_secs(30), command(args).output())
        .await
        .expect("discount-service should exit at start-up")
        .unwrap()
}

fn single_error_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].to_owned()
}

/// Reads the child's stderr until `done` holds for all of it so far, then keeps draining it in
/// the background (so that it never blocks on a full pipe); returns what it read.
async fn read_log_until(child: &mut tokio::process::Child, done: impl Fn(&str) -> bool) -> String {
    let mut stderr = child.stderr.take().unwrap();
    let (mut seen, mut buf) = (String::new(), [0u8; 4096]);
    while !done(&seen) {
        let n = tokio::time::timeout(Duration::from_secs(30), stderr.read(&mut buf))
            .await
            .expect("discount-service starts")
            .unwrap();
        assert!(n > 0, "exited: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    tokio::spawn(async move { while stderr.read(&mut buf).await.is_ok_and(|n| n > 0) {} });
    seen
}

#[tokio::test]
async fn bad_allow_rule_is_named() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let line = single_error_line(&run(&["--certs-dir", dir, "--allow", "Nope=spiffe://x/y"]).await);
    assert!(line.contains("invalid --allow rule"), "{line}");
}

#[tokio::test]
async fn key_that_does_not_match_is_named() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let key = format!("{dir}/catalog.key");
    let line = single_error_line(&run(&["--certs-dir", dir, "--key", &key]).await);
    assert!(
        line.contains("private key does not match the certificate"),
        "{line}"
    );
}

#[tokio::test]
async fn sigterm_stops_it_cleanly() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let mut child = command(&["--certs-dir", dir, "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready once it says it listens (read from its log: no polling, no sleep).
    read_log_until(&mut child, |log| log.contains("Discount listening")).await;

    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Starts the binary with its operations port on a free port; returns the child and that
/// port's address, read from its log.
async fn start_with_ops_port(dir: &str) -> (tokio::process::Child, String) {
    let mut child = command(&[
        "--certs-dir",
        dir,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let ops_line = |seen: &str| {
        seen.lines()
            .find(|l| l.contains("operations port listening"))
            .map(str::to_owned)
    };
    let seen = read_log_until(&mut child, |log| {
        ops_line(log).is_some() && log.contains("Discount listening")
    })
    .await;
    let line = ops_line(&seen).unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr in {line:?}"))
        .to_owned();
    (child, addr)
}

#[tokio::test]
async fn probe_subcommand_checks_the_operations_port() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let (_discount, ops) = start_with_ops_port(dir).await;

    for path in ["/healthz", "/readyz"] {
        let output = run(&["probe", &format!("http://{ops}{path}")]).await;
        assert_eq!(output.status.code(), Some(0), "{path}: {output:?}");
    }
    let output = run(&["probe", &format!("http://{ops}/nope")]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("answered 404"), "{stderr}");
}
