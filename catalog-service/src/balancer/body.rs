//! The request body under Catalog's gRPC clients: tonic's, looked at one frame ahead, so that
//! its last DATA frame carries the end of the stream.
//!
//! A unary gRPC request is one message. hyper's HTTP/2 client asks the body whether it has
//! ended right after each DATA frame; tonic's body only knows when polled again, so hyper
//! would send the message and then an empty DATA frame to end the stream: a frame more per RPC,
//! and under load often a TLS record and a write of its own (about a quarter of Catalog's
//! writes to Discount were that empty frame). Polling one frame ahead, this body knows it has
//! ended when it hands out the message, and hyper sets END_STREAM on the message's frame.
//! http-body-util and tower-http offer no such lookahead; it is a few lines.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};

/// `B`, polled one frame ahead after each DATA frame (see the module's documentation).
#[derive(Debug)]
pub(crate) struct LastFrameEnds<B: Body> {
    inner: B,
    /// The frame polled ahead, handed out next.
    next: Option<Result<Frame<B::Data>, B::Error>>,
    /// `inner` has ended (it answered `None`).
    ended: bool,
}

impl<B: Body> LastFrameEnds<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self {
            inner,
            next: None,
            ended: false,
        }
    }
}

impl<B: Body + Unpin> Body for LastFrameEnds<B>
where
    B::Data: Unpin,
    B::Error: Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let current = match this.next.take() {
            Some(frame) => frame,
            None if this.ended => return Poll::Ready(None),
            None => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(frame) => frame,
                None => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
            },
        };
        // After a DATA frame, whatever comes next is already there for a unary request (its
        // end, or trailers); if it is not, the frame goes now and the next is polled later.
        if matches!(&current, Ok(frame) if frame.is_data()) {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => this.ended = true,
                Poll::Ready(Some(frame)) => this.next = Some(frame),
                Poll::Pending => {}
            }
        }
        Poll::Ready(Some(current))
    }

    fn is_end_stream(&self) -> bool {
        self.next.is_none() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.next {
            // The frame held here is no longer in the inner body's hint.
            Some(_) => SizeHint::default(),
            None if self.ended => SizeHint::with_exact(0),
            None => self.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::task::Waker;

    use bytes::Bytes;

    use super::*;

    /// What one poll of a body answers.
    type Polled = Poll<Option<Result<Frame<Bytes>, &'static str>>>;

    /// A body that answers each poll with the next of `polls` (`None` once they run out), and
    /// never says it has ended before it has.
    struct Scripted {
        polls: VecDeque<Polled>,
    }

    impl Body for Scripted {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Polled {
            self.polls.pop_front().unwrap_or(Poll::Ready(None))
        }
    }

    fn data(text: &'static str) -> Polled {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(text.as_bytes())))))
    }

    /// Each poll's frame (as text: `data:..`, `trailers`, `error:..`, `none`, `pending`) and
    /// whether the body said it had ended right after it.
    fn run(polls: Vec<Polled>) -> Vec<String> {
        let mut body = LastFrameEnds::new(Scripted {
            polls: polls.into(),
        });
        let mut cx = Context::from_waker(Waker::noop());
        let mut seen = Vec::new();
        loop {
            let polled = Pin::new(&mut body).poll_frame(&mut cx);
            let what = match polled {
                Poll::Pending => "pending".to_owned(),
                Poll::Ready(None) => "none".to_owned(),
                Poll::Ready(Some(Err(error))) => format!("error:{error}"),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(bytes) => format!("data:{}", String::from_utf8_lossy(&bytes)),
                    Err(_) => "trailers".to_owned(),
                },
            };
            let done = what == "none";
            seen.push(format!("{what} ended={}", body.is_end_stream()));
            if done {
                return seen;
            }
        }
    }

    #[test]
    fn a_single_message_ends_the_stream_with_its_own_frame() {
        assert_eq!(
            run(vec![data("m")]),
            ["data:m ended=true", "none ended=true"]
        );
    }

    #[test]
    fn frames_after_the_message_come_next_in_order_and_end_it_after_the_last() {
        let trailers = Poll::Ready(Some(Ok(Frame::trailers(http::HeaderMap::new()))));
        let seen = run(vec![data("a"), data("b"), trailers]);
        let expected = [
            "data:a ended=false",
            "data:b ended=false",
            // Nothing is polled ahead of trailers: they are the end whatever the body says.
            "trailers ended=false",
            "none ended=true",
        ];
        assert_eq!(seen, expected);
        let seen = run(vec![data("a"), Poll::Ready(Some(Err("broken")))]);
        assert_eq!(
            seen,
            [
                "data:a ended=false",
                "error:broken ended=false",
                "none ended=true"
            ]
        );
    }

    #[test]
    fn tonic_s_body_of_one_message_ends_with_that_message_s_frame() {
        use ecommerce_proto::codec::ProtoCodec;
        use ecommerce_proto::pb;
        use tonic::codec::{Codec, EncodeBody};

        // A unary request's body, as tonic's client makes it.
        let message = pb::PricesRequest::default();
        let source = futures_util::stream::iter([Ok(message)]);
        let encoder = ProtoCodec::<pb::PricesRequest, pb::PricesResponse>::default().encoder();
        let encoded = EncodeBody::new_client(encoder, source, None, None);
        let mut body = LastFrameEnds::new(tonic::body::Body::new(encoded));
        assert!(!body.is_end_stream(), "nothing sent yet");
        let mut cx = Context::from_waker(Waker::noop());
        let frame = Pin::new(&mut body).poll_frame(&mut cx);
        let is_data = matches!(&frame, Poll::Ready(Some(Ok(frame))) if frame.is_data());
        assert!(is_data && body.is_end_stream(), "{frame:?}");
    }

    #[test]
    fn a_frame_not_ready_yet_is_polled_again_later() {
        let seen = run(vec![data("a"), Poll::Pending, Poll::Pending, data("b")]);
        let expected = [
            "data:a ended=false",
            "pending ended=false",
            "data:b ended=true",
            "none ended=true",
        ];
        assert_eq!(seen, expected);
    }
}
