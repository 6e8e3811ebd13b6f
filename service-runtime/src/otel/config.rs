//! Reading the standard OpenTelemetry environment variables into one [`OtelConfig`]: whether
//! to export at all, where to and how, the service's name, and the sampler.
//!
//! The SDK and the exporter read some of these themselves, but only from the process's
//! environment; reading them here, through one lookup function, lets a test configure a service
//! in process exactly as the variables configure the binary, and lets start-up say in one log
//! line what it decided. Variables not read here (`OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`,
//! `_COMPRESSION`, `OTEL_RESOURCE_ATTRIBUTES`, the other `OTEL_BSP_*`) are left to the crates,
//! which read them from the environment.

use opentelemetry_sdk::trace::Sampler;

/// How spans leave the process: OTLP over gRPC or over HTTP with protobuf bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc`: the collector's `TraceService/Export` RPC (default port 4317).
    Grpc,
    /// `http/protobuf`: `POST /v1/traces` with a protobuf body (default port 4318). The
    /// specification's default.
    HttpProtobuf,
}

/// Where and how spans are exported, and which are kept.
#[derive(Debug, Clone)]
pub struct OtelConfig {
    /// The OTLP endpoint, as the exporter is given it: for HTTP, with `/v1/traces` already
    /// appended to a generic endpoint.
    pub endpoint: String,
    /// The OTLP transport.
    pub protocol: Protocol,
    /// `service.name` on every span.
    pub service_name: String,
    /// Which traces are recorded and exported.
    pub sampler: Sampler,
    /// Most spans waiting for export; beyond it, spans are dropped and counted.
    pub max_queue_size: usize,
}

/// `OTEL_SDK_DISABLED`: `true` turns tracing off whatever else is set.
pub const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: the base URL for every signal.
pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the full URL for traces; wins over [`ENDPOINT`].
pub const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` or `http/protobuf` (the default).
pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`: the same for traces only; wins over [`PROTOCOL`].
pub const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// `OTEL_TRACES_EXPORTER`: `otlp` (the default) or `none`.
pub const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `OTEL_SERVICE_NAME`.
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs; its `service.name` is used when
/// [`SERVICE_NAME`] is unset.
pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// `OTEL_TRACES_SAMPLER`: `parentbased_always_on` (the default), `parentbased_traceidratio`,
/// `parentbased_always_off`, `always_on`, `always_off` or `traceidratio`.
pub const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// `OTEL_TRACES_SAMPLER_ARG`: the ratio for the `traceidratio` samplers, 0 to 1.
pub const SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// `OTEL_BSP_MAX_QUEUE_SIZE`: most spans waiting for export (default 2048).
pub const MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";

/// The batch queue's size when [`MAX_QUEUE_SIZE`] is unset, as the specification gives it.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;

impl OtelConfig {
    /// What the variables `lookup` returns say: `None` when nothing is to be exported (no
    /// endpoint, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`). Values that make no
    /// sense are warned about and replaced by their defaults, as the specification asks; they
    /// never stop the service.
    pub fn from_lookup(
        default_service_name: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Option<Self> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if var(SDK_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        match var(TRACES_EXPORTER)
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("otlp") => {}
            Some("none") => return None,
            Some(other) => tracing::warn!(
                "{TRACES_EXPORTER}={other:?} is not supported (only `otlp` or `none`); using otlp"
            ),
        }
        let protocol = match var(TRACES_PROTOCOL).or_else(|| var(PROTOCOL)).as_deref() {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                tracing::warn!(
                    "OTLP protocol {other:?} is not supported (`grpc` or `http/protobuf`); \
                     using http/protobuf"
                );
                Protocol::HttpProtobuf
            }
        };
        let endpoint = match (var(TRACES_ENDPOINT), var(ENDPOINT)) {
            (Some(traces), _) => traces,
            // The generic endpoint is a base URL: HTTP appends the signal's path to it.
            (None, Some(base)) if protocol == Protocol::HttpProtobuf => {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            (None, Some(base)) => base,
            (None, None) => return None,
        };
        if endpoint.starts_with("https://") {
            // Neither exporter is built with TLS: the dependency tree stays lean, and the
            // expected shape is a collector or agent beside the service.
            tracing::warn!(
                "OTLP endpoint {endpoint} uses TLS, which this build does not support: exports \
                 will fail (and be counted); point it at a collector over plain HTTP"
            );
        }
        let max_queue_size = match var(MAX_QUEUE_SIZE).map(|v| v.parse::<usize>()) {
            None => DEFAULT_MAX_QUEUE_SIZE,
            Some(Ok(size)) if size > 0 => size,
            Some(_) => {
                tracing::warn!(
                    "{MAX_QUEUE_SIZE} must be a positive integer; using {DEFAULT_MAX_QUEUE_SIZE}"
                );
                DEFAULT_MAX_QUEUE_SIZE
            }
        };
        Some(Self {
            endpoint,
            protocol,
            service_name: var(SERVICE_NAME)
                .or_else(|| resource_service_name(var(RESOURCE_ATTRIBUTES).as_deref()?))
                .unwrap_or_else(|| default_service_name.to_owned()),
            sampler: sampler(var(SAMPLER).as_deref(), var(SAMPLER_ARG).as_deref()),
            max_queue_size,
        })
    }

    /// [`Self::from_lookup`] over the process's environment.
    pub fn from_env(default_service_name: &str) -> Option<Self> {
        Self::from_lookup(default_service_name, |name| std::env::var(name).ok())
    }
}

/// The `service.name` in `OTEL_RESOURCE_ATTRIBUTES` (`k1=v1,k2=v2`, values percent-encoded),
/// if it names one.
fn resource_service_name(attributes: &str) -> Option<String> {
    attributes
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.trim() == "service.name")
        .map(|(_, value)| percent_decode(value.trim()))
        .filter(|name| !name.is_empty())
}

/// `%XX` escapes decoded (the W3C Baggage encoding the variable uses); anything malformed is
/// kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The sampler `OTEL_TRACES_SAMPLER` and `_ARG` name; the default (`parentbased_always_on`)
/// for an unknown name, and a ratio of 1 for a missing or bad ratio.
fn sampler(name: Option<&str>, arg: Option<&str>) -> Sampler {
    let ratio = || match arg.map(str::parse::<f64>) {
        Some(Ok(ratio)) if (0.0..=1.0).contains(&ratio) => ratio,
        None => 1.0,
        Some(_) => {
            tracing::warn!("{SAMPLER_ARG} must be a number from 0 to 1; using 1");
            1.0
        }
    };
    let parent_based = |root| Sampler::ParentBased(Box::new(root));
    match name.map(str::to_ascii_lowercase).as_deref() {
        None | Some("parentbased_always_on") => parent_based(Sampler::AlwaysOn),
        Some("parentbased_always_off") => parent_based(Sampler::AlwaysOff),
        Some("parentbased_traceidratio") => parent_based(Sampler::TraceIdRatioBased(ratio())),
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => Sampler::TraceIdRatioBased(ratio()),
        Some(other) => {
            tracing::warn!("{SAMPLER}={other:?} is not supported; using parentbased_always_on");
            parent_based(Sampler::AlwaysOn)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Option<OtelConfig> {
        OtelConfig::from_lookup("catalog", |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint_or_when_disabled() {
        assert!(config(&[]).is_none());
        assert!(config(&[(PROTOCOL, "grpc"), (SERVICE_NAME, "x")]).is_none());
        let endpoint = (ENDPOINT, "http://collector:4318");
        assert!(config(&[endpoint]).is_some());
        assert!(config(&[endpoint, (SDK_DISABLED, "true")]).is_none());
        assert!(config(&[endpoint, (SDK_DISABLED, "TRUE")]).is_none());
        assert!(config(&[endpoint, (SDK_DISABLED, "false")]).is_some());
        assert!(config(&[endpoint, (TRACES_EXPORTER, "none")]).is_none());
    }

    #[test]
    fn endpoints_follow_the_specification() {
        let http = config(&[(ENDPOINT, "http://collector:4318/")]).unwrap();
        assert_eq!(http.protocol, Protocol::HttpProtobuf);
        assert_eq!(http.endpoint, "http://collector:4318/v1/traces");
        let grpc = config(&[(ENDPOINT, "http://collector:4317"), (PROTOCOL, "grpc")]).unwrap();
        assert_eq!(grpc.protocol, Protocol::Grpc);
        assert_eq!(grpc.endpoint, "http://collector:4317");
        // The signal's own variables win, and its endpoint is taken as it is.
        let traces = config(&[
            (ENDPOINT, "http://a:4317"),
            (TRACES_ENDPOINT, "http://b:4318/custom"),
            (PROTOCOL, "grpc"),
            (TRACES_PROTOCOL, "http/protobuf"),
        ])
        .unwrap();
        assert_eq!(traces.protocol, Protocol::HttpProtobuf);
        assert_eq!(traces.endpoint, "http://b:4318/custom");
        let unknown = config(&[(ENDPOINT, "http://c:4318"), (PROTOCOL, "carrier-pigeon")]);
        assert_eq!(unknown.unwrap().protocol, Protocol::HttpProtobuf);
    }

    #[test]
    fn service_name_and_queue_size_have_defaults() {
        let endpoint = (ENDPOINT, "http://collector:4318");
        let default = config(&[endpoint]).unwrap();
        assert_eq!(default.service_name, "catalog");
        assert_eq!(default.max_queue_size, DEFAULT_MAX_QUEUE_SIZE);
        let named = config(&[endpoint, (SERVICE_NAME, "shop-catalog")]).unwrap();
        assert_eq!(named.service_name, "shop-catalog");
        let queue = config(&[endpoint, (MAX_QUEUE_SIZE, "16")]).unwrap();
        assert_eq!(queue.max_queue_size, 16);
        let resource = (RESOURCE_ATTRIBUTES, "team=shop,service.name=shop%20catalog");
        let from_resource = config(&[endpoint, resource]).unwrap();
        assert_eq!(from_resource.service_name, "shop catalog");
        let both = config(&[endpoint, resource, (SERVICE_NAME, "named")]).unwrap();
        assert_eq!(both.service_name, "named", "OTEL_SERVICE_NAME wins");
        let bad = config(&[endpoint, (MAX_QUEUE_SIZE, "0")]).unwrap();
        assert_eq!(bad.max_queue_size, DEFAULT_MAX_QUEUE_SIZE);
    }

    #[test]
    fn samplers_are_read_as_the_specification_names_them() {
        let describe = |name, arg| format!("{:?}", sampler(name, arg));
        assert_eq!(describe(None, None), "ParentBased(AlwaysOn)");
        assert_eq!(
            describe(Some("parentbased_traceidratio"), Some("0.25")),
            "ParentBased(TraceIdRatioBased(0.25))"
        );
        assert_eq!(describe(Some("always_off"), None), "AlwaysOff");
        assert_eq!(
            describe(Some("traceidratio"), Some("7")),
            "TraceIdRatioBased(1.0)"
        );
        assert_eq!(describe(Some("nonsense"), None), "ParentBased(AlwaysOn)");
    }
}
