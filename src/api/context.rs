//! What the endpoints read: the daemon's parts ([`ApiContext`]) and the
//! server's own counters. A leaf: the server, the routes and the metrics
//! all read it, and it reads none of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::capture::CameraStatus;
use crate::metrics::{Kind, Metric};
use crate::output::OutputStats;
use crate::store::Store;
use crate::vision::VisionWorker;
use crate::watch::{Rings, Watch};

/// The connection and request counters of the server.
#[derive(Default)]
pub struct Counters {
    pub active: AtomicUsize,
    pub requests: AtomicU64,
    pub refused_connections: AtomicU64,
    pub bad_requests: AtomicU64,
}

/// The server's numbers, in `/metrics` and `/v1/status`.
pub const API_METRICS: &[Metric<Counters>] = &[
    Metric {
        name: "vigil_api_requests_total",
        key: "requests",
        help: "API requests read.",
        kind: Kind::Counter,
        read: |c| c.requests.load(Ordering::Relaxed),
    },
    Metric {
        name: "vigil_api_bad_requests_total",
        key: "bad_requests",
        help: "API requests answered with an error status.",
        kind: Kind::Counter,
        read: |c| c.bad_requests.load(Ordering::Relaxed),
    },
    Metric {
        name: "vigil_api_refused_connections_total",
        key: "refused_connections",
        help: "Connections refused because too many were open.",
        kind: Kind::Counter,
        read: |c| c.refused_connections.load(Ordering::Relaxed),
    },
    Metric {
        name: "vigil_api_connections",
        key: "connections",
        help: "Open API connections.",
        kind: Kind::Gauge,
        read: |c| c.active.load(Ordering::Relaxed) as u64,
    },
];

/// Everything the endpoints read.
pub struct ApiContext {
    /// `None` when the config names no adapter or vision models: the API
    /// then reports status and cameras, and refuses questions.
    pub watch: Option<Arc<Watch>>,
    pub rings: Rings,
    pub store: Arc<Store>,
    /// The cameras' statuses now (the daemon owns the cameras).
    pub cameras: Box<dyn Fn() -> Vec<CameraStatus> + Send + Sync>,
    pub vision: Option<Arc<VisionWorker>>,
    /// What `/v1/status` says of the models.
    pub model: Value,
    pub started: Instant,
    pub counters: Counters,
    pub ask_timeout: Duration,
    /// Each `[[output]]`'s counters, for `/metrics`.
    pub outputs: Vec<Arc<OutputStats>>,
}

impl ApiContext {
    pub fn new(
        watch: Option<Arc<Watch>>,
        rings: Rings,
        store: Arc<Store>,
        cameras: Box<dyn Fn() -> Vec<CameraStatus> + Send + Sync>,
        vision: Option<Arc<VisionWorker>>,
        model: Value,
    ) -> ApiContext {
        ApiContext {
            watch,
            rings,
            store,
            cameras,
            vision,
            model,
            started: Instant::now(),
            counters: Counters::default(),
            ask_timeout: Duration::from_secs(60),
            outputs: Vec::new(),
        }
    }
}
