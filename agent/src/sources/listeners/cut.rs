//! Ending a report window: the listeners sampled since the last cut, as report entries.

use super::*;

impl<D: Diag> Sampler<D> {
    /// Ends the report window of `seconds`: the listeners sampled since the last cut, within
    /// the caps (what they left out: [`Sampler::omitted`]).
    /// Saturated time is the window's share of saturated samples times its length.
    pub fn cut(&mut self, seconds: f64) -> Vec<ListenerReport> {
        let accs = std::mem::take(&mut self.accs);
        let by_ns = self.accepts_by_ns(&accs);
        let mut out = Vec::new();
        let mut seen_paths = HashSet::new();
        // A cgroup's throttling over the window, read once: several listeners of one pod share
        // it (a second read would find the baseline just moved and report 0).
        let mut window_cpu: HashMap<PathBuf, Option<cgroup::CpuStat>> = HashMap::new();
        for (key, a) in accs {
            let (pod, stat_path) = self
                .procs
                .get(&a.holder)
                .and_then(|p| p.cgroup.clone())
                .unwrap_or((None, None));
            let cpu = stat_path.and_then(|path| {
                *window_cpu.entry(path.clone()).or_insert_with(|| {
                    let now = cgroup::read_cpu_stat(std::slice::from_ref(&path))?.1;
                    let base = self.cpu_base.insert(path.clone(), now).unwrap_or(now);
                    seen_paths.insert(path);
                    Some(now.since(&base))
                })
            });
            let saturated = round3(a.saturated as f64 / a.samples.max(1) as f64 * seconds);
            let now = Instant::now();
            let total = self.saturated_total.entry(key).or_insert((0.0, now));
            *total = (total.0 + saturated, now);
            let total = total.0;
            let busy_mean = round3(a.busy_sum as f64 / a.samples.max(1) as f64);
            let capacity = a.capacity;
            let (address, port) = match &a.local {
                Local::Tcp(l) => (l.ip().to_string(), Some(l.port())),
                Local::Unix(name) | Local::Group(name) => {
                    (crate::sys::sock::display_name(name), None)
                }
            };
            let process = match &a.local {
                Local::Group(_) => "passenger".to_string(),
                _ => self
                    .procs
                    .get(&a.holder)
                    .map(|p| p.comm.clone())
                    .unwrap_or_default(),
            };
            let ns = &by_ns[&key.0];
            let own = matches!(a.local, Local::Tcp(_)) && ns.tcp_ports == 1;
            out.push(ListenerReport {
                pod: pod.as_ref().map(|p| PodRef {
                    namespace: None,
                    name: None,
                    uid: p.pod_uid.clone(),
                }),
                container: pod.and_then(|p| p.container),
                address,
                port,
                process,
                workers: a.workers,
                threads: a.threads.n,
                threads_known: a.threads.known,
                capacity,
                model: a.model,
                busy_mean,
                busy_max: a.busy_max,
                connections_mean: round3(a.conns_sum as f64 / a.samples.max(1) as f64),
                connections_max: a.conns_max,
                connections_kept_max: a.kept_max,
                accepts_per_second: ns.accepts.map(|r| round3(r.mean)),
                accepts_per_second_max: ns.accepts.map(|r| round3(r.max)),
                accepts_scope: if own {
                    AcceptsScope::Listener
                } else {
                    AcceptsScope::Namespace
                },
                requests_are_connections: ns.requests_are_connections,
                queue_max: a.queue_max,
                backlog: a.backlog,
                utilization: if capacity > 0 {
                    round3(busy_mean / capacity as f64)
                } else {
                    0.0
                },
                saturated_seconds: saturated,
                cpu_periods: cpu.map(|c| c.nr_periods),
                cpu_throttled_periods: cpu.map(|c| c.nr_throttled),
                cpu_throttled_seconds: cpu.map(|c| c.throttled_usec as f64 / 1e6),
                samples: a.samples,
                netns: key.0,
                worker_pids: a.worker_pids,
                busy_source: a.busy_source,
                workload: None,
                saturated_seconds_total: total,
            });
        }
        self.saturated_total
            .retain(|_, (_, seen)| seen.elapsed() < self.forget_gone);
        self.cpu_base.retain(|p, _| {
            seen_paths.contains(p)
                || self
                    .procs
                    .values()
                    .any(|q| q.cgroup.as_ref().and_then(|c| c.1.as_ref()) == Some(p))
        });
        out.sort_by(|a, b| {
            (a.pod.as_ref().map(|p| &p.uid), a.port, &a.address, a.netns).cmp(&(
                b.pod.as_ref().map(|p| &p.uid),
                b.port,
                &b.address,
                b.netns,
            ))
        });
        self.omitted = caps::apply(&mut out, &self.caps);
        out
    }

    /// Per namespace of the window's listeners: accepted connections (every namespace's rate
    /// starts a new window here), its TCP listening ports, and whether connections are
    /// requests: not when an event loop in it kept one open for [`accepts::KEPT_ALIVE`], nor
    /// when an event loop (a front) shares it with a worker pool on TCP (each request through
    /// the front may open a second connection to the pool, or none when it keeps them).
    fn accepts_by_ns(&mut self, accs: &BTreeMap<Key, Acc>) -> HashMap<u64, NsAccepts> {
        let mut out: HashMap<u64, NsAccepts> = HashMap::new();
        // Per namespace: TCP ports, an event loop on TCP, a worker pool on TCP.
        let mut tcp: HashMap<u64, (HashSet<u16>, bool, bool)> = HashMap::new();
        for (key, a) in accs {
            let e = out.entry(key.0).or_insert(NsAccepts {
                accepts: None,
                tcp_ports: 0,
                requests_are_connections: true,
            });
            if a.model == Model::EventLoop && a.kept_max > 0 {
                e.requests_are_connections = false;
            }
            if let Local::Tcp(l) = a.local {
                let t = tcp.entry(key.0).or_default();
                t.0.insert(l.port());
                t.1 |= a.model == Model::EventLoop;
                t.2 |= a.model != Model::EventLoop;
            }
        }
        for (ns, r) in &mut self.accepts {
            let window = r.cut();
            if let Some(e) = out.get_mut(ns) {
                e.accepts = window;
                if let Some((ports, front, pool)) = tcp.get(ns) {
                    e.tcp_ports = ports.len();
                    e.requests_are_connections &= !(*front && *pool);
                }
            }
        }
        self.held.retain(&accs.keys().copied().collect());
        out
    }
}

/// One namespace's share of a window cut.
struct NsAccepts {
    accepts: Option<accepts::Accepts>,
    tcp_ports: usize,
    requests_are_connections: bool,
}
