//! The set of running cameras, and how a reload changes it: cameras whose
//! spec is unchanged keep running (and keep their ring).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::capture::{Camera, CameraStatus, FrameObserver};
use crate::config::CameraSpec;

#[derive(Default)]
pub struct CameraSet {
    cameras: BTreeMap<String, Camera>,
    /// Told of every frame of every camera (the vision worker).
    observer: Option<Arc<dyn FrameObserver>>,
}

/// What a reload did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
}

impl CameraSet {
    pub fn new(observer: Option<Arc<dyn FrameObserver>>) -> CameraSet {
        CameraSet {
            cameras: BTreeMap::new(),
            observer,
        }
    }

    /// Makes the running set match `specs` (disabled cameras do not run).
    pub fn apply(&mut self, specs: &[CameraSpec]) -> ReloadSummary {
        let wanted: BTreeMap<&str, &CameraSpec> = specs
            .iter()
            .filter(|s| s.enabled)
            .map(|s| (s.name.as_str(), s))
            .collect();
        let mut summary = ReloadSummary::default();
        let mut leaving = Vec::new();
        for name in self.cameras.keys().cloned().collect::<Vec<_>>() {
            match wanted.get(name.as_str()) {
                Some(spec) if *spec == self.cameras[&name].spec() => {
                    summary.unchanged.push(name);
                }
                Some(_) => {
                    summary.restarted.push(name.clone());
                    leaving.push(self.cameras.remove(&name).expect("present"));
                }
                None => {
                    summary.removed.push(name.clone());
                    leaving.push(self.cameras.remove(&name).expect("present"));
                }
            }
        }
        stop_all(leaving);
        for (name, spec) in wanted {
            if !self.cameras.contains_key(name) {
                if !summary.restarted.iter().any(|r| r == name) {
                    summary.added.push(name.to_string());
                }
                self.cameras.insert(
                    name.to_string(),
                    Camera::start(spec.clone(), self.observer.clone()),
                );
            }
        }
        summary
    }

    pub fn statuses(&self) -> Vec<CameraStatus> {
        self.cameras.values().map(Camera::status).collect()
    }

    /// Each running camera's ring, by name.
    pub fn rings(&self) -> std::collections::HashMap<String, Arc<crate::ring::Ring>> {
        self.cameras
            .iter()
            .map(|(name, c)| (name.clone(), Arc::clone(c.ring())))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&Camera> {
        self.cameras.get(name)
    }

    pub fn len(&self) -> usize {
        self.cameras.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cameras.is_empty()
    }

    /// Stops every camera, all at once.
    pub fn stop(&mut self) {
        stop_all(std::mem::take(&mut self.cameras).into_values().collect());
    }
}

/// How long stopping may take before the daemon gives up on a camera; under
/// systemd's 5 s expectation for a clean stop.
const STOP_DEADLINE: Duration = Duration::from_secs(4);

/// Asks all cameras to stop first, then waits, so stopping N cameras takes
/// as long as the slowest one, not their sum.
fn stop_all(cameras: Vec<Camera>) {
    for c in &cameras {
        c.request_stop();
    }
    let deadline = Instant::now() + STOP_DEADLINE;
    for c in cameras {
        let name = c.name().to_string();
        if !c.join_until(deadline) {
            tracing::error!(camera = %name, "camera did not stop within {STOP_DEADLINE:?}; leaving it behind");
        }
    }
}
