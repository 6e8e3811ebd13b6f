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
    /// Short, stable reason for the response header, logs and metrics.
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
