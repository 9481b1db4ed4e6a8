//! `/proc/PID/mountstats` of NFS mounts (EFS is NFSv4.1), as the kernel prints it:
//! `show_vfsstat` (fs/proc_namespace.c) writes `device DEV mounted on MP with fstype FS`, and
//! for NFS `nfs_show_stats` (fs/nfs/super.c) appends ` statvers=1.1` and tab-indented lines
//! (`opts:`, `age:`, `caps:`, `sec:`, `events:`, `bytes:`…), then `rpc_clnt_show_stats`
//! (net/sunrpc/stats.c) `RPC iostats version: 1.1  p/v: 100003/4 (nfs)`, `xprt:` and
//! `per-op statistics` followed by one line per procedure:
//! `\t%12s: ops ntrans timeouts bytes_sent bytes_recv queue_ms rtt_ms execute_ms errors`
//! (the ninth number, `om_error_status`, since RPC iostats 1.1 / Linux 5.3; 1.0 prints eight).
//!
//! Pure and bounded: at most [`MAX_MOUNTS`] NFS mounts and [`MAX_OPS`] procedures each, names
//! cut to [`MAX_NAME`] bytes; any line that does not parse is skipped. Never panics.

/// NFS mounts kept from one mountstats text (a pod can have thousands of mounts).
pub const MAX_MOUNTS: usize = 256;
/// Procedures kept per mount (NFSv4.2 has about 70).
pub const MAX_OPS: usize = 96;
/// Longest device or mount point kept, in bytes.
pub const MAX_NAME: usize = 512;

/// One NFS mount's cumulative counters since it was mounted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NfsMount {
    /// `server:/export` as mounted (mountinfo-escaped characters decoded).
    pub device: String,
    pub mount_point: String,
    /// `nfs` or `nfs4`.
    pub fstype: String,
    pub statvers: String,
    /// `vers=` from `opts:` (`3`, `4.1`…), when present.
    pub version: Option<String>,
    /// Seconds since the mount (`age:`).
    pub age_seconds: Option<u64>,
    /// `RPC iostats version` (`1.0`, `1.1`).
    pub rpc_iostats: Option<String>,
    pub ops: Vec<OpCounters>,
    /// Procedures past [`MAX_OPS`], not kept.
    pub ops_omitted: usize,
}

/// One procedure's cumulative RPC counters (`struct rpc_iostats`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpCounters {
    /// `READ`, `GETATTR`, `OPEN`… (NFSv3 and v4 names as the kernel prints them).
    pub op: String,
    pub ops: u64,
    pub transmissions: u64,
    pub timeouts: u64,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub queue_ms: u64,
    /// Sum over requests of the time from transmission to reply.
    pub rtt_ms: u64,
    /// Sum over requests of the time from queueing to completion (what the caller waited).
    pub execute_ms: u64,
    /// Requests that ended in an error status (RPC iostats 1.1; `None` on 1.0).
    pub errors: Option<u64>,
}

/// What one mountstats text holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub mounts: Vec<NfsMount>,
    /// NFS mounts past [`MAX_MOUNTS`], not kept.
    pub mounts_omitted: usize,
}

impl NfsMount {
    /// The server part of the device (`fs-0abc.efs.eu-west-1.amazonaws.com`, `10.0.1.5`,
    /// `[fd00::5]`).
    pub fn server(&self) -> &str {
        match self.device.find(":/") {
            Some(i) => &self.device[..i],
            None => self
                .device
                .rsplit_once(':')
                .map_or(&self.device, |(s, _)| s),
        }
    }

    /// The EFS file system id when the server is EFS's DNS name
    /// (`fs-0123456789abcdef0.efs.REGION.amazonaws.com`; also `AZ.fs-….efs…`, the one-zone
    /// form). A mount through efs-utils' TLS tunnel shows `127.0.0.1` and has none here.
    pub fn efs_filesystem_id(&self) -> Option<&str> {
        efs_id(self.server())
    }
}

/// `fs-<8 or 17 hex>` in an EFS DNS name.
pub fn efs_id(server: &str) -> Option<&str> {
    let labels: Vec<&str> = server.split('.').collect();
    let efs = labels.iter().position(|l| *l == "efs")?;
    let id = labels.get(efs.checked_sub(1)?)?;
    let hex = id.strip_prefix("fs-")?;
    let ok = (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    (ok && matches!(labels.last(), Some(&"com" | &"cn"))).then_some(id)
}

/// Parses a whole mountstats text, keeping NFS mounts only.
pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut cur: Option<NfsMount> = None;
    let mut in_ops = false;
    let flush = |cur: &mut Option<NfsMount>, out: &mut Parsed| {
        if let Some(m) = cur.take() {
            if out.mounts.len() < MAX_MOUNTS {
                out.mounts.push(m);
            } else {
                out.mounts_omitted += 1;
            }
        }
    };
    for line in text.lines() {
        if line.starts_with("device ") || line.starts_with("no device ") {
            flush(&mut cur, &mut out);
            in_ops = false;
            cur = header(line);
            continue;
        }
        let Some(m) = cur.as_mut() else { continue };
        let t = line.trim_start();
        if in_ops {
            if let Some(op) = op_line(t) {
                if m.ops.len() < MAX_OPS {
                    m.ops.push(op);
                } else {
                    m.ops_omitted += 1;
                }
            }
            continue;
        }
        if t == "per-op statistics" {
            in_ops = true;
        } else if let Some(v) = t.strip_prefix("opts:") {
            m.version = v
                .trim()
                .split(',')
                .find_map(|o| o.strip_prefix("vers="))
                .map(|v| cut(v, 16));
        } else if let Some(v) = t.strip_prefix("age:") {
            m.age_seconds = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("RPC iostats version:") {
            m.rpc_iostats = v.split_whitespace().next().map(|v| cut(v, 16));
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// `device DEV mounted on MP with fstype FS statvers=V` → an NFS mount, else `None`.
fn header(line: &str) -> Option<NfsMount> {
    let rest = line.strip_prefix("device ")?;
    let (device, rest) = rest.split_once(" mounted on ")?;
    let (mount_point, rest) = rest.split_once(" with fstype ")?;
    let mut f = rest.split_whitespace();
    let fstype = f.next()?;
    if fstype != "nfs" && fstype != "nfs4" {
        return None;
    }
    let statvers = f.find_map(|x| x.strip_prefix("statvers="))?;
    Some(NfsMount {
        device: cut(&unescape(device), MAX_NAME),
        mount_point: cut(&unescape(mount_point), MAX_NAME),
        fstype: fstype.to_string(),
        statvers: cut(statvers, 16),
        ..NfsMount::default()
    })
}

/// `READ: 1 2 3 4 5 6 7 8 [9]` → counters (8 or 9 numbers, no more, no fewer).
fn op_line(t: &str) -> Option<OpCounters> {
    let (name, nums) = t.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || name.len() > 32 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let mut n = [0u64; 9];
    let mut count = 0;
    for x in nums.split_whitespace() {
        if count == 9 {
            return None;
        }
        n[count] = x.parse().ok()?;
        count += 1;
    }
    if count < 8 {
        return None;
    }
    Some(OpCounters {
        op: name.to_string(),
        ops: n[0],
        transmissions: n[1],
        timeouts: n[2],
        bytes_sent: n[3],
        bytes_recv: n[4],
        queue_ms: n[5],
        rtt_ms: n[6],
        execute_ms: n[7],
        errors: (count == 9).then_some(n[8]),
    })
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The kernel's `mangle`/`seq_path` escape space, tab, newline and backslash as `\ooo`.
pub(super) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = |c: &u8| (b'0'..=b'7').contains(c);
        if b[i] == b'\\' && b.len() >= i + 4 && b[i + 1..i + 4].iter().all(oct) {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(v.min(255) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "mountstats_tests.rs"]
mod tests;
