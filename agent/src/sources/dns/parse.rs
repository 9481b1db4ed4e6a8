//! Decodes the DNS header and first question of a captured IP packet (UDP, or TCP with its
//! two-byte length prefix; IPv4 and IPv6). Pure and total: never panics, whatever the bytes.

use hickory_proto::op::{Header, MessageType, Query};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::net::IpAddr;

/// The parts of one DNS message the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub tcp: bool,
    pub id: u16,
    pub response: bool,
    /// Header RCODE (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED, …).
    pub rcode: u16,
    /// Lower case, without the trailing dot; empty in replies (not needed to match them).
    pub qname: String,
    pub qtype: u16,
}

/// Network and transport headers of a packet that starts at its IP header.
struct L4<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload: &'a [u8],
}

fn ip(packet: &[u8]) -> Option<L4<'_>> {
    match packet.first()? >> 4 {
        4 => {
            let ihl = (packet[0] & 0x0f) as usize * 4;
            let frag = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x1fff;
            if ihl < 20 || frag != 0 {
                return None; // a later fragment has no transport header
            }
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(L4 {
                src: src.into(),
                dst: dst.into(),
                proto: packet[9],
                payload: packet.get(ihl..)?,
            })
        }
        6 => {
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            let (proto, off) = crate::sources::linklocal::classify::ipv6_upper(packet)?;
            Some(L4 {
                src: src.into(),
                dst: dst.into(),
                proto,
                payload: packet.get(off..)?,
            })
        }
        _ => None,
    }
}

/// Parses a DNS message carried on port 53 (either side) in `packet`.
pub fn parse(packet: &[u8]) -> Option<DnsPacket> {
    let l4 = ip(packet)?;
    let p = l4.payload;
    let sport = u16::from_be_bytes([*p.first()?, *p.get(1)?]);
    let dport = u16::from_be_bytes([*p.get(2)?, *p.get(3)?]);
    if sport != 53 && dport != 53 {
        return None;
    }
    let (tcp, msg) = match l4.proto {
        17 => (false, p.get(8..)?),
        6 => {
            let off = (*p.get(12)? >> 4) as usize * 4;
            // The first segment of a message: two-byte length, then the message.
            (true, p.get(off.max(20) + 2..)?)
        }
        _ => return None,
    };
    let mut d = BinDecoder::new(msg);
    let header = Header::read(&mut d).ok()?;
    if header.query_count() == 0 {
        return None;
    }
    let response = header.message_type() == MessageType::Response;
    // A reply is matched by its id and addresses; only queries need the name decoded.
    let (qname, qtype) = if response {
        (String::new(), 0)
    } else {
        let q = Query::read(&mut d).ok()?;
        let mut qname = q.name().to_ascii().to_ascii_lowercase();
        if qname.len() > 1 && qname.ends_with('.') {
            qname.pop();
        }
        (qname, u16::from(q.query_type()))
    };
    Some(DnsPacket {
        src: l4.src,
        dst: l4.dst,
        sport,
        dport,
        tcp,
        id: header.id(),
        response,
        rcode: u16::from(header.response_code()),
        qname,
        qtype,
    })
}

/// Name of an RCODE as dig prints it.
pub fn rcode_name(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    use hickory_proto::serialize::binary::BinEncodable;
    use proptest::prelude::*;

    pub fn dns_message(id: u16, qname: &str, response: bool, rcode: ResponseCode) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(if response {
                MessageType::Response
            } else {
                MessageType::Query
            })
            .set_op_code(OpCode::Query)
            .set_response_code(rcode);
        m.add_query(Query::query(
            Name::from_ascii(qname).unwrap(),
            RecordType::AAAA,
        ));
        m.to_bytes().unwrap()
    }

    /// An IPv4/UDP packet carrying `msg` from src:sport to dst:dport.
    pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, msg: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = 17;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(msg);
        p
    }

    #[test]
    fn udp_query_and_reply() {
        let q = dns_message(7, "Svc1.Example.Internal.", false, ResponseCode::NoError);
        let p = parse(&udp4([10, 0, 0, 10], 40000, [10, 0, 0, 2], 53, &q)).unwrap();
        assert_eq!(p.qname, "svc1.example.internal");
        assert_eq!((p.id, p.response, p.qtype, p.tcp), (7, false, 28, false));
        let r = dns_message(7, "x.cluster.local", true, ResponseCode::NXDomain);
        let p = parse(&udp4([10, 0, 0, 2], 53, [10, 0, 0, 10], 40000, &r)).unwrap();
        assert!(p.response);
        assert_eq!((p.id, p.qname.as_str()), (7, ""));
        assert_eq!(rcode_name(p.rcode), "NXDOMAIN");
    }

    #[test]
    fn tcp_with_length_prefix_and_ipv6() {
        let q = dns_message(9, "a.b", false, ResponseCode::NoError);
        let mut p = vec![0u8; 40 + 20];
        p[0] = 0x60;
        p[6] = 6;
        p[8..24].copy_from_slice(&"fd00::10".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(
            &"fd00:ec2::253"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        p[40..42].copy_from_slice(&5353u16.to_be_bytes());
        p[42..44].copy_from_slice(&53u16.to_be_bytes());
        p[52] = 5 << 4;
        p.extend_from_slice(&(q.len() as u16).to_be_bytes());
        p.extend_from_slice(&q);
        let d = parse(&p).unwrap();
        assert!(d.tcp);
        assert_eq!((d.id, d.qname.as_str()), (9, "a.b"));
        // A bare ACK (no payload) is not a message.
        assert_eq!(parse(&p[..60]), None);
    }

    #[test]
    fn not_dns() {
        let q = dns_message(1, "a", false, ResponseCode::NoError);
        assert_eq!(parse(&udp4([1; 4], 1000, [2; 4], 80, &q)), None);
        assert_eq!(parse(&udp4([1; 4], 1000, [2; 4], 53, &q[..5])), None);
        // A compression pointer that points at itself: rejected, no loop.
        let mut bad = q.clone();
        bad.truncate(12);
        bad.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&udp4([1; 4], 1000, [2; 4], 53, &bad)), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
        ))]
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse(&bytes);
            let _ = parse(&udp4([1; 4], 53, [2; 4], 1000, &bytes));
        }
    }
}
