//! Catalog's database certificate rotated without a restart: its leaf re-issued in its
//! certificate folder (same CA), its session ended by the owner, and the next connection
//! presents the new certificate, as PostgreSQL itself reports (`pg_stat_ssl.client_serial`).

use std::path::Path;

use process_testing::poll_until;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::cluster::{self, TestDatabase};

/// The serial number of the certificate in a PEM file, in hex as Catalog logs it.
fn pem_serial(path: &Path) -> String {
    mtls::serial_hex(&CertificateDer::from_pem_file(path).unwrap())
}

/// A serial number in hex (`01:ab:...`) in decimal, as PostgreSQL shows it.
fn in_decimal(hex: &str) -> String {
    let hex = hex.replace(':', "");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    decimal(&bytes)
}

/// A big-endian unsigned integer of any length (a serial may have 20 bytes, more than `u128`)
/// in decimal: schoolbook base conversion, digits kept least significant first.
fn decimal(bytes: &[u8]) -> String {
    let mut digits: Vec<u32> = vec![0];
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for digit in &mut digits {
            let value = *digit * 256 + carry;
            *digit = value % 10;
            carry = value / 10;
        }
        while carry > 0 {
            digits.push(carry % 10);
            carry /= 10;
        }
    }
    digits.iter().rev().map(|d| d.to_string()).collect()
}

/// The serial number of the client certificate of Catalog's session in this database, if it
/// has one.
async fn session_serial(db: &TestDatabase) -> Option<String> {
    let sql = "SELECT s.client_serial::text FROM pg_stat_ssl s \
               JOIN pg_stat_activity a USING (pid) \
               WHERE a.usename = 'catalog' AND a.datname = current_database()";
    let rows = db.owner.query(sql, &[]).await.unwrap();
    match rows.as_slice() {
        [row] => row.get(0),
        _ => None,
    }
}

#[test]
fn serials_convert_to_decimal() {
    assert_eq!(decimal(&[]), "0");
    assert_eq!(decimal(&[0, 0x01, 0x00]), "256");
    assert_eq!(decimal(&[0xff; 8]), u64::MAX.to_string());
    assert_eq!(decimal(&[0xff; 16]), u128::MAX.to_string());
    assert_eq!(in_decimal("00:ff:01"), "65281");
}

#[tokio::test]
async fn a_rotated_certificate_is_presented_on_the_next_connection_without_a_restart() {
    // No timer re-reads the files within the test: only the look Catalog takes before it
    // connects can find the new certificate.
    let (db, mut catalog, _refusing) =
        cluster::serving_catalog(&["--tls-reload-interval-secs", "86400"]).await;
    let dir = catalog.certs.path().to_owned();
    let old = pem_serial(&dir.join("catalog.pem"));
    catalog.log.line_with("database connected").await;
    let serving = poll_until("Catalog's session is seen", || session_serial(&db)).await;
    assert_eq!(serving, in_decimal(&old), "the certificate in its folder");

    // New leaves from the same CA (no --force), written in place; then the session ends.
    pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(&dir, 1)).unwrap();
    let new = pem_serial(&dir.join("catalog.pem"));
    assert_ne!(new, old);
    db.owner
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = 'catalog' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap();

    poll_until(
        "Catalog's new session presents the new certificate",
        || async {
            let new = in_decimal(&new);
            session_serial(&db).await.filter(|serial| *serial == new)
        },
    )
    .await;
    catalog.log.line_with("database reachable again").await;
    let log = catalog.log.all();
    assert!(
        log.lines()
            .any(|line| line.contains("TLS material reloaded")
                && line.contains("catalog-database")
                && line.contains(&new)),
        "{log}"
    );
    assert!(catalog.child.try_wait().unwrap().is_none(), "no restart");
}
