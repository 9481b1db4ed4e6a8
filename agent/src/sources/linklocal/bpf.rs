//! Classic BPF program that selects, in the kernel, the packets the agent must count.
//!
//! Runs on an AF_PACKET `SOCK_DGRAM` socket, so offsets start at the IP header. It accepts
//! outgoing IPv4/IPv6 packets whose destination is one of the targets (those are counted), and
//! incoming packets from a resolver (replies, to match queries). DNS packets are kept up to
//! `dns_snaplen` bytes for decoding, the rest truncated to `snaplen`; everything else never
//! reaches user space.

use crate::sources::linklocal::{Service, Targets};

pub use crate::sys::packet::{FilterError, Insn};

const LD_W_ABS: u16 = 0x20;
const LD_B_ABS: u16 = 0x30;
const ALU_AND_K: u16 = 0x54;
const JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;
/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: the ancillary load of skb->pkt_type.
pub const LOAD_PKTTYPE: u32 = (-0x1000i32 + 4) as u32;
/// `PACKET_OUTGOING`.
pub const PACKET_OUTGOING: u32 = 4;

#[derive(Clone, Copy)]
enum To {
    Next,
    Accept,
    AcceptDns,
    Reject,
    Label(usize),
}

fn accept(service: Service) -> To {
    if service == Service::Dns {
        To::AcceptDns
    } else {
        To::Accept
    }
}

struct Builder {
    insns: Vec<(u16, To, To, u32)>,
    labels: Vec<usize>,
}

impl Builder {
    fn push(&mut self, code: u16, jt: To, jf: To, k: u32) {
        self.insns.push((code, jt, jf, k));
    }
    fn label(&mut self) -> usize {
        self.labels.push(usize::MAX);
        self.labels.len() - 1
    }
    fn place(&mut self, l: usize) {
        self.labels[l] = self.insns.len();
    }
}

/// Builds the program: outgoing packets to any target, incoming packets from a resolver.
pub fn program(
    targets: &Targets,
    snaplen: u32,
    dns_snaplen: u32,
) -> Result<Vec<Insn>, FilterError> {
    let mut b = Builder {
        insns: Vec::new(),
        labels: Vec::new(),
    };
    let (incoming, out6, in6) = (b.label(), b.label(), b.label());
    b.push(LD_W_ABS, To::Next, To::Next, LOAD_PKTTYPE);
    b.push(JEQ_K, To::Next, To::Label(incoming), PACKET_OUTGOING);
    // Outgoing: match the destination (IPv4 offset 16, IPv6 offset 24) against every target.
    b.push(LD_B_ABS, To::Next, To::Next, 0);
    b.push(ALU_AND_K, To::Next, To::Next, 0xf0);
    b.push(JEQ_K, To::Next, To::Label(out6), 0x40);
    b.push(LD_W_ABS, To::Next, To::Next, 16);
    for (a, s) in targets.v4_services() {
        b.push(JEQ_K, accept(s), To::Next, u32::from_be_bytes(a));
    }
    b.push(RET_K, To::Next, To::Next, 0);
    b.place(out6);
    b.push(JEQ_K, To::Next, To::Reject, 0x60);
    let v6: Vec<_> = targets.v6_services().collect();
    v6_matches(&mut b, 24, &v6);
    b.push(RET_K, To::Next, To::Next, 0);
    // Incoming: match the source (IPv4 offset 12, IPv6 offset 8) against the resolvers only.
    b.place(incoming);
    b.push(LD_B_ABS, To::Next, To::Next, 0);
    b.push(ALU_AND_K, To::Next, To::Next, 0xf0);
    b.push(JEQ_K, To::Next, To::Label(in6), 0x40);
    b.push(LD_W_ABS, To::Next, To::Next, 12);
    for (a, s) in targets.v4_services().filter(|(_, s)| *s == Service::Dns) {
        b.push(JEQ_K, accept(s), To::Next, u32::from_be_bytes(a));
    }
    b.push(RET_K, To::Next, To::Next, 0);
    b.place(in6);
    b.push(JEQ_K, To::Next, To::Reject, 0x60);
    let dns6: Vec<_> = v6.into_iter().filter(|(_, s)| *s == Service::Dns).collect();
    v6_matches(&mut b, 8, &dns6);
    let reject = b.insns.len();
    b.push(RET_K, To::Next, To::Next, 0);
    let accept_other = b.insns.len();
    b.push(RET_K, To::Next, To::Next, snaplen);
    let accept_dns = b.insns.len();
    b.push(RET_K, To::Next, To::Next, dns_snaplen);

    if b.insns.len() > 4096 {
        return Err(FilterError::TooLong(b.insns.len()));
    }
    let labels = b.labels;
    let resolve = |pc: usize, to: To| -> Result<u8, FilterError> {
        let target = match to {
            To::Next => return Ok(0),
            To::Accept => accept_other,
            To::AcceptDns => accept_dns,
            To::Reject => reject,
            To::Label(l) => labels[l],
        };
        u8::try_from(target - pc - 1).map_err(|_| FilterError::JumpTooFar)
    };
    b.insns
        .iter()
        .enumerate()
        .map(|(pc, &(code, jt, jf, k))| {
            Ok(Insn {
                code,
                jt: resolve(pc, jt)?,
                jf: resolve(pc, jf)?,
                k,
            })
        })
        .collect()
}

/// Compares the 16-byte address at `offset` with each address, word by word.
fn v6_matches(b: &mut Builder, offset: u32, addrs: &[([u8; 16], Service)]) {
    for (a, s) in addrs {
        let next = b.label();
        for w in 0..4 {
            let word = u32::from_be_bytes([a[w * 4], a[w * 4 + 1], a[w * 4 + 2], a[w * 4 + 3]]);
            b.push(LD_W_ABS, To::Next, To::Next, offset + 4 * w as u32);
            let jt = if w == 3 { accept(*s) } else { To::Next };
            b.push(JEQ_K, jt, To::Label(next), word);
        }
        b.place(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::linklocal::classify::classify;
    use proptest::prelude::*;

    /// Runs the subset of classic BPF that `program` emits, as the kernel would:
    /// an out-of-bounds load ends the program with 0.
    fn run(prog: &[Insn], pkt: &[u8], pkttype: u32) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS if i.k == LOAD_PKTTYPE => a = pkttype,
                LD_W_ABS => match pkt.get(i.k as usize..i.k as usize + 4) {
                    Some(w) => a = u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                    None => return 0,
                },
                LD_B_ABS => match pkt.get(i.k as usize) {
                    Some(&v) => a = v as u32,
                    None => return 0,
                },
                ALU_AND_K => a &= i.k,
                JEQ_K => pc += if a == i.k { i.jt } else { i.jf } as usize,
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn targets() -> Targets {
        Targets::new(&["10.0.0.2".parse().unwrap(), "fd00:10::2".parse().unwrap()])
    }

    fn packet(v6: bool, dst: &[u8], len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len.max(if v6 { 40 } else { 20 })];
        if v6 {
            p[0] = 0x60;
            p[24..40].copy_from_slice(dst);
        } else {
            p[0] = 0x45;
            p[16..20].copy_from_slice(dst);
        }
        p
    }

    /// A packet with `src` as its source address (for incoming replies).
    fn from(v6: bool, src: &[u8], len: usize) -> Vec<u8> {
        let mut p = packet(v6, &[0u8; 16][..if v6 { 16 } else { 4 }], len);
        if v6 {
            p[8..24].copy_from_slice(src);
        } else {
            p[12..16].copy_from_slice(src);
        }
        p
    }

    #[test]
    fn accepts_targets_rejects_others_and_keeps_dns_longer() {
        let t = targets();
        let prog = program(&t, 96, 512).unwrap();
        for (a, s) in t.v4_services() {
            let want = if s == Service::Dns { 512 } else { 96 };
            assert_eq!(run(&prog, &packet(false, &a, 28), PACKET_OUTGOING), want);
            // Incoming: only replies from resolvers, never packets *to* a target.
            assert_eq!(run(&prog, &packet(false, &a, 28), 0), 0, "incoming to");
            let from_want = if s == Service::Dns { 512 } else { 0 };
            assert_eq!(
                run(&prog, &from(false, &a, 28), 0),
                from_want,
                "incoming from"
            );
        }
        for (a, s) in t.v6_services() {
            let want = if s == Service::Dns { 512 } else { 96 };
            assert_eq!(run(&prog, &packet(true, &a, 48), PACKET_OUTGOING), want);
            let from_want = if s == Service::Dns { 512 } else { 0 };
            assert_eq!(
                run(&prog, &from(true, &a, 48), 0),
                from_want,
                "incoming from"
            );
        }
        assert_eq!(run(&prog, &packet(false, &[10, 0, 0, 53], 28), 4), 0);
        let mut near = t.v6().next().unwrap();
        near[15] ^= 1;
        assert_eq!(run(&prog, &packet(true, &near, 48), 4), 0);
        assert_eq!(run(&prog, &[0x45, 0, 0], 4), 0, "truncated");
    }

    #[test]
    fn too_many_targets_is_an_error_not_a_wrong_program() {
        let many: Vec<std::net::IpAddr> = (0..40u16)
            .map(|i| std::net::Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, i).into())
            .collect();
        assert_eq!(
            program(&Targets::new(&many), 96, 512),
            Err(FilterError::JumpTooFar)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]
        /// The kernel filter and the user-space classifier agree on every packet.
        #[test]
        fn filter_agrees_with_classifier(
            v6 in any::<bool>(),
            pick in 0usize..8,
            random_dst in any::<[u8; 16]>(),
            len in 0usize..80,
        ) {
            let t = targets();
            let prog = program(&t, 128, 512).unwrap();
            let dst: Vec<u8> = if v6 {
                t.v6().nth(pick).map(|a| a.to_vec()).unwrap_or(random_dst.to_vec())
            } else {
                t.v4().nth(pick).map(|a| a.to_vec()).unwrap_or(random_dst[..4].to_vec())
            };
            let mut p = packet(v6, &dst, 80);
            p.truncate(len);
            let accepted = run(&prog, &p, PACKET_OUTGOING) > 0;
            prop_assert_eq!(accepted, classify(&p, &t).is_some());
        }
    }
}
