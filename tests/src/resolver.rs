//! A name resolver whose answer the test sets: the DNS of a headless Service, on loopback, for
//! Catalog's replica discovery.

use std::net::SocketAddr;

/// A name resolver whose answer the test sets: DNS for a headless Service, on loopback.
#[derive(Debug, Default)]
pub struct TestResolver {
    answer: std::sync::Mutex<Vec<SocketAddr>>,
}

impl TestResolver {
    /// From now on, every name resolves to `addrs`.
    pub fn set(&self, addrs: &[SocketAddr]) {
        *self.answer.lock().unwrap() = addrs.to_vec();
    }
}

impl catalog_service::balancer::Resolve for TestResolver {
    fn resolve(
        &self,
        _host: &str,
        _port: u16,
    ) -> catalog_service::balancer::BoxFuture<std::io::Result<Vec<SocketAddr>>> {
        let answer = self.answer.lock().unwrap().clone();
        Box::pin(async move { Ok(answer) })
    }
}
