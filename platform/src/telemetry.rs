//! Logs and traces: one subscriber for the process. Logs go to stdout, pretty in a terminal
//! and JSON otherwise. Spans are exported over OTLP (HTTP/protobuf) only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the other
//! standard `OTEL_*` variables (service name, resource attributes, sampler, batching, headers,
//! timeout) are honoured by the OpenTelemetry SDK. Without an endpoint no exporter exists and
//! the tracing layer is absent, so traces cost nothing.
//!
//! One trace follows an order across modules and processes through W3C `traceparent` values
//! (ADR 0015): requests carry the header, events carry it in their metadata, jobs in their
//! task metadata. [`current_traceparent`] says what to send or store; [`continue_trace`] makes
//! what arrived the parent of a span.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider, Span, SpanData, SpanProcessor};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl LogFormat {
    /// `pretty` when stdout is a terminal, `json` otherwise (containers, CI, log shippers).
    pub fn detect() -> Self {
        if std::io::stdout().is_terminal() { Self::Pretty } else { Self::Json }
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("LOG_FORMAT must be `pretty` or `json`, not `{other}`")),
        }
    }
}

/// The default filter when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=info";

/// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = "bulkhead";

/// The span attribute naming the module a span belongs to (`orders`, `payments`, …).
pub const MODULE_ATTRIBUTE: &str = "bulkhead.module";

/// The W3C header, and the key under which events and jobs keep the same value.
pub const TRACEPARENT: &str = "traceparent";

/// What the SDK calls a service it was not told the name of.
const UNKNOWN_SERVICE: &str = "unknown_service";

/// Spans exported over OTLP: where to, and which crates' spans name a module.
#[derive(Debug, Clone)]
pub struct OtlpTraces {
    /// The traces URL itself (`…/v1/traces`); `None` leaves it to the `OTEL_EXPORTER_OTLP_*`
    /// variables.
    endpoint: Option<String>,
    /// Module names: a span from the crate of that name gets [`MODULE_ATTRIBUTE`] unless it
    /// set one itself.
    modules: Vec<&'static str>,
    /// `None` leaves it to `OTEL_TRACES_SAMPLER` (default: parent-based, always on).
    sampler: Option<Sampler>,
}

impl OtlpTraces {
    /// Export as the standard variables say, if they name an endpoint and do not turn the SDK
    /// (`OTEL_SDK_DISABLED=true`) or the traces exporter (`OTEL_TRACES_EXPORTER=none`) off.
    pub fn from_env(modules: &[&'static str]) -> Option<Self> {
        let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
        let is = |name: &str, expected: &str| {
            std::env::var(name).is_ok_and(|value| value.trim().eq_ignore_ascii_case(expected))
        };
        let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let off = is("OTEL_SDK_DISABLED", "true") || is("OTEL_TRACES_EXPORTER", "none");
        (endpoint && !off).then(|| Self { endpoint: None, modules: modules.to_vec(), sampler: None })
    }

    /// Export to `traces_url` (the full URL, `http://host:4318/v1/traces`), whatever the
    /// variables say about the endpoint (tests point it at a receiver of their own).
    pub fn to_endpoint(traces_url: impl Into<String>, modules: &[&'static str]) -> Self {
        Self { endpoint: Some(traces_url.into()), modules: modules.to_vec(), sampler: None }
    }

    /// Samples with `sampler`, whatever `OTEL_TRACES_SAMPLER` says (tests export only the
    /// traces they started).
    #[must_use]
    pub fn with_sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = Some(sampler);
        self
    }

    fn provider(&self) -> anyhow::Result<SdkTracerProvider> {
        for variable in ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] {
            if let Ok(protocol) = std::env::var(variable) {
                anyhow::ensure!(
                    protocol.trim().is_empty() || protocol.trim() == "http/protobuf",
                    "{variable} is `{protocol}`, but only `http/protobuf` is built in"
                );
            }
        }
        let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary);
        if let Some(endpoint) = &self.endpoint {
            exporter = exporter.with_endpoint(endpoint.clone());
        }
        let exporter = exporter
            .build()
            .context("setting up the OTLP trace exporter (check the OTEL_EXPORTER_OTLP_* variables)")?;
        let processor =
            ModuleAttribution { modules: self.modules.clone(), inner: BatchSpanProcessor::builder(exporter).build() };
        let mut provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource());
        if let Some(sampler) = &self.sampler {
            provider = provider.with_sampler(sampler.clone());
        }
        Ok(provider.build())
    }
}

/// The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the SDK's own
/// attributes), named `bulkhead` when nobody named it.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| name.as_str() != UNKNOWN_SERVICE);
    if named { detected } else { Resource::builder().with_service_name(DEFAULT_SERVICE_NAME).build() }
}

/// Names the module of spans from module crates (`orders::service::…` → `orders`) that do not
/// name one themselves; platform spans (request, bus handler, job) set theirs explicitly.
#[derive(Debug)]
struct ModuleAttribution<P> {
    modules: Vec<&'static str>,
    inner: P,
}

impl<P: SpanProcessor> SpanProcessor for ModuleAttribution<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        if !span.attributes.iter().any(|kv| kv.key.as_str() == MODULE_ATTRIBUTE) {
            let module = span.attributes.iter().find(|kv| kv.key.as_str() == "code.module.name").and_then(|kv| {
                let path = kv.value.as_str();
                let krate = path.split("::").next().unwrap_or_default().to_owned();
                self.modules.iter().find(|m| **m == krate).copied()
            });
            if let Some(module) = module {
                span.attributes.push(KeyValue::new(MODULE_ATTRIBUTE, module));
            }
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The process's telemetry, kept by `main` until the end: shutting it down exports the spans
/// still buffered.
#[derive(Debug)]
#[must_use = "call `shutdown` before the process exits, or buffered spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every span ended so far (tests wait for a receiver to have them).
    ///
    /// # Errors
    /// When the exporter fails or does not answer in time.
    pub async fn flush(&self) -> anyhow::Result<()> {
        let Some(provider) = self.provider.clone() else { return Ok(()) };
        // The batch processor blocks until its thread has exported.
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .context("flushing spans")?
            .context("exporting the buffered spans")
    }

    /// Exports what is buffered and stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else { return };
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("bulkhead: exporting the last spans failed: {error}"),
            Err(error) => eprintln!("bulkhead: exporting the last spans failed: {error}"),
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// The server's logs: standard output, where containers' logs are collected.
    Stdout,
    /// A command's logs: standard error, so its standard output is only its answer (what
    /// `export $(bulkhead database start)` reads).
    Stderr,
}

/// Installs the process-wide subscriber: the `RUST_LOG` filter (default [`DEFAULT_FILTER`]),
/// logs in `log_format` (none: no log output) to `target`, and span export when `traces` is
/// given. Calling it again (tests) leaves the first subscriber in place.
///
/// # Errors
/// An exporter that cannot be set up (a malformed endpoint, an unsupported protocol).
pub fn init(log_format: Option<LogFormat>, target: LogTarget, traces: Option<OtlpTraces>) -> anyhow::Result<Telemetry> {
    let provider = traces.as_ref().map(OtlpTraces::provider).transpose()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let traces_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("bulkhead")).with_filter(exporter_noise())
    });
    let writer = || match target {
        LogTarget::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogTarget::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let pretty = (log_format == Some(LogFormat::Pretty))
        .then(|| tracing_subscriber::fmt::layer().with_target(false).with_writer(writer()));
    let json = (log_format == Some(LogFormat::Json)).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer())
    });
    let installed = tracing_subscriber::registry().with(filter).with(traces_layer).with(pretty).with(json).try_init();
    match (installed, provider) {
        (Ok(()), provider) => Ok(Telemetry { provider }),
        (Err(_), Some(unused)) => {
            let _ = unused.shutdown();
            Ok(Telemetry { provider: None })
        }
        (Err(_), None) => Ok(Telemetry { provider: None }),
    }
}

/// What the exporter does itself (its HTTP client, the SDK's own diagnostics) is not exported,
/// or every export would make spans for the next one.
fn exporter_noise() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
        .with_target("opentelemetry_http", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
}

/// The W3C `traceparent` of the current span, to send with a call or store with an event or a
/// job; `None` when spans are not exported (or no span is current).
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes the span that `traceparent` names the parent of `span`, so the work `span` covers
/// joins the caller's (or the event's, or the job's) trace. Call it before the span is first
/// entered. A malformed value, or spans not being exported, leaves `span` as it is.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    if span.is_disabled() {
        return;
    }
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        // Without the OpenTelemetry layer (no export) there is nothing to join.
        let _ = span.set_parent(parent);
    }
}

/// The module an event type or a queue name belongs to: what comes before the first dot
/// (`orders.order_placed` → `orders`, `payments.capture` → `payments`).
pub fn module_of(namespaced: &str) -> &str {
    namespaced.split('.').next().unwrap_or(namespaced)
}
