//! One pipeline for `once`, `watch` and `run`: the sources, started once on one runtime, then
//! the enrichment step (pod identity), make each report; the commands only choose what to do
//! with it.

use crate::config::Settings;
use crate::enrich::pods::Pods;
use crate::health::Loops;
use crate::interfaces;
use crate::report::{Node, Report};
use crate::sources::eni::{self, EniSource};
use crate::sources::linklocal::capture::{self, CaptureSpec};
use crate::sources::linklocal::meter::{InterfaceWindow, Meter};
use crate::sources::linklocal::source::{LinkLocal, StartError};
use crate::sources::linklocal::Targets;
use crate::sources::listeners::Workers;
use crate::sources::pod_use::PodUseSource;
use crate::sources::probes::Probes;
use crate::sources::resolver_checks::ResolverChecks;
use crate::sources::storage::Storage;
use crate::sources::{ena, Context, Source, Window};
use crate::sys::packet::RingConfig;
use crate::AgentError;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long after a window's end its packets are surely in user space: the ring hands over a
/// partly filled block after 100 ms; the rest is margin for a busy machine.
pub const DRAIN: Duration = Duration::from_millis(300);

/// How long startup waits for IMDS before capturing without the VPC resolver.
pub const IMDS_STARTUP_WAIT: Duration = Duration::from_secs(3);

/// The one runtime every source's tasks run on (two workers: telemetry must not share a
/// single worker with blocking work).
pub fn runtime() -> Result<tokio::runtime::Runtime, AgentError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("headroom-rt")
        .build()
        .map_err(|e| AgentError::Runtime(format!("cannot start the async runtime: {e}")))
}

/// How a command runs the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// No interface to measure is an error (`once`), not a warning.
    pub strict: bool,
    /// Seconds of packets the meter keeps.
    pub keep_seconds: u64,
}

pub struct Pipeline {
    ctx: Context,
    settings: Settings,
    linklocal: LinkLocal,
    eni: EniSource,
    ena: ena::Tracker,
    listeners: Workers,
    /// Off in sidecar mode (the node's cgroups are out of a pod's sight).
    pod_use: Option<PodUseSource>,
    checks: ResolverChecks,
    probes: Probes,
    storage: Storage,
    pods: Pods,
    start_ns: u64,
    loops: Loops,
}

impl Pipeline {
    /// Starts every source on `runtime`. The ENI source comes first and is waited for briefly,
    /// since under `--resolver auto` the VPC resolver must be in capture's kernel filter.
    pub fn start(
        settings: &Settings,
        mode: Mode,
        runtime: tokio::runtime::Handle,
    ) -> Result<Pipeline, AgentError> {
        let sidecar = settings.mode == crate::mode::Mode::Sidecar;
        if sidecar {
            sidecar_preflight(settings)?;
        }
        let ctx = Context {
            runtime,
            shutdown: CancellationToken::new(),
        };
        let meter = Meter::new(mode.keep_seconds).with_cache(settings.dns_cache);
        let (settings, eni) = identify(settings, mode.strict);
        let spec = CaptureSpec {
            selection: settings.selection.clone(),
            targets: Targets::new(&settings.resolvers),
            tap: settings.tap,
            ring: RingConfig::default(),
            rescan: settings.rescan_interval,
        };
        let proc_root = settings.workers.proc_root.clone();
        let (linklocal, names) = LinkLocal::start(spec, proc_root, meter, mode.strict, &ctx)
            .map_err(|e| match e {
                StartError::Usage(m) => AgentError::Usage(m),
                StartError::Tap(t) => t.into(),
            })?;
        // Once capture is open: a start that fails says only its one line.
        tracing::info!(message = "Mode.", mode = settings.mode.as_str(), reason = %settings.mode_reason);
        let mut ena = ena::Tracker::default();
        for n in &names {
            ena.sample(n);
        }
        // The sampler may fall a sample or two behind on a busy node without being stuck.
        let loops = Loops::new();
        let ready = (2 * settings.report_interval).max(3 * settings.workers.interval);
        let beat = loops.register("listeners", ready, ready + 2 * settings.report_interval);
        let listeners = Workers::start(&settings.workers, Some(beat));
        if sidecar {
            listeners.set_own_pod(settings.own_pod.uid.clone());
        }
        let pod_use = (!sidecar).then(|| PodUseSource::start(&settings.pod_use));
        // Windows start when the taps were open (a busy node may take a second to list its
        // listeners above: packets sent meanwhile belong in the first window, not before it);
        // the checks and probes start below, so what they send is counted too.
        let start_ns = linklocal.since_ns();
        let checks = ResolverChecks::start(settings.checks.clone(), &ctx);
        let (pods, pod_list) = match &pod_use {
            Some(pod_use) => Pods::start(
                settings.node_name.clone(),
                listeners.pod_threads(),
                pod_use.specs(),
                &ctx,
            ),
            None => Pods::start_own(settings.own_pod.clone(), listeners.pod_threads(), &ctx),
        };
        let mut probe_cfg = settings.probes.clone();
        if sidecar {
            // The kubelet's metrics are the node's, out of a Fargate pod's reach.
            probe_cfg.kubelet_url.clear();
        }
        let probes = Probes::start(
            probe_cfg,
            settings.node_name.clone(),
            pod_list,
            listeners.latest(),
            &ctx,
        );
        let storage = Storage::start(settings.workers.proc_root.clone());
        Ok(Pipeline {
            ctx,
            settings,
            linklocal,
            eni,
            ena,
            listeners,
            pod_use,
            checks,
            probes,
            storage,
            pods,
            start_ns,
            loops,
        })
    }

    /// The settings the sources run on (with the VPC resolver once IMDS named it).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// When the sources were all measuring, ns since the Unix epoch: the first window's start.
    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// The last window is over (`once`): the samplers stop, so it holds what was sampled in
    /// it; packets still drain until the report is cut.
    pub fn end_sampling(&mut self) {
        self.loops.forget("listeners");
        self.listeners.stop();
        if let Some(p) = &mut self.pod_use {
            p.stop();
        }
    }

    pub fn meter(&self) -> &Meter {
        self.linklocal.meter()
    }

    pub fn listeners(&self) -> &Workers {
        &self.listeners
    }

    /// The sources' loops that beat, for readiness and liveness.
    pub fn loops(&self) -> &Loops {
        &self.loops
    }

    fn node(&self) -> Node {
        let sidecar = self.settings.mode == crate::mode::Mode::Sidecar;
        Node {
            name: self.settings.node_name.clone(),
            mode: self.settings.mode,
            pod: sidecar.then(|| self.settings.own_pod.clone()),
            ..Node::default()
        }
    }

    /// The report of `start_ns..end_ns`: every source fills its section, then pod identity
    /// is added. Call it [`DRAIN`] after the window's end.
    pub fn report(&mut self, start_ns: u64, end_ns: u64) -> Report {
        let w = Window { start_ns, end_ns };
        let mut report = Report::new(self.node(), start_ns, end_ns, &[]);
        let mut sources: Vec<&mut dyn Source> = vec![
            &mut self.linklocal,
            &mut self.checks,
            &mut self.listeners,
            &mut self.eni,
            &mut self.ena,
            &mut self.probes,
            &mut self.storage,
        ];
        if let Some(p) = &mut self.pod_use {
            sources.push(p);
        }
        for s in sources {
            s.fill(w, &mut report);
        }
        if let Some(own) = self.settings.own_pod.pod_ref() {
            // A sidecar's listeners are its pod's, whatever their cgroup says.
            for l in report.listeners.iter_mut().filter(|l| l.pod.is_none()) {
                l.pod = Some(own.clone());
            }
        }
        self.pods.fill(&mut report);
        report
    }

    /// A report of given meter windows with what IMDS and the ENA counters add (`watch`'s
    /// one-second view).
    pub fn interfaces(
        &mut self,
        start_ns: u64,
        end_ns: u64,
        windows: &[InterfaceWindow],
    ) -> Report {
        let w = Window { start_ns, end_ns };
        let mut report = Report::new(self.node(), start_ns, end_ns, windows);
        self.eni.fill(w, &mut report);
        self.ena.fill(w, &mut report);
        report
    }

    /// Stops every source: tasks through the shutdown token, threads by joining them.
    pub fn stop(mut self) {
        self.ctx.shutdown.cancel();
        self.linklocal.stop();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
    }
}

/// A sidecar counts with an AF_PACKET socket (Fargate grants no CAP_BPF): without
/// CAP_NET_RAW it stops at once with the fix; says once what a pod cannot see.
fn sidecar_preflight(settings: &Settings) -> Result<(), AgentError> {
    use crate::sources::linklocal::capture::TapChoice;
    if settings.tap == TapChoice::AfPacket && !crate::sys::procfs::has_capability(13) {
        return Err(AgentError::Permission(
            "sidecar mode needs CAP_NET_RAW (its AF_PACKET tap counts the pod's link-local packets); add it to the agent container: securityContext.capabilities.add: [\"NET_RAW\"] (deploy/components/sidecar does)".into(),
        ));
    }
    tracing::info!(
        message = "Sidecar mode: measuring this pod only. Pod use and co-burst (the node's cgroups) and the kubelet's probe counts are off; storage covers the mounts of the processes this pod shows.",
        pod = ?settings.own_pod.name,
        namespace = ?settings.own_pod.namespace
    );
    Ok(())
}

/// Starts the ENI source and waits briefly for IMDS, before capture (whose kernel filter is
/// fixed at start). Returns the settings with the VPC resolver added under `--resolver auto`.
/// When capture is bound to fail at once (a named interface missing, nothing to measure in
/// `once`, no capability for any tap), IMDS is not asked: the user gets the one-line error and
/// nothing else.
fn identify(settings: &Settings, strict: bool) -> (Settings, EniSource) {
    let all = interfaces::list();
    let doomed = !interfaces::missing(&settings.selection, &all).is_empty()
        || (strict && interfaces::select(&settings.selection, &all).is_empty())
        || !capture::possible(settings.tap);
    if doomed {
        return (settings.clone(), EniSource::disabled());
    }
    let eni = EniSource::start(eni::Options {
        endpoint: settings.imds_endpoint.clone(),
        refresh: settings.imds_refresh_interval,
        selection: settings.selection.clone(),
    });
    let mut s = settings.clone();
    if settings.resolver_auto {
        match eni
            .wait_first(IMDS_STARTUP_WAIT)
            .and_then(|id| id.vpc_resolver())
        {
            Some(r) => {
                tracing::info!(message = "Counting the VPC resolver (primary CIDR base + 2).", resolver = %r);
                s.resolvers.push(r.into());
            }
            None => tracing::warn!(
                message = "VPC resolver unknown (IMDS gave no VPC CIDR); counting only the link-local resolvers. Restart once IMDS answers, or name it with --resolver IP."
            ),
        }
    }
    (s, eni)
}
