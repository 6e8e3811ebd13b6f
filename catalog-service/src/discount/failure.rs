//! [`DiscountFailure`]: why a discount could not be applied, and the short, stable reason the
//! response header, logs and metrics carry.

use std::time::Duration;

use tonic::{Code, Status};

use crate::balancer::error_chain;

/// Why a discount could not be applied. The HTTP layer serves full prices instead.
#[derive(Debug, thiserror::Error)]
pub enum DiscountFailure {
    #[error("Discount did not answer within {0:?}")]
    DeadlineExceeded(Duration),
    #[error("Discount is unreachable: {0}")]
    Unavailable(String),
    #[error("Discount refused the request: {0}")]
    Rejected(String),
    #[error("Discount sent an unusable answer: {0}")]
    BadResponse(String),
    #[error("too busy to ask Discount: {0}")]
    Overloaded(String),
}

impl DiscountFailure {
    /// Every [`reason`](Self::reason), for the API's description of the header.
    pub const REASONS: [&'static str; 5] = [
        "unavailable",
        "deadline-exceeded",
        "rejected",
        "bad-response",
        "overloaded",
    ];

    /// Short, stable reason for the response header, logs and metrics: one of
    /// [`REASONS`](Self::REASONS).
    pub fn reason(&self) -> &'static str {
        match self {
            DiscountFailure::DeadlineExceeded(_) => "deadline-exceeded",
            DiscountFailure::Unavailable(_) => "unavailable",
            DiscountFailure::Rejected(_) => "rejected",
            DiscountFailure::BadResponse(_) => "bad-response",
            DiscountFailure::Overloaded(_) => "overloaded",
        }
    }

    pub(super) fn from_status(status: &Status, timeout: Duration) -> Self {
        match status.code() {
            Code::DeadlineExceeded | Code::Cancelled => DiscountFailure::DeadlineExceeded(timeout),
            Code::Unavailable => DiscountFailure::Unavailable(error_chain(status)),
            Code::ResourceExhausted => DiscountFailure::Overloaded(status.message().to_owned()),
            _ => DiscountFailure::Rejected(error_chain(status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_lists_every_reason_once() {
        let every = [
            DiscountFailure::DeadlineExceeded(Duration::ZERO),
            DiscountFailure::Unavailable(String::new()),
            DiscountFailure::Rejected(String::new()),
            DiscountFailure::BadResponse(String::new()),
            DiscountFailure::Overloaded(String::new()),
        ];
        let mut reasons: Vec<&str> = every
            .iter()
            .map(|failure| {
                // No wildcard: a new variant does not compile until it is added above.
                match failure {
                    DiscountFailure::DeadlineExceeded(_)
                    | DiscountFailure::Unavailable(_)
                    | DiscountFailure::Rejected(_)
                    | DiscountFailure::BadResponse(_)
                    | DiscountFailure::Overloaded(_) => failure.reason(),
                }
            })
            .collect();
        reasons.sort_unstable();
        let mut listed = DiscountFailure::REASONS.to_vec();
        listed.sort_unstable();
        assert_eq!(reasons, listed);
    }
}
