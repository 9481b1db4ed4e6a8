//! Packet capture: one tap per measured interface, each on its own thread, feeding the meter.

use super::bpf;
use crate::interfaces::{self, Selection};
use crate::sources::dns::parse::DnsBatch;
use crate::sources::linklocal::classify::classify;
use crate::sources::linklocal::meter::Meter;
use crate::sources::linklocal::{Service, Targets};
use crate::sys::ebpf;
use crate::sys::packet as afpacket;
pub use crate::sys::packet::{Delivery, PacketTap, TapError, TapKind, TapStats};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes kept of each counted non-DNS packet: IPv6 + extension headers + TCP with options.
pub const SNAPLEN: u32 = 128;
/// Bytes kept of each DNS packet: headers plus the DNS header and a question of any length.
pub const DNS_SNAPLEN: u32 = 512;

/// Which tap counts the packets (`--tap`, config `tap`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TapChoice {
    /// The eBPF tap where the kernel (≥ 6.6) and the capabilities allow it, else AF_PACKET.
    #[default]
    Auto,
    /// tcx programs that count in-line: no packet is cloned for the agent.
    Ebpf,
    /// An AF_PACKET ring with a classic BPF filter: the kernel clones every egress packet.
    #[value(name = "af_packet")]
    AfPacket,
}

/// What to capture and how.
#[derive(Debug, Clone)]
pub struct CaptureSpec {
    pub selection: Selection,
    pub targets: Targets,
    pub tap: TapChoice,
    pub ring: afpacket::RingConfig,
    /// How often to look for interfaces that appeared (the VPC CNI attaches ENIs at runtime).
    pub rescan: Duration,
}

/// Running capture threads; stops them on drop.
pub struct Capture {
    stop: Arc<AtomicBool>,
    /// Dropped on shutdown, which wakes the rescan thread at once.
    wake: Option<std::sync::mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    active: Arc<Mutex<BTreeSet<String>>>,
}

impl Capture {
    /// Opens a tap on every selected interface now (so permission problems surface at once),
    /// then keeps rescanning for new ones. Returns the interfaces opened.
    pub fn start(spec: CaptureSpec, meter: Meter) -> Result<(Capture, Vec<String>), TapError> {
        let mut opener = Opener::new(&spec)?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(Mutex::new(BTreeSet::new()));
        let (wake_tx, wake_rx) = std::sync::mpsc::channel();
        let mut cap = Capture {
            stop: stop.clone(),
            wake: Some(wake_tx),
            threads: Vec::new(),
            active: active.clone(),
        };
        let names = interfaces::select(&spec.selection, &interfaces::list());
        for name in &names {
            let tap = opener.open(name)?;
            cap.threads.push(spawn_reader(
                name.clone(),
                tap,
                spec.targets.clone(),
                meter.clone(),
                stop.clone(),
                active.clone(),
            ));
        }
        let rescan = {
            let (stop, active, meter) = (stop.clone(), active.clone(), meter.clone());
            std::thread::Builder::new()
                .name("capture-rescan".into())
                .spawn(move || rescan_loop(wake_rx, spec, opener, meter, stop, active))
                .expect("spawning a thread")
        };
        cap.threads.push(rescan);
        Ok((cap, names))
    }

    /// Interfaces being captured now.
    pub fn active(&self) -> Vec<String> {
        self.active.lock().unwrap().iter().cloned().collect()
    }

    /// Stops every thread and waits for them.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn rescan_loop(
    wake: std::sync::mpsc::Receiver<()>,
    spec: CaptureSpec,
    mut opener: Opener,
    meter: Meter,
    stop: Arc<AtomicBool>,
    active: Arc<Mutex<BTreeSet<String>>>,
) {
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    let mut warned = BTreeSet::new();
    // Sleeps a whole rescan interval unless told to stop (the sender is dropped on shutdown).
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wake.recv_timeout(spec.rescan) {
        for name in interfaces::select(&spec.selection, &interfaces::list()) {
            if active.lock().unwrap().contains(&name) {
                continue;
            }
            match opener.open(&name) {
                Ok(tap) => {
                    tracing::info!(message = "Capturing on a new interface.", interface = %name);
                    warned.remove(&name);
                    readers.push(spawn_reader(
                        name,
                        tap,
                        spec.targets.clone(),
                        meter.clone(),
                        stop.clone(),
                        active.clone(),
                    ));
                }
                Err(error) => {
                    if warned.insert(name.clone()) {
                        tracing::warn!(message = "Cannot capture on interface; will retry.", interface = %name, %error);
                    }
                }
            }
        }
    }
    for r in readers {
        let _ = r.join();
    }
}

fn spawn_reader(
    name: String,
    tap: Box<dyn PacketTap>,
    targets: Targets,
    meter: Meter,
    stop: Arc<AtomicBool>,
    active: Arc<Mutex<BTreeSet<String>>>,
) -> JoinHandle<()> {
    active.lock().unwrap().insert(name.clone());
    meter.attach(&name, interfaces::mac(&name), tap.kind());
    std::thread::Builder::new()
        .name(format!("capture-{name}"))
        .spawn(move || {
            if let Err(error) = read_loop(&name, tap, &targets, &meter, &stop) {
                tracing::warn!(message = "Capture stopped on interface.", interface = %name, %error);
            }
            meter.detach(&name);
            active.lock().unwrap().remove(&name);
        })
        .expect("spawning a thread")
}

/// Reads batches until `stop`, classifying each packet and adding it to the meter.
pub fn read_loop(
    name: &str,
    mut tap: Box<dyn PacketTap>,
    targets: &Targets,
    meter: &Meter,
    stop: &AtomicBool,
) -> Result<(), TapError> {
    let mut batch: Vec<(u64, Service, u32)> = Vec::with_capacity(4096);
    let mut dns = DnsBatch::default();
    let mut last_stats = Instant::now();
    // Test hook (`HEADROOM_TEST_STALL_CAPTURE_AFTER=3s`): stop reading and beating, as a
    // stuck thread would, so a test can watch /readyz fail.
    let stall_at = crate::health::test_stall_at("capture");
    loop {
        if stall_at.is_some_and(|t| Instant::now() >= t) {
            // Test hook: a capture thread that is alive but stuck (no reads, no heartbeat).
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return Ok(());
        }
        meter.beat(name);
        // Drain what is already there even when stopping, so the last window is complete.
        let stopping = stop.load(Ordering::SeqCst);
        tap.next_batch(Duration::from_millis(200), &mut |item| match item {
            Delivery::Packet { ts, outgoing, data } => {
                if outgoing {
                    // Only what the node sends counts toward the allowance.
                    let Some(c) = classify(data, targets) else {
                        return;
                    };
                    batch.push((ts, c.service, 1));
                    if c.service != Service::Dns {
                        return;
                    }
                }
                decode(ts, outgoing, data, &mut dns);
            }
            Delivery::Decode { ts, outgoing, data } => decode(ts, outgoing, data, &mut dns),
            Delivery::Counted { ts, class, n } => {
                if let Some(s) = Service::ALL.get(class as usize) {
                    batch.push((ts, *s, n));
                }
            }
        })?;
        if !batch.is_empty() || !dns.is_empty() {
            meter.record(name, &batch, dns.as_slice());
            batch.clear();
            dns.clear();
        }
        if stopping || last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            let st = tap.take_stats()?;
            if st.dropped > 0 {
                meter.add_drops(name, st.dropped);
            }
        }
        if stopping {
            return Ok(());
        }
    }
}

/// Queries the node sent and replies it received, decoded for the DNS layer.
fn decode(ts: u64, outgoing: bool, data: &[u8], dns: &mut DnsBatch) {
    dns.push(ts, data, |d| d.response != outgoing);
}

/// The eBPF tap's classes are the services' indices; its DNS class is the resolvers'.
const _: () = assert!(ebpf::DNS_CLASS as usize == Service::Dns as usize);
const _: () = assert!(Service::ALL.len() <= ebpf::CLASSES);

/// Opens the chosen tap on each interface. Under `auto` the eBPF tap is tried first; when the
/// kernel or the capabilities do not allow it, or it fails, the AF_PACKET tap is used from then
/// on, with one log line saying why.
struct Opener {
    ebpf: bool,
    auto: bool,
    program: Vec<bpf::Insn>,
    ring: afpacket::RingConfig,
    targets: Vec<(std::net::IpAddr, u8)>,
}

impl Opener {
    fn new(spec: &CaptureSpec) -> Result<Opener, TapError> {
        let ebpf = match spec.tap {
            TapChoice::AfPacket => false,
            TapChoice::Ebpf => true,
            TapChoice::Auto => match ebpf::unavailable() {
                None => true,
                Some(why) => {
                    // Without CAP_NET_RAW either, the AF_PACKET tap's one-line error names both.
                    if crate::sys::procfs::has_capability(13) {
                        tracing::info!(message = "Using the AF_PACKET tap: the eBPF tap is not possible here.", reason = %why);
                    }
                    false
                }
            },
        };
        Ok(Opener {
            ebpf,
            auto: spec.tap == TapChoice::Auto,
            program: bpf::program(&spec.targets, SNAPLEN, DNS_SNAPLEN)?,
            ring: spec.ring,
            targets: spec.targets.classes(),
        })
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn PacketTap>, TapError> {
        if self.ebpf {
            match ebpf::EbpfTap::open(name, &self.targets) {
                Ok(tap) => return Ok(Box::new(tap)),
                Err(e @ TapError::Gone { .. }) => return Err(e),
                Err(e) if self.auto => {
                    tracing::warn!(message = "Using the AF_PACKET tap: the eBPF tap failed.", interface = %name, error = %e);
                    self.ebpf = false;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Box::new(afpacket::AfPacketTap::open(
            name,
            &self.program,
            self.ring,
        )?))
    }
}

/// Whether some tap can be opened at all with `choice` (root, or the capabilities it needs):
/// when none can, IMDS is not asked and the user gets the tap's one-line error alone.
pub fn possible(choice: TapChoice) -> bool {
    let raw = crate::sys::procfs::has_capability(13);
    match choice {
        TapChoice::AfPacket => raw,
        TapChoice::Ebpf => ebpf::unavailable().is_none(),
        TapChoice::Auto => raw || ebpf::unavailable().is_none(),
    }
}
