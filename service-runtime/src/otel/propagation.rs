//! W3C Trace Context in and out (`traceparent`, `tracestate`), with the SDK's own propagator:
//! read from any header or metadata map through a getter, written through a setter.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The header that carries the caller's span.
pub(super) const TRACEPARENT: &str = "traceparent";

/// The caller's span, when its `traceparent` is present and valid; `None` starts a new trace.
pub(super) fn extract<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<SpanContext> {
    let context = TraceContextPropagator::new().extract(&Getter(get, std::marker::PhantomData));
    let span = context.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// Writes `span`'s `traceparent` (and `tracestate`) through `set`.
pub(super) fn inject(span: &SpanContext, set: impl FnMut(&'static str, String)) {
    let context = opentelemetry::Context::new().with_remote_span_context(span.clone());
    TraceContextPropagator::new().inject_context(&context, &mut Setter(set));
}

/// The values live as long as `'a`, so as long as the getter (the marker says so).
struct Getter<'a, F>(F, std::marker::PhantomData<&'a str>);

impl<'a, F: Fn(&str) -> Option<&'a str>> Extractor for Getter<'a, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key)
    }

    fn keys(&self) -> Vec<&str> {
        // The trace-context propagator asks for its two headers by name and never lists.
        vec!["traceparent", "tracestate"]
    }
}

struct Setter<F>(F);

impl<F: FnMut(&'static str, String)> Injector for Setter<F> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes only these two; anything else would not be Trace Context.
        let key = match key {
            "traceparent" => "traceparent",
            "tracestate" => "tracestate",
            _ => return,
        };
        (self.0)(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_and_written_back_the_same() {
        let span = extract(|key| (key == "traceparent").then_some(PARENT)).unwrap();
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(span.is_remote() && span.is_sampled());
        let mut written = Vec::new();
        inject(&span, |key, value| written.push((key, value)));
        assert!(written.contains(&("traceparent", PARENT.to_owned())));
    }

    #[test]
    fn tracestate_travels_with_the_trace() {
        let headers = [("traceparent", PARENT), ("tracestate", "vendor=abc")];
        let get = |key: &str| headers.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let span = extract(get).unwrap();
        let mut written = Vec::new();
        inject(&span, |key, value| written.push((key, value)));
        assert!(written.contains(&("tracestate", "vendor=abc".to_owned())));
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(
                extract(|key| (key == "traceparent").then_some(bad)).is_none(),
                "{bad:?} was accepted"
            );
        }
        assert!(extract(|_| None).is_none());
    }
}
