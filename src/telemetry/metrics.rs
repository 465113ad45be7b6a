//! Prometheus counters and histograms for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        let studies = Family::<ResultLabels, Counter>::default();
        registry.register(
            "studies",
            "Studies: accepted into the outbox, then sent, partial or failed when delivery ends",
            studies.clone(),
        );
        let instances = Family::<ResultLabels, Counter>::default();
        registry.register(
            "instances",
            "DICOM objects by final delivery outcome (success, warning, failed)",
            instances.clone(),
        );
        // 5 ms to about 20 s: a thumbnail on a fast box to a 48 MP photo on a Pi Zero.
        let conversion_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        registry.register(
            "conversion_seconds",
            "Time to turn one photo into a DICOM object",
            conversion_seconds.clone(),
        );
        let conversions_running = Gauge::default();
        registry.register(
            "conversions_running",
            "Photos being converted right now",
            conversions_running.clone(),
        );
        // The high-water mark shows whether MAX_CONVERSIONS (the memory budget) ever filled.
        let conversions_peak = Gauge::default();
        registry.register(
            "conversions_peak",
            "Most photos converted at the same time since start-up",
            conversions_peak.clone(),
        );
        let deliveries = Family::<ResultLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Instance delivery attempts by result (stored, warning, transient, permanent, configuration)",
            deliveries.clone(),
        );
        let delivery_attempts = Counter::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts of a study (first ones and retries)",
            delivery_attempts.clone(),
        );
        let outbox_queued = Gauge::default();
        registry.register(
            "outbox_queued",
            "Studies waiting in the outbox for (another) delivery attempt",
            outbox_queued.clone(),
        );
        let outbox_oldest_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "outbox_oldest_seconds",
            "Age of the oldest study still waiting in the outbox",
            outbox_oldest_seconds.clone(),
        );
        let outbox_failed = Gauge::default();
        registry.register(
            "outbox_failed",
            "Studies the PACS refused (all or part), waiting for an admin",
            outbox_failed.clone(),
        );
        let outbox_incomplete_removed = Counter::default();
        registry.register(
            "outbox_incomplete_removed",
            "Half-built studies (a crash during intake) removed at start-up",
            outbox_incomplete_removed.clone(),
        );
        let staging_swept = Counter::default();
        registry.register(
            "staging_swept",
            "Upload staging folders a crash left, removed at start-up",
            staging_swept.clone(),
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

    pub fn conversion(&self, seconds: f64) {
        self.conversion_seconds.observe(seconds);
    }

    /// Counts a conversion as running for as long as the guard lives.
    pub fn conversion_started(self: &std::sync::Arc<Self>) -> ConversionGuard {
        let now = self.conversions_running.inc() + 1;
        self.conversions_peak
            .inner()
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        ConversionGuard(self.clone())
    }

    /// The text exposition format.
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
        m.conversion(0.02);
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
        assert!(text.contains(r#"photo_pacs_build{version="#), "{text}");
    }
}
