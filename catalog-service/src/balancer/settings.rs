//! [`ReplicaSettings`]: how replicas are found and watched, and the defaults.

use std::sync::Arc;
use std::time::Duration;

use super::discovery::{Resolve, SystemResolver};

/// How replicas are found and watched.
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    /// How often DNS names are resolved again.
    pub resolve_interval: Duration,
    /// How often every replica's health is checked.
    pub health_interval: Duration,
    /// Deadline for opening a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Least time out of rotation after the first RPC failure that took a replica out.
    pub base_ejection_time: Duration,
    /// Cap on the doubling back-off; also how long a replica must stay in rotation before its
    /// ejections stop counting as "in a row".
    pub max_ejection_time: Duration,
    /// Connections older than this are renewed; `None`: never (only on a TLS reload).
    pub max_connection_age: Option<Duration>,
    /// Turns names into addresses [default: the system's resolver].
    pub resolver: Arc<dyn Resolve>,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        Self {
            resolve_interval: Duration::from_secs(5),
            health_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            base_ejection_time: Duration::from_secs(1),
            max_ejection_time: Duration::from_secs(30),
            max_connection_age: Some(Duration::from_secs(30 * 60)),
            resolver: Arc::new(SystemResolver),
        }
    }
}
