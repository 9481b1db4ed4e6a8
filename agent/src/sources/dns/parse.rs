//! Decodes the DNS header and first question of a captured IP packet (UDP, or TCP with its
//! two-byte length prefix; IPv4 and IPv6), and of a reply how long a cache may keep it (the
//! answer section's TTLs, or the SOA minimum of a negative answer), read from the raw bytes
//! without allocating: the question name goes into a reused buffer ([`parse_into`],
//! [`DnsBatch`]), spelled as hickory-proto spells it (the tests hold it to that). Pure and
//! total: never panics, whatever the bytes.

use super::name::read_qname;
use std::net::{IpAddr, Ipv4Addr};

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
    /// The question's class (1 IN); 0 in replies.
    pub qclass: u16,
    /// How long a cache may keep this reply; [`CacheTtl::None`] in queries.
    pub ttl: CacheTtl,
}

impl Default for DnsPacket {
    fn default() -> Self {
        DnsPacket {
            src: Ipv4Addr::UNSPECIFIED.into(),
            dst: Ipv4Addr::UNSPECIFIED.into(),
            sport: 0,
            dport: 0,
            tcp: false,
            id: 0,
            response: false,
            rcode: 0,
            qname: String::new(),
            qtype: 0,
            qclass: 0,
            ttl: CacheTtl::None,
        }
    }
}

/// The DNS messages of one capture batch. A cleared batch keeps its packets, and the name
/// buffer in each, for the next: decoding allocates only while a batch grows past the largest
/// before it (the tap's batches are bounded).
#[derive(Debug, Default)]
pub struct DnsBatch {
    items: Vec<(u64, DnsPacket)>,
    len: usize,
}

impl DnsBatch {
    /// Decodes `packet`, seen at `ts`, into the batch if it is a DNS message and `keep` takes
    /// it; whether it was kept.
    pub fn push(&mut self, ts: u64, packet: &[u8], keep: impl FnOnce(&DnsPacket) -> bool) -> bool {
        if self.len == self.items.len() {
            self.items.push((0, DnsPacket::default()));
        }
        let (at, d) = &mut self.items[self.len];
        if !parse_into(packet, d) || !keep(d) {
            return false;
        }
        *at = ts;
        self.len += 1;
        true
    }

    pub fn as_slice(&self) -> &[(u64, DnsPacket)] {
        &self.items[..self.len]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the batch; a name buffer over 256 bytes (a hostile name: every byte escaped)
    /// is given back rather than kept.
    pub fn clear(&mut self) {
        for (_, d) in &mut self.items[..self.len] {
            if d.qname.capacity() > 256 {
                d.qname = String::new();
            }
        }
        self.len = 0;
    }
}

/// How long a cache in front of the resolver could answer a reply's question from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheTtl {
    /// Not cacheable: a query, SERVFAIL and other errors, a truncated (TC) reply, a negative
    /// answer without an SOA, or a reply whose sections cannot be read.
    #[default]
    None,
    /// NOERROR with answers: the smallest TTL in the answer section (CNAME chain included).
    Positive(u32),
    /// NXDOMAIN, or NOERROR without answers (NODATA): min(SOA TTL, SOA MINIMUM) of the first
    /// SOA in the authority section (RFC 2308).
    Negative(u32),
}

/// Skips an encoded name at `at` (labels, ending with a zero byte or a compression pointer,
/// which is never followed: no loop is possible). The offset after it.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    // A name is at most 255 bytes: at most 128 labels.
    for _ in 0..128 {
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += 1 + len as usize,
            0xc0 => {
                msg.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None, // 0x40/0x80: reserved label types
        }
    }
    None
}

fn be16(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

fn be32(msg: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(msg.get(at..at + 4)?.try_into().ok()?))
}

/// RFC 2181 §8: a TTL with the top bit set is read as 0.
fn ttl(v: u32) -> u32 {
    if v > i32::MAX as u32 {
        0
    } else {
        v
    }
}

/// The cache lifetime of a reply message (`msg` starts at the DNS header). Records cut off by
/// the capture's snap length: the answer TTLs that were read count; a negative answer whose SOA
/// was cut off is not cacheable.
pub fn cache_ttl(msg: &[u8]) -> CacheTtl {
    cache_ttl_opt(msg).unwrap_or(CacheTtl::None)
}

fn cache_ttl_opt(msg: &[u8]) -> Option<CacheTtl> {
    let flags = be16(msg, 2)?;
    if flags & 0x8000 == 0 || flags & 0x0200 != 0 {
        return None; // a query, or truncated (the client asks again over TCP)
    }
    let rcode = flags & 0x000f;
    let (qd, an, ns) = (be16(msg, 4)?, be16(msg, 6)?, be16(msg, 8)?);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    // One record: (type, TTL, RDATA start, RDATA length), and the offset after it.
    let record = |at: usize| -> Option<(u16, u32, usize, usize, usize)> {
        let at = skip_name(msg, at)?;
        let rtype = be16(msg, at)?;
        let t = ttl(be32(msg, at + 4)?);
        let len = be16(msg, at + 8)? as usize;
        let data = at + 10;
        msg.get(data..data + len)?;
        Some((rtype, t, data, len, data + len))
    };
    match rcode {
        0 if an > 0 => {
            let mut min: Option<u32> = None;
            for _ in 0..an {
                let Some((_, t, _, _, next)) = record(at) else {
                    break; // cut off: the records read so far
                };
                min = Some(min.map_or(t, |m| m.min(t)));
                at = next;
            }
            min.map(CacheTtl::Positive)
        }
        0 | 3 => {
            for _ in 0..an {
                at = record(at)?.4;
            }
            for _ in 0..ns {
                let (rtype, t, data, len, next) = record(at)?;
                if rtype == 6 && len >= 20 {
                    // SOA RDATA ends with SERIAL REFRESH RETRY EXPIRE MINIMUM.
                    return Some(CacheTtl::Negative(t.min(ttl(be32(msg, data + len - 4)?))));
                }
                at = next;
            }
            None
        }
        _ => None,
    }
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
    let mut d = DnsPacket::default();
    parse_into(packet, &mut d).then_some(d)
}

/// [`parse`] into `out`, reusing its name's buffer: the capture thread's way, with no
/// allocation per message. False when `packet` is not one (`out` is then unspecified).
pub fn parse_into(packet: &[u8], out: &mut DnsPacket) -> bool {
    parse_opt(packet, out).is_some()
}

fn parse_opt(packet: &[u8], out: &mut DnsPacket) -> Option<()> {
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
    // The header: ID, flags (QR, opcode, …, RCODE in the low 4 bits), QDCOUNT, then three
    // counts the question does not need.
    msg.get(..12)?;
    let (id, flags, qdcount) = (be16(msg, 0)?, be16(msg, 2)?, be16(msg, 4)?);
    if qdcount == 0 {
        return None;
    }
    out.response = flags & 0x8000 != 0;
    // A reply is matched by its id and addresses; only queries need the name decoded.
    if out.response {
        out.qname.clear();
        (out.qtype, out.qclass, out.ttl) = (0, 0, cache_ttl(msg));
    } else {
        let at = read_qname(msg, 12, &mut out.qname)?;
        (out.qtype, out.qclass) = (be16(msg, at)?, be16(msg, at + 2)?);
        out.ttl = CacheTtl::None;
    }
    out.src = l4.src;
    out.dst = l4.dst;
    out.sport = sport;
    out.dport = dport;
    out.tcp = tcp;
    out.id = id;
    out.rcode = flags & 0x000f;
    Some(())
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
    use crate::sources::dns::name::tests::arb_atom;
    use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};
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

    /// A reply to `qname` with `answers` (name, TTL: A records) and `soa` (TTL, MINIMUM) in the
    /// authority section.
    pub fn reply(
        id: u16,
        qname: &str,
        rcode: ResponseCode,
        answers: &[(&str, u32)],
        soa: Option<(u32, u32)>,
    ) -> Vec<u8> {
        use hickory_proto::rr::rdata::{A, CNAME, SOA};
        use hickory_proto::rr::{RData, Record};
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_response_code(rcode);
        let name = Name::from_ascii(qname).unwrap();
        m.add_query(Query::query(name.clone(), RecordType::A));
        for (k, (n, t)) in answers.iter().enumerate() {
            let owner = Name::from_ascii(n).unwrap();
            // The first of several is a CNAME to the next: a chain.
            let data = if k + 1 < answers.len() {
                RData::CNAME(CNAME(Name::from_ascii(answers[k + 1].0).unwrap()))
            } else {
                RData::A(A::new(10, 1, 0, k as u8))
            };
            m.add_answer(Record::from_rdata(owner, *t, data));
        }
        if let Some((t, min)) = soa {
            let zone = Name::from_ascii("example.internal.").unwrap();
            let soa = SOA::new(
                Name::from_ascii("ns.example.internal.").unwrap(),
                Name::from_ascii("host.example.internal.").unwrap(),
                1,
                3600,
                600,
                86400,
                min,
            );
            m.add_name_server(Record::from_rdata(zone, t, RData::SOA(soa)));
        }
        m.to_bytes().unwrap()
    }

    #[test]
    fn reply_ttls() {
        use CacheTtl::{Negative, Positive};
        let r =
            |rc, a: &[(&str, u32)], soa| cache_ttl(&reply(1, "a.example.internal.", rc, a, soa));
        let ok = ResponseCode::NoError;
        assert_eq!(r(ok, &[("a.example.internal.", 60)], None), Positive(60));
        // A CNAME chain: the smallest TTL of the answer section.
        let chain = [("a.example.internal.", 300), ("b.example.internal.", 7)];
        assert_eq!(r(ok, &chain, Some((900, 900))), Positive(7));
        // NODATA and NXDOMAIN: min(SOA TTL, SOA MINIMUM); without an SOA, not cacheable.
        assert_eq!(r(ok, &[], Some((3600, 5))), Negative(5));
        assert_eq!(
            r(ResponseCode::NXDomain, &[], Some((30, 600))),
            Negative(30)
        );
        assert_eq!(r(ResponseCode::NXDomain, &[], None), CacheTtl::None);
        assert_eq!(
            r(ResponseCode::ServFail, &[("a.example.internal.", 60)], None),
            CacheTtl::None
        );
        // A TTL with the top bit set reads as 0 (RFC 2181).
        assert_eq!(
            r(ok, &[("a.example.internal.", 0x8000_0001)], None),
            Positive(0)
        );
        // Truncated (TC): the client asks again over TCP; a query is not an answer.
        let mut tc = reply(
            1,
            "a.example.internal.",
            ok,
            &[("a.example.internal.", 60)],
            None,
        );
        tc[2] |= 0x02;
        assert_eq!(cache_ttl(&tc), CacheTtl::None);
        assert_eq!(cache_ttl(&dns_message(1, "a", false, ok)), CacheTtl::None);
        // Cut by the snap length inside the second answer: the first one's TTL.
        let long = reply(1, "a.example.internal.", ok, &chain, None);
        assert_eq!(cache_ttl(&long[..long.len() - 3]), Positive(300));
        // Through parse: the reply carries it, the query its class.
        let p = parse(&udp4([10, 0, 0, 2], 53, [10, 0, 0, 10], 4000, &long)).unwrap();
        assert_eq!((p.ttl, p.qclass), (Positive(7), 0));
        let q = dns_message(7, "a.b", false, ok);
        let p = parse(&udp4([10, 0, 0, 10], 4000, [10, 0, 0, 2], 53, &q)).unwrap();
        assert_eq!((p.ttl, p.qclass), (CacheTtl::None, 1));
    }

    #[test]
    fn compression_loops_end() {
        // A reply whose answer owner is a pointer to itself, and one whose label chain points
        // back into the question: names are skipped, never followed, so both end at once.
        let mut m = dns_message(1, "a.b", true, ResponseCode::NoError);
        m[7] = 1; // ANCOUNT 1
        let at = m.len() as u8;
        m.extend_from_slice(&[0xc0, at, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4]);
        assert_eq!(cache_ttl(&m), CacheTtl::Positive(9));
        let mut m = dns_message(1, "a.b", true, ResponseCode::NoError);
        m[7] = 1;
        m.extend_from_slice(&[1, b'x', 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4]);
        assert_eq!(cache_ttl(&m), CacheTtl::Positive(9));
        // A reserved label type (0x40) is refused.
        let mut m = dns_message(1, "a.b", true, ResponseCode::NoError);
        m[7] = 1;
        m.extend_from_slice(&[0x41, 0, 1, 0, 1, 0, 0, 0, 9, 0, 0]);
        assert_eq!(cache_ttl(&m), CacheTtl::None);
    }

    /// One resource record made of arbitrary parts: a name (labels and pointers anywhere), a
    /// type (A, CNAME, SOA or anything), a TTL and an RDATA whose length may lie.
    fn arb_record() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(any::<u8>(), 0..12),
            prop_oneof![Just(1u16), Just(5), Just(6), any::<u16>()],
            any::<u32>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(name, rtype, ttl, len, data)| {
                let mut r = name;
                r.push(0);
                r.extend_from_slice(&rtype.to_be_bytes());
                r.extend_from_slice(&1u16.to_be_bytes());
                r.extend_from_slice(&ttl.to_be_bytes());
                // Mostly the true length, sometimes any.
                let len = if len % 4 == 0 { len } else { data.len() as u16 };
                r.extend_from_slice(&len.to_be_bytes());
                r.extend_from_slice(&data);
                r
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
        ))]
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse(&bytes);
            let _ = parse(&udp4([1; 4], 53, [2; 4], 1000, &bytes));
            let _ = cache_ttl(&bytes);
        }

        /// A reply header (any RCODE and counts) and a valid question, then answer and
        /// authority records of arbitrary bytes (pointers, loops, lying lengths), cut anywhere.
        #[test]
        fn reply_sections_never_panic(
            rcode in 0u8..16,
            counts in (any::<u16>(), any::<u16>(), any::<u16>()),
            records in proptest::collection::vec(arb_record(), 0..6),
            junk in proptest::collection::vec(any::<u8>(), 0..16),
            cut in any::<usize>(),
        ) {
            let mut m = dns_message(3, "a.example.internal", true, ResponseCode::NoError);
            m[3] = (m[3] & 0xf0) | rcode;
            m[6..8].copy_from_slice(&counts.0.to_be_bytes());
            m[8..10].copy_from_slice(&counts.1.to_be_bytes());
            m[10..12].copy_from_slice(&counts.2.to_be_bytes());
            for r in &records {
                m.extend_from_slice(r);
            }
            m.extend_from_slice(&junk);
            let m = &m[..cut % (m.len() + 1)];
            let _ = cache_ttl(m);
            let _ = parse(&udp4([1; 4], 53, [2; 4], 1000, m));
        }
    }

    /// `parse` as it was when hickory-proto decoded the header and question: the reference
    /// the reader of names is held to.
    fn hickory_parse(packet: &[u8]) -> Option<DnsPacket> {
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
        let (qname, qtype, qclass, ttl) = if response {
            (String::new(), 0, 0, cache_ttl(msg))
        } else {
            let q = Query::read(&mut d).ok()?;
            let mut qname = q.name().to_ascii().to_ascii_lowercase();
            if qname.len() > 1 && qname.ends_with('.') {
                qname.pop();
            }
            (
                qname,
                u16::from(q.query_type()),
                u16::from(q.query_class()),
                CacheTtl::None,
            )
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
            qclass,
            ttl,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
        ))]
        /// Whole packets, queries and replies, any header flags and counts, a question made of
        /// name pieces (pointers back into the header), then type and class, cut anywhere:
        /// `parse` gives what the hickory-proto decoding gave, field for field.
        #[test]
        fn parse_agrees_with_hickory(
            header in proptest::array::uniform12(any::<u8>()),
            qd in prop_oneof![Just(0u16), Just(1), any::<u16>()],
            atoms in proptest::collection::vec(arb_atom(), 0..8),
            tail in proptest::collection::vec(any::<u8>(), 0..6),
            cut in any::<proptest::sample::Index>(),
            to_server in any::<bool>(),
        ) {
            let mut msg = header.to_vec();
            msg[4..6].copy_from_slice(&qd.to_be_bytes());
            msg.extend(atoms.concat());
            msg.extend(tail);
            let keep = msg.len() - cut.index(msg.len().min(8) + 1);
            msg.truncate(keep);
            let p = if to_server {
                udp4([10, 0, 0, 10], 40000, [10, 0, 0, 2], 53, &msg)
            } else {
                udp4([10, 0, 0, 2], 53, [10, 0, 0, 10], 40000, &msg)
            };
            prop_assert_eq!(parse(&p), hickory_parse(&p));
        }
    }

    #[test]
    fn parse_into_reuses_the_packet() {
        let mut d = DnsPacket::default();
        let long = dns_message(
            1,
            "a-rather-long-name.example.internal",
            false,
            ResponseCode::NoError,
        );
        assert!(parse_into(&udp4([1; 4], 4000, [2; 4], 53, &long), &mut d));
        let cap = d.qname.capacity();
        let short = dns_message(2, "b.example", false, ResponseCode::NoError);
        assert!(parse_into(&udp4([1; 4], 4000, [2; 4], 53, &short), &mut d));
        assert_eq!((d.id, d.qname.as_str()), (2, "b.example"));
        assert_eq!(d.qname.capacity(), cap);
        // A reply leaves the name empty; what is not DNS is refused.
        let r = dns_message(2, "b.example", true, ResponseCode::NoError);
        assert!(parse_into(&udp4([2; 4], 53, [1; 4], 4000, &r), &mut d));
        assert_eq!((d.response, d.qname.as_str()), (true, ""));
        assert!(!parse_into(&udp4([2; 4], 80, [1; 4], 4000, &r), &mut d));
        // A batch keeps what its filter accepts, and its packets across clears.
        let mut b = DnsBatch::default();
        let q = udp4([1; 4], 4000, [2; 4], 53, &long);
        assert!(b.push(5, &q, |d| !d.response));
        assert!(!b.push(6, &udp4([2; 4], 53, [1; 4], 4000, &r), |d| !d.response));
        assert!(!b.push(7, &q[..30], |_| true));
        assert_eq!(b.as_slice().len(), 1);
        assert_eq!((b.as_slice()[0].0, b.as_slice()[0].1.id), (5, 1));
        b.clear();
        assert!(b.is_empty());
        assert!(b.push(8, &q, |_| true));
        assert_eq!(b.as_slice()[0].1.qname.capacity(), cap);
        // A name of four 63-byte labels of 0xff bytes: 1 011 bytes escaped, not kept.
        let mut m = vec![0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for n in [63, 63, 63, 61] {
            m.push(n);
            m.extend(std::iter::repeat_n(0xff, n as usize));
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(b.push(9, &udp4([1; 4], 4000, [2; 4], 53, &m), |_| true));
        assert_eq!(b.as_slice()[1].1.qname.len(), 250 * 4 + 3);
        b.clear();
        assert!(b.items.iter().all(|(_, d)| d.qname.capacity() <= 256));
    }
}
