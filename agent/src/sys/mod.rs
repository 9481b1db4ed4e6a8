//! Everything that talks to the kernel below the standard library: the AF_PACKET ring and the
//! eBPF tap (tcx programs in `tap.bpf.c`, loaded with aya), the
//! `SIOCETHTOOL` ioctl, netlink sock_diag (inet and unix, `unixsock`) with `setns` or the `/proc/<pid>/net` tables without
//! it (`procnet`), the proc root, files inside a pod's root (`podfs`), and kubelet-shaped cgroups
//! (`cgroup`: pod identity, CPU and memory counters, v1 and v2). Small, synchronous,
//! behind seams (`PacketTap`, `sock::Diag`, `ProcRoot`) so the sources above can be tested without it;
//! every `unsafe` block carries a `// SAFETY:` comment.

pub mod cgroup;
pub mod ebpf;
pub mod ethtool;
pub mod netlink;
pub mod packet;
pub mod podfs;
pub mod procfs;
pub mod procnet;
pub mod sock;
pub mod sockdiag;
pub mod unixsock;
