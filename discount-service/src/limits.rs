//! The gRPC server's limits per connection and per message: their defaults, and the layer that
//! answers a request message over the size limit with `RESOURCE_EXHAUSTED`, the code gRPC
//! clients in other languages expect for it, where tonic answers `OUT_OF_RANGE`.
//!
//! The limits on connections (open, in their handshake, and the handshake's deadline) are the
//! accept loop's (the `admission` crate, through `mtls::AcceptSettings`), since they act before
//! the TLS handshake is done, long before tonic sees a connection.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use mtls::PeerInfo;
use tonic::codegen::{Service, http};
use tonic::{Code, Status};

/// HTTP/2 streams (RPCs in progress) a connection may have open at once, by default: what
/// hyper would choose, and far above what one Catalog uses (2 coalesced RPCs, at most 64
/// fallback calls, by default).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 200;

/// The largest request message accepted, by default: 4 MiB (tonic's own default, made
/// explicit). Catalog's largest request, `ApplyDiscountGroups` with 4096 groups and 100,000
/// products in all, each product its id and price (at most 14 bytes), is under 2 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The start of tonic's message for a request message over the decoding limit
/// (`tonic/src/codec/decode.rs`, tonic 0.14). If tonic rewords it, the limits tests fail.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large";

/// Rewrites tonic's answer to an oversized request message, `OUT_OF_RANGE`, into
/// `RESOURCE_EXHAUSTED`, and logs it for the operator.
///
/// Why: gRPC's status code table gives `RESOURCE_EXHAUSTED` for a message over the receiver's
/// limit, and that is what grpc-go, grpc-java and grpc-core answer; tonic 0.14 answers
/// `OUT_OF_RANGE`, which clients would take for a bad argument value. Our RPCs are unary, so
/// tonic decodes the message before any handler runs and answers in a trailers-only response:
/// the status is in the response headers, rewritten here. (A streaming request's later
/// messages would fail in the trailers instead; Discount has no such RPC.)
#[derive(Debug, Clone, Copy, Default)]
pub struct OversizedAsExhaustedLayer;

impl<S> tower::Layer<S> for OversizedAsExhaustedLayer {
    type Service = OversizedAsExhausted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OversizedAsExhausted { inner }
    }
}

/// The service [`OversizedAsExhaustedLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct OversizedAsExhausted<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for OversizedAsExhausted<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let rpc = request.uri().path().to_owned();
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            if let Some(message) = oversized_as_exhausted(&mut response) {
                tracing::warn!(
                    rpc,
                    caller = peer
                        .as_ref()
                        .map_or("unknown", PeerInfo::identity_or_unknown),
                    peer = peer.as_ref().map(|peer| peer.remote_addr.to_string()),
                    "request refused with RESOURCE_EXHAUSTED: {message} (raise \
                     --max-message-bytes if this caller is legitimate)"
                );
            }
            Ok(response)
        })
    }
}

/// If `response` is tonic's answer to an oversized message, turns its status into
/// `RESOURCE_EXHAUSTED` with the same message, and returns the message.
fn oversized_as_exhausted<B>(response: &mut http::Response<B>) -> Option<String> {
    // Only trailers-only responses carry `grpc-status` in their headers: others cost nothing.
    let status = Status::from_header_map(response.headers())?;
    if status.code() != Code::OutOfRange || !status.message().starts_with(TONIC_TOO_LARGE) {
        return None;
    }
    let exhausted = Status::resource_exhausted(status.message());
    // `add_header` replaces `grpc-status` and `grpc-message`.
    exhausted.add_header(response.headers_mut()).ok()?;
    response.extensions_mut().insert(exhausted);
    Some(status.message().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailers_only(status: Status) -> http::Response<()> {
        status.into_http()
    }

    #[test]
    fn tonic_oversized_answer_becomes_resource_exhausted() {
        let tonic_says = format!("{TONIC_TOO_LARGE}: found 5000 bytes, the limit is: 1024 bytes");
        let mut response = trailers_only(Status::out_of_range(tonic_says.clone()));
        assert_eq!(
            oversized_as_exhausted(&mut response),
            Some(tonic_says.clone())
        );
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), tonic_says);
    }

    #[test]
    fn other_statuses_are_left_alone() {
        for status in [
            Status::out_of_range("price out of range"),
            Status::invalid_argument(TONIC_TOO_LARGE),
        ] {
            let code = status.code();
            let mut response = trailers_only(status);
            assert_eq!(oversized_as_exhausted(&mut response), None);
            let status = Status::from_header_map(response.headers()).unwrap();
            assert_eq!(status.code(), code);
        }
        let mut ok = http::Response::new(());
        assert_eq!(oversized_as_exhausted(&mut ok), None);
        assert!(ok.headers().is_empty());
    }
}
