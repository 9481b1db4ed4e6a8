//! Everything that talks to the kernel below the standard library: the AF_PACKET ring, the
//! `SIOCETHTOOL` ioctl, netlink sock_diag with `setns`, and the proc root. Small, synchronous,
//! behind seams (`PacketTap`, `Diag`, `ProcRoot`) so the sources above can be tested without it;
//! every `unsafe` block carries a `// SAFETY:` comment.

pub mod ethtool;
pub mod packet;
pub mod procfs;
pub mod sockdiag;
