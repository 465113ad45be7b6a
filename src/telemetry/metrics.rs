//! Prometheus counters and histograms for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    version: &'static str,
    backend: &'static str,
}

pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    studies: Family<ResultLabels, Counter>,
    instances: Family<ResultLabels, Counter>,
    conversion_seconds: Histogram,
    conversions: Family<PathLabels, Counter>,
    conversions_running: Gauge,
    conversions_peak: Gauge,
    deliveries: Family<ResultLabels, Counter>,
    delivery_attempts: Counter,
    outbox_queued: Gauge,
    outbox_oldest_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    outbox_failed: Gauge,
    outbox_incomplete_removed: Counter,
    staging_swept: Counter,
}

/// Registers `metric` under `name` and hands back the handle the gateway updates.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// [`register`] for a metric that starts at its default.
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    register(registry, name, help, M::default())
}

/// Marks one conversion as running until dropped.
pub struct ConversionGuard(std::sync::Arc<Metrics>);

impl Drop for ConversionGuard {
    fn drop(&mut self) {
        self.0.conversions_running.dec();
    }
}

impl Metrics {
    pub fn new(backend: &'static str) -> Self {
        let mut registry = Registry::with_prefix("photo_pacs");
        let http_requests: Family<HttpLabels, Counter> = registered(
            &mut registry,
            "http_requests",
            "HTTP requests by route and status",
        );
        let studies: Family<ResultLabels, Counter> = registered(
            &mut registry,
            "studies",
            "Studies: accepted into the outbox, then sent, partial or failed when delivery ends",
        );
        let instances: Family<ResultLabels, Counter> = registered(
            &mut registry,
            "instances",
            "DICOM objects by final delivery outcome (success, warning, failed)",
        );
        // 5 ms to about 20 s: a thumbnail on a fast box to a 48 MP photo on a Pi Zero.
        let conversion_seconds = register(
            &mut registry,
            "conversion_seconds",
            "Time to turn one photo into a DICOM object",
            Histogram::new(exponential_buckets(0.005, 2.0, 13)),
        );
        let conversions: Family<PathLabels, Counter> = registered(
            &mut registry,
            "conversions",
            "Photos converted, by how their pixels reached the object: kept (the camera's JPEG as it is), transformed (turned or made baseline losslessly) or decoded",
        );
        let conversions_running: Gauge = registered(
            &mut registry,
            "conversions_running",
            "Photos being converted right now",
        );
        // The high-water mark shows whether MAX_CONVERSIONS (the memory budget) ever filled.
        let conversions_peak: Gauge = registered(
            &mut registry,
            "conversions_peak",
            "Most photos converted at the same time since start-up",
        );
        let deliveries: Family<ResultLabels, Counter> = registered(
            &mut registry,
            "deliveries",
            "Instance delivery attempts by result (stored, warning, transient, permanent, configuration)",
        );
        let delivery_attempts: Counter = registered(
            &mut registry,
            "delivery_attempts",
            "Delivery attempts of a study (first ones and retries)",
        );
        let outbox_queued: Gauge = registered(
            &mut registry,
            "outbox_queued",
            "Studies waiting in the outbox for (another) delivery attempt",
        );
        let outbox_oldest_seconds: Gauge<f64, std::sync::atomic::AtomicU64> = registered(
            &mut registry,
            "outbox_oldest_seconds",
            "Age of the oldest study still waiting in the outbox",
        );
        let outbox_failed: Gauge = registered(
            &mut registry,
            "outbox_failed",
            "Studies the PACS refused (all or part), waiting for an admin",
        );
        let outbox_incomplete_removed: Counter = registered(
            &mut registry,
            "outbox_incomplete_removed",
            "Half-built studies (a crash during intake) removed at start-up",
        );
        let staging_swept: Counter = registered(
            &mut registry,
            "staging_swept",
            "Upload staging folders a crash left, removed at start-up",
        );
        let info = Family::<InfoLabels, Gauge>::default();
        info.get_or_create(&InfoLabels {
            version: env!("CARGO_PKG_VERSION"),
            backend,
        })
        .set(1);
        registry.register("build", "Version and PACS backend of this gateway", info);
        Metrics {
            registry,
            http_requests,
            studies,
            instances,
            conversion_seconds,
            conversions,
            conversions_running,
            conversions_peak,
            deliveries,
            delivery_attempts,
            outbox_queued,
            outbox_oldest_seconds,
            outbox_failed,
            outbox_incomplete_removed,
            staging_swept,
        }
    }

    /// One instance's delivery attempt ended with `result`.
    pub fn delivery(&self, result: &'static str) {
        self.deliveries
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// `studies` studies had a delivery attempt.
    pub fn delivery_attempts(&self, studies: u64) {
        self.delivery_attempts.inc_by(studies);
    }

    pub fn outbox(&self, queued: i64, oldest_seconds: f64, failed: i64) {
        self.outbox_queued.set(queued);
        self.outbox_oldest_seconds.set(oldest_seconds);
        self.outbox_failed.set(failed);
    }

    pub fn outbox_incomplete_removed(&self, n: u64) {
        self.outbox_incomplete_removed.inc_by(n);
    }

    pub fn staging_swept(&self, n: u64) {
        self.staging_swept.inc_by(n);
    }

    pub fn http_request(&self, method: &str, route: &'static str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route,
                status,
            })
            .inc();
    }

    pub fn study(&self, result: &'static str) {
        self.studies.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn instance(&self, result: &'static str) {
        self.instances.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn conversion(&self, seconds: f64, path: &'static str) {
        self.conversion_seconds.observe(seconds);
        self.conversions.get_or_create(&PathLabels { path }).inc();
    }

    /// Counts a conversion as running for as long as the guard lives.
    pub fn conversion_started(self: &std::sync::Arc<Self>) -> ConversionGuard {
        let now = self.conversions_running.inc() + 1;
        self.conversions_peak
            .inner()
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        ConversionGuard(self.clone())
    }

    /// OpenMetrics 1.0 text (served as such by `GET /metrics`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_text() {
        let m = std::sync::Arc::new(Metrics::new("mock"));
        m.http_request("GET", "/healthz", 200);
        m.study("sent");
        m.instance("success");
        m.conversion(0.02, "kept");
        {
            let _a = m.conversion_started();
            let _b = m.conversion_started();
        }
        let _c = m.conversion_started();
        let text = m.render();
        assert!(text.contains("photo_pacs_conversions_running 1"), "{text}");
        assert!(text.contains("photo_pacs_conversions_peak 2"), "{text}");
        assert!(
            text.contains(
                r#"photo_pacs_http_requests_total{method="GET",route="/healthz",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"photo_pacs_studies_total{result="sent"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("photo_pacs_conversion_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"photo_pacs_conversions_total{path="kept"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"photo_pacs_build{version="#), "{text}");
    }
}
