//! Classifies a captured network-layer packet by the link-local service it is sent to.
//!
//! Pure and total: any byte slice gives an answer, never a panic. The kernel filter already
//! selected these packets; this second look keeps the count right if the filter and the
//! target list ever disagree, and gives the service and transport.

use super::{Service, Targets};

/// Transport protocol of a counted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Other,
}

/// What one captured packet is, when it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub service: Service,
    pub transport: Transport,
}

fn transport(proto: u8) -> Transport {
    match proto {
        6 => Transport::Tcp,
        17 => Transport::Udp,
        _ => Transport::Other,
    }
}

/// Classifies a packet that starts at its IP header (AF_PACKET `SOCK_DGRAM` delivery).
pub fn classify(packet: &[u8], targets: &Targets) -> Option<Classified> {
    let version = packet.first()? >> 4;
    match version {
        4 => {
            let dst = packet.get(16..20)?;
            let service = targets.service_v4(dst)?;
            Some(Classified {
                service,
                transport: transport(packet[9]),
            })
        }
        6 => {
            let dst = packet.get(24..40)?;
            let service = targets.service_v6(dst)?;
            Some(Classified {
                service,
                transport: transport(ipv6_upper(packet).map_or(255, |(p, _)| p)),
            })
        }
        _ => None,
    }
}

/// Walks IPv6 extension headers to the upper-layer protocol and its offset.
pub fn ipv6_upper(packet: &[u8]) -> Option<(u8, usize)> {
    let mut next = *packet.get(6)?;
    let mut off = 40usize;
    // Hop-by-hop, routing, destination options: length in 8-octet units after the first 8.
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                next = *packet.get(off)?;
                off += (*packet.get(off + 1)? as usize + 1) * 8;
            }
            44 => {
                // Fragment header: only the first fragment carries the transport header.
                let frag = u16::from_be_bytes([*packet.get(off + 2)?, *packet.get(off + 3)?]);
                if frag & 0xfff8 != 0 {
                    return None;
                }
                next = *packet.get(off)?;
                off += 8;
            }
            p => return Some((p, off)),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(dst: [u8; 4], proto: u8) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 0, 0, 10]);
        p[16..20].copy_from_slice(&dst);
        p
    }

    fn v6(dst: &str, next: u8, ext: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[6] = next;
        let a: std::net::Ipv6Addr = dst.parse().unwrap();
        p[24..40].copy_from_slice(&a.octets());
        p.extend_from_slice(ext);
        p.extend_from_slice(&[0u8; 8]);
        p
    }

    #[test]
    fn ipv4_udp_and_tcp_to_services() {
        let t = Targets::new(&["10.0.0.2".parse().unwrap()]);
        let c = classify(&v4([10, 0, 0, 2], 17), &t).unwrap();
        assert_eq!((c.service, c.transport), (Service::Dns, Transport::Udp));
        let c = classify(&v4([169, 254, 169, 254], 6), &t).unwrap();
        assert_eq!((c.service, c.transport), (Service::Imds, Transport::Tcp));
        assert_eq!(classify(&v4([10, 0, 0, 53], 17), &t), None);
    }

    #[test]
    fn ipv6_with_extension_headers() {
        let t = Targets::new(&[]);
        let c = classify(&v6("fd00:ec2::253", 17, &[]), &t).unwrap();
        assert_eq!((c.service, c.transport), (Service::Dns, Transport::Udp));
        // Hop-by-hop header (8 bytes) then TCP.
        let c = classify(&v6("fd00:ec2::254", 0, &[6, 0, 0, 0, 0, 0, 0, 0]), &t).unwrap();
        assert_eq!((c.service, c.transport), (Service::Imds, Transport::Tcp));
        assert_eq!(classify(&v6("fd00:ec2::1", 17, &[]), &t), None);
    }

    #[test]
    fn short_and_foreign_packets_do_not_count() {
        let t = Targets::new(&[]);
        assert_eq!(classify(&[], &t), None);
        assert_eq!(classify(&[0x45, 0, 0], &t), None);
        assert_eq!(classify(&[0x60; 30], &t), None);
        // ARP-looking bytes.
        assert_eq!(classify(&[0x00, 0x01, 0x08, 0x00, 6, 4], &t), None);
    }

    /// Every IPv4 address that counts, with `--resolver 10.0.0.2`, written out.
    const TABLE_V4: [([u8; 4], Service); 4] = [
        ([169, 254, 169, 253], Service::Dns),
        ([10, 0, 0, 2], Service::Dns),
        ([169, 254, 169, 254], Service::Imds),
        ([169, 254, 169, 123], Service::Ntp),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let t = Targets::new(&["10.0.0.2".parse().unwrap()]);
            let _ = classify(&bytes, &t);
        }

        /// Against a literal table (not `Targets::service_v4`, which `classify` itself calls):
        /// half the cases pick a target, since random addresses almost never hit one.
        #[test]
        fn ipv4_counts_exactly_the_targets(
            pick in any::<bool>(),
            i in 0..TABLE_V4.len(),
            random in any::<[u8; 4]>(),
            proto in any::<u8>(),
        ) {
            let t = Targets::new(&["10.0.0.2".parse().unwrap()]);
            let dst = if pick { TABLE_V4[i].0 } else { random };
            let expected = TABLE_V4.iter().find(|(a, _)| *a == dst).map(|(_, s)| *s);
            prop_assert_eq!(classify(&v4(dst, proto), &t).map(|c| c.service), expected);
        }
    }
}
