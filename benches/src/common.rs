//! What the bench binaries share (each includes this file with `mod common;`): their flags and
//! reading a process's resident set from /proc.

/// A numeric flag's value (`--name N`), or `default`; a bad one ends the bench with exit 64 and
/// one line naming the flag.
pub fn flag(args: &[String], name: &str, default: u64) -> u64 {
    let Some(v) = text_flag(args, name) else {
        return default;
    };
    v.parse().unwrap_or_else(|_| {
        eprintln!(
            "invalid {name} '{v}': a whole number; see the usage at the top of the bench's source (benches/src/)"
        );
        std::process::exit(64)
    })
}

/// A text flag's value (`--name VALUE`).
pub fn text_flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`); 0 when the process is gone.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// This process's resident set in KiB.
pub fn rss_kib() -> u64 {
    status_kib(std::process::id(), "VmRSS:")
}

/// CPU time of `clock` (`libc::CLOCK_THREAD_CPUTIME_ID`, `CLOCK_PROCESS_CPUTIME_ID`) in ns.
pub fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
