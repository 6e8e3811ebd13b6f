//! The unit tests of the cluster: port picking, URL encoding, the log lines waited for.

use super::*;

#[test]
fn random_ports_stay_in_range_and_vary() {
    let ports: std::collections::HashSet<u16> =
        (0..50).map(|_| random_port(&DEFAULT_PORTS)).collect();
    assert!(ports.iter().all(|p| DEFAULT_PORTS.contains(p)), "{ports:?}");
    assert!(ports.len() > 40, "{ports:?}");
    assert_eq!(random_port(&(7..8)), 7);
}

#[test]
fn socket_paths_are_percent_encoded() {
    assert_eq!(percent_encode("/tmp/a b&c=%"), "/tmp/a%20b%26c%3D%25");
    assert_eq!(percent_encode("/tmp/x-Y_1.~"), "/tmp/x-Y_1.~");
}

#[test]
fn listening_lines_name_the_family() {
    assert_eq!(
        listening_line("::1", 5),
        "listening on IPv6 address \"::1\", port 5"
    );
    assert_eq!(
        listening_line("127.0.0.1", 5),
        "listening on IPv4 address \"127.0.0.1\", port 5"
    );
}
