//! The eBPF tap: tcx programs (`tap.bpf.c`, compiled by build.rs) that count in-line what an
//! interface sends to the link-local targets, so no packet is cloned for the agent; only DNS
//! packets reach user space, through a BPF ring buffer.
//!
//! Links are created through bpf_link (tcx, kernel ≥ 6.6) and owned by this process's file
//! descriptors, never pinned: when the process ends, even by SIGKILL, the kernel detaches them.
//! Older kernels have only netlink-attached cls_bpf filters, which would outlive a killed agent,
//! so there the agent uses the AF_PACKET tap instead.

use super::packet::{ifindex, Delivery, PacketTap, TapError, TapKind, TapStats};
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::tc::{TcAttachOptions, TcAttachType};
use aya::programs::{LinkOrder, SchedClassifier};
use aya::{Ebpf, EbpfLoader};
use rustix::event::epoll;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// The object build.rs compiled.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tap.bpf.o"));

// Keep in step with tap.bpf.c.
/// Most IPv4 and IPv6 targets the program compares against.
pub const MAX_V4: usize = 16;
pub const MAX_V6: usize = 16;
/// Target classes the program counts separately.
pub const CLASSES: usize = 4;
/// Packets of this class that are UDP or TCP on port 53 are copied to the ring.
pub const DNS_CLASS: u8 = 0;
/// 10 ms steps kept per CPU.
const STEPS: u64 = 512;
const STEP_NS: u64 = 10_000_000;
/// Bytes before the payload of each ring record.
const RECORD_HEADER: usize = 16;
/// Most ring records handed over by one `next_batch`, so the loop keeps beating under a flood.
const MAX_RECORDS: usize = 1 << 16;
/// The oldest kernel with tcx links.
const MIN_KERNEL: (u32, u32) = (6, 6);

#[repr(C)]
#[derive(Clone, Copy)]
struct Config {
    clock_offset: u64,
    l2_len: u32,
    n4: u32,
    n6: u32,
    v4: [u32; MAX_V4],
    class4: [u8; MAX_V4],
    v6: [[u8; 16]; MAX_V6],
    class6: [u8; MAX_V6],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Step {
    step: u64,
    n: [u32; CLASSES],
}

// SAFETY: both are `repr(C)` structs of integers and integer arrays with no padding the kernel
// could leave uninitialised that matters (the padding of `Config` is never read back), valid
// for any bit pattern, which is what `Pod` asks for.
unsafe impl aya::Pod for Config {}
// SAFETY: as above.
unsafe impl aya::Pod for Step {}

/// The cheap checks `auto` makes before trying the tap: the kernel has tcx, and the process
/// holds what loading and attaching need. Err says why not, in words for a log line.
pub fn unavailable() -> Option<String> {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .to_string();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if version < MIN_KERNEL {
        return Some(format!(
            "kernel {release} has no tcx links (Linux 6.6 or later); netlink tc filters would outlive a killed agent"
        ));
    }
    // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (kernels before 5.8 knew only it).
    let has = super::procfs::has_capability;
    let missing: Vec<&str> = [(39, "CAP_BPF"), (12, "CAP_NET_ADMIN"), (38, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(bit, _)| !(has(bit) || (bit != 12 && has(21))))
        .map(|(_, name)| name)
        .collect();
    if !missing.is_empty() {
        return Some(format!("missing {}", missing.join(", ")));
    }
    None
}

/// The tcx programs and maps on one interface.
pub struct EbpfTap {
    name: String,
    ifindex: i32,
    /// Owns the programs and their links: dropping it detaches them.
    _bpf: Ebpf,
    config: Array<MapData, Config>,
    current: Config,
    steps: PerCpuArray<MapData, Step>,
    stats: PerCpuArray<MapData, u64>,
    ring: RingBuf<MapData>,
    epoll: OwnedFd,
    fold: StepFold,
    lost_seen: u64,
    checked: Instant,
}

fn ebpf_err(iface: &str, what: &str, e: impl std::fmt::Display) -> TapError {
    let reason = format!("{what}: {}", one_line(&e.to_string()));
    // The verifier refuses pointer arithmetic on map values to a loader without CAP_PERFMON
    // (its Spectre v1 rules for unprivileged programs): that is a missing capability too.
    if reason.contains("Operation not permitted")
        || reason.contains("Permission denied")
        || reason.contains("prohibited for !root")
    {
        return TapError::EbpfPermission {
            iface: iface.to_string(),
            reason,
        };
    }
    TapError::Ebpf {
        iface: iface.to_string(),
        reason,
    }
}

/// A load error carries the verifier's whole log; its last complaint (before the statistics
/// lines) is what says why.
fn one_line(text: &str) -> String {
    let Some((head, log)) = text.split_once("Verifier output:") else {
        return text.lines().next().unwrap_or_default().to_string();
    };
    let complaint = log
        .lines()
        .map(str::trim)
        .rfind(|l| {
            !l.is_empty()
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("processed ")
        })
        .unwrap_or("");
    format!(
        "{} verifier: {complaint}",
        head.trim().trim_end_matches('.')
    )
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC in ns: what the programs add to bpf_ktime_get_ns to stamp
/// in the same clock as AF_PACKET and the report windows.
fn clock_offset() -> u64 {
    use rustix::time::{clock_gettime, ClockId};
    let ns = |t: rustix::time::Timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
    let r1 = ns(clock_gettime(ClockId::Realtime));
    let m = ns(clock_gettime(ClockId::Monotonic));
    let r2 = ns(clock_gettime(ClockId::Realtime));
    ((r1 + r2) / 2 - m) as u64
}

fn realtime_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Bytes before the IP header on `name`: 14 on Ethernet (ARPHRD_ETHER), 0 on raw-IP devices.
fn l2_len(name: &str) -> Result<u32, TapError> {
    let kind = std::fs::read_to_string(format!("/sys/class/net/{name}/type")).unwrap_or_default();
    match kind.trim() {
        // Ethernet, and loopback (which carries a zeroed Ethernet header).
        "1" | "772" => Ok(14),
        "65534" => Ok(0),
        other => Err(TapError::Ebpf {
            iface: name.to_string(),
            reason: format!("link type {other:?} is neither Ethernet nor raw IP"),
        }),
    }
}

/// Attaches the object's empty `baseline` program to `name`'s tcx egress hook: what the hook
/// alone costs every packet, for the node-tax benchmark to subtract. Detached when the returned
/// object is dropped (or the process ends). The agent itself never calls this.
pub fn attach_baseline(name: &str) -> Result<Ebpf, TapError> {
    let mut bpf = EbpfLoader::new()
        .btf(None)
        .load(OBJECT)
        .map_err(|e| ebpf_err(name, "loading the eBPF object", e))?;
    let p: &mut SchedClassifier = bpf
        .program_mut("baseline")
        .ok_or_else(|| TapError::Ebpf {
            iface: name.to_string(),
            reason: "the object has no program baseline".into(),
        })?
        .try_into()
        .map_err(|e| ebpf_err(name, "baseline", e))?;
    p.load()
        .map_err(|e| ebpf_err(name, "loading program baseline", e))?;
    p.attach_with_options(
        name,
        TcAttachType::Egress,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    )
    .map_err(|e| ebpf_err(name, "attaching baseline (tcx)", e))?;
    Ok(bpf)
}

impl EbpfTap {
    /// Loads the programs, fills the target map and attaches egress and ingress on `name`.
    /// `targets`: each address with its class (< [`CLASSES`]); [`DNS_CLASS`] marks resolvers.
    pub fn open(name: &str, targets: &[(IpAddr, u8)]) -> Result<Self, TapError> {
        let ifindex = ifindex(name).ok_or_else(|| TapError::Gone {
            iface: name.to_string(),
        })?;
        let mut current = Config {
            clock_offset: clock_offset(),
            l2_len: l2_len(name)?,
            n4: 0,
            n6: 0,
            v4: [0; MAX_V4],
            class4: [0; MAX_V4],
            v6: [[0; 16]; MAX_V6],
            class6: [0; MAX_V6],
        };
        for (ip, class) in targets {
            match ip {
                IpAddr::V4(a) if (current.n4 as usize) < MAX_V4 => {
                    current.v4[current.n4 as usize] = u32::from_ne_bytes(a.octets());
                    current.class4[current.n4 as usize] = *class;
                    current.n4 += 1;
                }
                IpAddr::V6(a) if (current.n6 as usize) < MAX_V6 => {
                    current.v6[current.n6 as usize] = a.octets();
                    current.class6[current.n6 as usize] = *class;
                    current.n6 += 1;
                }
                _ => {
                    return Err(TapError::Ebpf {
                        iface: name.to_string(),
                        reason: format!(
                            "too many target addresses (at most {MAX_V4} IPv4 and {MAX_V6} IPv6)"
                        ),
                    })
                }
            }
        }
        // No CO-RE here: packet parsing needs no kernel BTF, so none is parsed.
        let mut bpf = EbpfLoader::new()
            .btf(None)
            .load(OBJECT)
            .map_err(|e| ebpf_err(name, "loading the eBPF tap", e))?;
        let take = |bpf: &mut Ebpf, map: &str| {
            bpf.take_map(map).ok_or_else(|| TapError::Ebpf {
                iface: name.to_string(),
                reason: format!("the object has no map {map}"),
            })
        };
        let mut config: Array<MapData, Config> = Array::try_from(take(&mut bpf, "config")?)
            .map_err(|e| ebpf_err(name, "map config", e))?;
        config
            .set(0, current, 0)
            .map_err(|e| ebpf_err(name, "filling the target map", e))?;
        let steps = PerCpuArray::try_from(take(&mut bpf, "steps")?)
            .map_err(|e| ebpf_err(name, "map steps", e))?;
        let stats = PerCpuArray::try_from(take(&mut bpf, "stats")?)
            .map_err(|e| ebpf_err(name, "map stats", e))?;
        let ring = RingBuf::try_from(take(&mut bpf, "ring")?)
            .map_err(|e| ebpf_err(name, "map ring", e))?;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| ebpf_err(name, "epoll_create", e))?;
        // Edge-triggered: the programs wake the reader only when the ring is a quarter full, so
        // between those wakeups the reader sleeps its whole timeout and reads in batches.
        epoll::add(
            &epoll,
            ring.as_fd(),
            epoll::EventData::new_u64(0),
            epoll::EventFlags::IN | epoll::EventFlags::ET,
        )
        .map_err(|e| ebpf_err(name, "epoll_ctl", e))?;
        for (prog, hook) in [
            ("egress", TcAttachType::Egress),
            ("ingress", TcAttachType::Ingress),
        ] {
            let p: &mut SchedClassifier = bpf
                .program_mut(prog)
                .ok_or_else(|| TapError::Ebpf {
                    iface: name.to_string(),
                    reason: format!("the object has no program {prog}"),
                })?
                .try_into()
                .map_err(|e| ebpf_err(name, prog, e))?;
            p.load()
                .map_err(|e| ebpf_err(name, &format!("loading program {prog}"), e))?;
            p.attach_with_options(name, hook, TcAttachOptions::TcxOrder(LinkOrder::default()))
                .map_err(|e| ebpf_err(name, &format!("attaching {prog} (tcx)"), e))?;
        }
        Ok(EbpfTap {
            name: name.to_string(),
            ifindex,
            _bpf: bpf,
            config,
            current,
            steps,
            stats,
            ring,
            epoll,
            fold: StepFold::new(realtime_ns() / STEP_NS),
            lost_seen: 0,
            checked: Instant::now(),
        })
    }

    /// Once a second: the interface is still the one attached to (tcx links go with it), and
    /// the clock offset still holds (the realtime clock may have been stepped).
    fn check(&mut self) -> Result<(), TapError> {
        if self.checked.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.checked = Instant::now();
        if ifindex(&self.name) != Some(self.ifindex) {
            return Err(TapError::Gone {
                iface: self.name.clone(),
            });
        }
        let offset = clock_offset();
        if offset.abs_diff(self.current.clock_offset) > 100_000 {
            self.current.clock_offset = offset;
            self.config
                .set(0, self.current, 0)
                .map_err(|e| ebpf_err(&self.name, "updating the clock offset", e))?;
        }
        Ok(())
    }

    /// Sums one step over every CPU; counts in a slot already reused for a later step are not
    /// this step's.
    fn read_step(&self, step: u64) -> Result<[u32; CLASSES], TapError> {
        let values = self
            .steps
            .get(&((step % STEPS) as u32), 0)
            .map_err(|e| ebpf_err(&self.name, "reading the step counts", e))?;
        let mut sum = [0u32; CLASSES];
        for v in values.iter().filter(|v| v.step == step) {
            for (s, n) in sum.iter_mut().zip(v.n) {
                *s = s.wrapping_add(n);
            }
        }
        Ok(sum)
    }
}

impl PacketTap for EbpfTap {
    fn next_batch(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(Delivery<'_>),
    ) -> Result<usize, TapError> {
        self.check()?;
        let timeout = rustix::time::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: timeout.subsec_nanos() as i64,
        };
        let mut events = [epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        }];
        match epoll::wait(&self.epoll, &mut events[..], Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(ebpf_err(&self.name, "epoll_wait", e)),
        }
        let mut records = 0;
        while records < MAX_RECORDS {
            let Some(item) = self.ring.next() else { break };
            records += 1;
            if let Some((ts, outgoing, data)) = record(&item) {
                sink(Delivery::Decode { ts, outgoing, data });
            }
        }
        let now = realtime_ns() / STEP_NS;
        let steps = self
            .fold
            .range(now, STEPS)
            .map(|step| Ok((step, self.read_step(step)?)))
            .collect::<Result<Vec<_>, TapError>>()?;
        self.fold.apply(now, &steps, &mut |step, class, n| {
            sink(Delivery::Counted {
                ts: step * STEP_NS,
                class,
                n,
            })
        });
        Ok(usize::from(records > 0))
    }

    fn take_stats(&mut self) -> Result<TapStats, TapError> {
        let lost: u64 = self
            .stats
            .get(&0, 0)
            .map_err(|e| ebpf_err(&self.name, "reading ring-buffer losses", e))?
            .iter()
            .sum();
        let dropped = lost.saturating_sub(self.lost_seen);
        self.lost_seen = lost;
        Ok(TapStats {
            matched: 0,
            dropped,
        })
    }

    fn kind(&self) -> TapKind {
        TapKind::Ebpf
    }
}

/// One ring record: (realtime ns, outgoing, bytes from the IP header on); None if malformed.
fn record(b: &[u8]) -> Option<(u64, bool, &[u8])> {
    let ts = u64::from_ne_bytes(b.get(0..8)?.try_into().ok()?);
    let len = u16::from_ne_bytes(b.get(8..10)?.try_into().ok()?) as usize;
    let outgoing = *b.get(10)? != 0;
    let data = b.get(RECORD_HEADER..RECORD_HEADER + len)?;
    Some((ts, outgoing, data))
}

/// Turns the kernel's per-step counts into deltas: a step may be read while still filling, so
/// what was already handed over for it is remembered until it is closed (two steps later, when
/// no program can still be adding to it).
#[derive(Debug)]
pub struct StepFold {
    /// The first step not yet closed.
    next: u64,
    /// Counts handed over for steps `next..`, oldest first.
    given: std::collections::VecDeque<[u32; CLASSES]>,
}

impl StepFold {
    pub fn new(first: u64) -> Self {
        StepFold {
            next: first,
            given: Default::default(),
        }
    }

    /// The steps to read at step `now`: from the first open one (or the oldest the kernel still
    /// keeps, of `kept`) to `now`.
    pub fn range(&self, now: u64, kept: u64) -> std::ops::RangeInclusive<u64> {
        self.next.max((now + 1).saturating_sub(kept))..=now
    }

    /// Hands over, per step and class, what `read` (each step's sums, as returned for
    /// [`Self::range`]) adds to what was given before, then closes the steps before `now - 1`.
    pub fn apply(
        &mut self,
        now: u64,
        read: &[(u64, [u32; CLASSES])],
        emit: &mut dyn FnMut(u64, u8, u32),
    ) {
        for &(step, sum) in read {
            if step < self.next {
                continue;
            }
            let i = (step - self.next) as usize;
            if i >= self.given.len() {
                self.given.resize(i + 1, [0; CLASSES]);
            }
            for (class, (g, s)) in self.given[i].iter_mut().zip(sum).enumerate() {
                if s > *g {
                    emit(step, class as u8, s - *g);
                    *g = s;
                }
            }
        }
        let close_to = now.saturating_sub(1).max(self.next);
        let closed = ((close_to - self.next) as usize).min(self.given.len());
        self.given.drain(..closed);
        self.next = close_to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(fold: &mut StepFold, now: u64, read: &[(u64, [u32; CLASSES])]) -> Vec<(u64, u8, u32)> {
        let mut out = Vec::new();
        fold.apply(now, read, &mut |s, c, n| out.push((s, c, n)));
        out
    }

    #[test]
    fn a_step_read_while_filling_is_handed_over_once_in_total() {
        let mut f = StepFold::new(100);
        assert_eq!(f.range(101, 512), 100..=101);
        let out = run(&mut f, 101, &[(100, [3, 0, 0, 0]), (101, [1, 2, 0, 0])]);
        assert_eq!(out, vec![(100, 0, 3), (101, 0, 1), (101, 1, 2)]);
        // Step 100 stays open one more step (a program on another CPU may have read the clock
        // just before 101 began); 101 grew.
        assert_eq!(f.range(102, 512), 100..=102);
        let read = [
            (100, [3, 0, 0, 0]),
            (101, [4, 2, 0, 0]),
            (102, [0, 0, 5, 0]),
        ];
        let out = run(&mut f, 102, &read);
        assert_eq!(out, vec![(101, 0, 3), (102, 2, 5)]);
        // Now 100 is closed.
        assert_eq!(f.range(102, 512), 101..=102);
        let out = run(&mut f, 102, &read[1..]);
        assert!(out.is_empty(), "nothing new, nothing handed over: {out:?}");
    }

    #[test]
    fn a_long_pause_reads_only_what_the_kernel_still_keeps() {
        let f = StepFold::new(100);
        assert_eq!(f.range(10_000, 512), 9489..=10_000);
        let mut f = StepFold::new(100);
        let out = run(&mut f, 10_000, &[(9_500, [7, 0, 0, 0])]);
        assert_eq!(out, vec![(9_500, 0, 7)]);
        assert_eq!(f.range(10_001, 512), 9_999..=10_001);
    }

    #[test]
    fn a_verifier_log_becomes_its_last_complaint() {
        let e = "the BPF_PROG_LOAD syscall returned Permission denied (os error 13). Verifier output: 0: (b7) r1 = 0\nR0 tried to add from different maps, paths or scalars, pointer arithmetic with it prohibited for !root\nverification time 636 usec\nstack depth 48\nprocessed 114 insns\n";
        assert_eq!(
            one_line(e),
            "the BPF_PROG_LOAD syscall returned Permission denied (os error 13) verifier: R0 tried to add from different maps, paths or scalars, pointer arithmetic with it prohibited for !root"
        );
        assert_eq!(one_line("plain\nsecond"), "plain");
    }

    #[test]
    fn records_are_parsed_within_their_bounds() {
        let mut b = vec![0u8; 16];
        b[0..8].copy_from_slice(&42u64.to_ne_bytes());
        b[8..10].copy_from_slice(&3u16.to_ne_bytes());
        b[10] = 1;
        assert_eq!(record(&b), None, "the length runs past the record");
        b.extend_from_slice(&[0x45, 0, 0]);
        assert_eq!(record(&b), Some((42, true, &[0x45, 0, 0][..])));
        assert_eq!(record(&b[..9]), None);
    }
}
