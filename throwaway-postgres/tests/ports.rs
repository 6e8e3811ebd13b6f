//! A cluster never serves on a port another program holds, on either loopback address: the
//! server would otherwise start on the other address alone, and clients dialling `localhost`
//! would meet that program. Each test holds a port of its own (bound on port 0, never released
//! during the test) and gives the cluster only that port to pick.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;

use throwaway_postgres::{Cluster, Error, Options};

/// Starting a cluster whose only port is `port` must fail, every attempt refused as taken.
fn assert_refused(port: u16) {
    let certs = common::certs();
    let opts = Options {
        ports: port..port + 1,
        ..Options::new(common::tls(certs.path()), common::DATABASE)
    };
    match Cluster::start(opts) {
        Ok(cluster) => panic!("started on a held port: {}", cluster.log()),
        Err(Error::Start { reason, log }) => {
            let tries = format!("{port}, ").repeat(7) + &port.to_string();
            assert!(
                reason.contains(&format!("every port tried was taken: [{tries}]")),
                "{reason}"
            );
            assert_eq!(log.matches("Address already in use").count(), 8, "{log}");
        }
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn a_port_held_on_127_0_0_1_is_not_used() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    assert_refused(held.local_addr().unwrap().port());
}

#[test]
fn a_port_held_on_ipv6_loopback_is_not_used() {
    let Ok(held) = TcpListener::bind("[::1]:0") else {
        eprintln!("this machine has no ::1; the cluster listens on 127.0.0.1 only");
        return;
    };
    assert_refused(held.local_addr().unwrap().port());
}

#[test]
fn an_empty_port_range_is_refused() {
    let certs = common::certs();
    let opts = Options {
        ports: 30000..30000,
        ..Options::new(common::tls(certs.path()), common::DATABASE)
    };
    let err = Cluster::start(opts).unwrap_err().to_string();
    assert!(err.contains("no port to pick from"), "{err}");
}

#[test]
fn bad_names_are_refused_before_anything_starts() {
    let certs = common::certs();
    let err = Cluster::start(Options::new(common::tls(certs.path()), "Shop")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Name {
                what: "database",
                ..
            }
        ),
        "{err}"
    );
    let opts = Options::new(common::tls(certs.path()), "shop").cert_role("catalog; DROP");
    let err = Cluster::start(opts).unwrap_err();
    assert!(matches!(err, Error::Name { what: "role", .. }), "{err}");
}
