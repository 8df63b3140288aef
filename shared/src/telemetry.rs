//! Logging and trace export shared by both binaries: log lines always; spans exported over
//! OTLP (http/protobuf) only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Without it, no exporter and no extra layer
//! exist, so the hot path costs what it did.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata, Span, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

pub use opentelemetry_otlp::ExporterBuildError;

use crate::trace::TraceParent;

/// Set once an exporting subscriber is installed: spans then join remote parents.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The spans exported, by name; every other span only shapes log lines.
const EXPORTED_SPANS: &[&str] = &["request", "job", "inference"];

/// Holds the exporter, if any; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
#[must_use = "call shutdown() before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter (bounded by
    /// `OTEL_BSP_EXPORT_TIMEOUT`). Blocks: call it on the way out.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "flushing the last spans failed");
        }
    }
}

/// Whether spans are exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Installs the global `tracing` subscriber: `RUST_LOG` filters log lines (default `info`),
/// `json` switches to one JSON object per line for log shippers. When an OTLP endpoint is
/// configured, spans also go to it, as `OTEL_SERVICE_NAME` (default `service`); the batch
/// exporter follows the standard `OTEL_BSP_*` variables.
pub fn init(json: bool, service: &str) -> Result<Telemetry, ExporterBuildError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if !endpoint_configured() {
        let registry = tracing_subscriber::registry().with(filter);
        // A second init (several servers in one test process) keeps the first subscriber.
        let _ = if json {
            registry
                .with(fmt::layer().json().with_current_span(true))
                .try_init()
        } else {
            registry.with(fmt::layer()).try_init()
        };
        return Ok(Telemetry { provider: None });
    }

    let provider = tracer_provider(service)?;
    let log = if json {
        fmt::layer().json().with_current_span(true).boxed()
    } else {
        fmt::layer().boxed()
    };
    // Each layer filters on its own: RUST_LOG chooses log lines; the exporter takes its spans
    // (the job span is at debug level so that it costs nothing when neither wants it) and
    // the events inside them.
    let export = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("inferq"))
        .with_filter(filter_fn(exported).with_max_level_hint(Level::DEBUG));
    let installed = tracing_subscriber::registry()
        .with(vec![log.with_filter(filter).boxed(), export.boxed()])
        .try_init()
        .is_ok();
    EXPORTING.store(installed, Ordering::Relaxed);
    Ok(Telemetry {
        provider: Some(provider),
    })
}

fn endpoint_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|e| !e.is_empty()))
}

fn tracer_provider(service: &str) -> Result<SdkTracerProvider, ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()?;
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| service.to_owned());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(name).build())
        .build())
}

/// What the exporter takes: the [`EXPORTED_SPANS`] of inferq's crates, and inferq's events at
/// debug level and above (recorded on the exported span they happen in, if any).
fn exported(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with("inferq")
        && if meta.is_span() {
            EXPORTED_SPANS.contains(&meta.name())
        } else {
            *meta.level() <= Level::DEBUG
        }
}

/// Joins `span` (declared with an empty `trace_id` field) to the caller's trace: when
/// exporting, its parent becomes the remote span `parent`; either way, `trace_id` records the
/// trace it belongs to, so its log lines carry it. Call it before the span is first entered.
pub fn join(span: &Span, parent: Option<&TraceParent>) {
    if span.is_disabled() {
        return;
    }
    if !exporting() {
        if let Some(p) = parent {
            span.record("trace_id", field::display(p.trace_id_hex()));
        }
        return;
    }
    if let Some(p) = parent {
        let remote = SpanContext::new(
            TraceId::from_bytes(p.trace_id),
            SpanId::from_bytes(p.parent_id),
            TraceFlags::new(p.flags),
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    // Without a parent the span starts a trace of its own; its id is what the logs need.
    let context = span.context();
    let own = context.span().span_context().clone();
    if own.is_valid() {
        span.record("trace_id", field::display(own.trace_id()));
    }
}

/// The trace context to carry with a job submitted in the current span: the current
/// (exported) span when exporting, so the job's span is its child; otherwise the caller's
/// `incoming` header as it came.
pub fn carried(incoming: Option<TraceParent>) -> Option<TraceParent> {
    if !exporting() {
        return incoming;
    }
    let context = Span::current().context();
    let current = context.span().span_context().clone();
    if !current.is_valid() {
        return incoming;
    }
    Some(TraceParent {
        trace_id: current.trace_id().to_bytes(),
        parent_id: current.span_id().to_bytes(),
        flags: current.trace_flags().to_u8(),
    })
}
