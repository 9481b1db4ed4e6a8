//! The latest sample of every listener, shared with the probe source: a probe attempt reads
//! how busy the probed pod's workers were when it ran.

use super::Local;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// One listener in the sampler's latest sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSample {
    /// The pod's uid from the holder's cgroup; None outside pods.
    pub pod_uid: Option<String>,
    pub local: Local,
    pub workers: u32,
    /// Requests in service (event loops: 0, see [`model`]).
    pub busy: u32,
    /// Workers × threads per worker.
    pub capacity: u32,
    /// Connections in the accept queue at the sample.
    pub queue: u32,
}

/// The latest sample of every listener, replaced after each sample: what a probe attempt
/// reads to say how saturated the probed pod's workers were at that moment. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LatestSamples(Arc<RwLock<Vec<ListenerSample>>>);

impl LatestSamples {
    pub(super) fn set(&self, samples: Vec<ListenerSample>) {
        if let Ok(mut s) = self.0.write() {
            *s = samples;
        }
    }

    /// Listeners in the latest sample (all of them: the caps apply to reports only).
    pub fn len(&self) -> usize {
        self.0.read().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The listener on `port` of the pod `pod_uid` (known by its cgroup), or bound to `host`
    /// itself (a pod IP); with several (IPv4 and IPv6), the one with the most workers.
    pub fn find(&self, pod_uid: &str, host: IpAddr, port: u16) -> Option<ListenerSample> {
        let s = self.0.read().ok()?;
        s.iter()
            .filter(|l| {
                let Local::Tcp(local) = l.local else {
                    return false;
                };
                local.port() == port
                    && ((!pod_uid.is_empty() && l.pod_uid.as_deref() == Some(pod_uid))
                        || local.ip() == host)
            })
            .max_by_key(|l| (l.workers, l.busy))
            .cloned()
    }
}
