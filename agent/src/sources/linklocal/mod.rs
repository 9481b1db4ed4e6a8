//! EC2 link-local services and the per-interface allowance they share.
//!
//! Every network interface may send at most [`LIMIT_PPS`] packets per second to the
//! services behind these addresses, all together; the excess is dropped silently.

pub mod bpf;
pub mod capture;
pub mod classify;
pub mod meter;
pub mod series;
pub mod source;

use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Packets per second one interface may send to link-local services (fixed by EC2).
pub const LIMIT_PPS: u32 = 1024;

/// A link-local service, by what sits behind the destination address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Route 53 Resolver: VPC base + 2, 169.254.169.253, fd00:ec2::253.
    Dns,
    /// Instance Metadata Service: 169.254.169.254, fd00:ec2::254.
    Imds,
    /// Amazon Time Sync: 169.254.169.123, fd00:ec2::123.
    Ntp,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Dns, Service::Imds, Service::Ntp];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Dns => "dns",
            Service::Imds => "imds",
            Service::Ntp => "ntp",
        }
    }
}

/// The resolver addresses that are always link-local services, whatever the VPC.
pub const FIXED_RESOLVERS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 253)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x253)),
];

const IMDS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

const NTP: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 123)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x123)),
];

/// Destination addresses that count toward the allowance, each with its service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    v4: Vec<([u8; 4], Service)>,
    v6: Vec<([u8; 16], Service)>,
}

impl Targets {
    /// The fixed link-local services plus the given resolvers (e.g. the VPC's base + 2).
    pub fn new(resolvers: &[IpAddr]) -> Self {
        let mut t = Targets {
            v4: Vec::new(),
            v6: Vec::new(),
        };
        for ip in FIXED_RESOLVERS.iter().chain(resolvers) {
            t.add(*ip, Service::Dns);
        }
        for ip in IMDS {
            t.add(ip, Service::Imds);
        }
        for ip in NTP {
            t.add(ip, Service::Ntp);
        }
        t
    }

    fn add(&mut self, ip: IpAddr, service: Service) {
        match ip {
            IpAddr::V4(a) if !self.v4.iter().any(|(x, _)| *x == a.octets()) => {
                self.v4.push((a.octets(), service))
            }
            IpAddr::V6(a) if !self.v6.iter().any(|(x, _)| *x == a.octets()) => {
                self.v6.push((a.octets(), service))
            }
            _ => {}
        }
    }

    /// IPv4 targets with their service.
    pub fn v4_services(&self) -> impl Iterator<Item = ([u8; 4], Service)> + '_ {
        self.v4.iter().copied()
    }

    /// IPv6 targets with their service.
    pub fn v6_services(&self) -> impl Iterator<Item = ([u8; 16], Service)> + '_ {
        self.v6.iter().copied()
    }

    pub fn v4(&self) -> impl Iterator<Item = [u8; 4]> + '_ {
        self.v4.iter().map(|(a, _)| *a)
    }

    pub fn v6(&self) -> impl Iterator<Item = [u8; 16]> + '_ {
        self.v6.iter().map(|(a, _)| *a)
    }

    pub fn service_v4(&self, dst: &[u8]) -> Option<Service> {
        self.v4.iter().find(|(a, _)| a == dst).map(|(_, s)| *s)
    }

    pub fn service_v6(&self, dst: &[u8]) -> Option<Service> {
        self.v6.iter().find(|(a, _)| a == dst).map(|(_, s)| *s)
    }

    /// All addresses, for logs and the report.
    pub fn addresses(&self) -> Vec<(IpAddr, Service)> {
        let v4 = self.v4.iter().map(|(a, s)| (IpAddr::from(*a), *s));
        let v6 = self.v6.iter().map(|(a, s)| (IpAddr::from(*a), *s));
        v4.chain(v6).collect()
    }

    /// Each address with its service's index as the class, as the eBPF tap takes them.
    pub fn classes(&self) -> Vec<(IpAddr, u8)> {
        self.addresses()
            .into_iter()
            .map(|(ip, s)| (ip, s.index() as u8))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_addresses_and_extra_resolvers_map_to_services() {
        let t = Targets::new(&["10.0.0.2".parse().unwrap()]);
        assert_eq!(t.service_v4(&[10, 0, 0, 2]), Some(Service::Dns));
        assert_eq!(t.service_v4(&[169, 254, 169, 253]), Some(Service::Dns));
        assert_eq!(t.service_v4(&[169, 254, 169, 254]), Some(Service::Imds));
        assert_eq!(t.service_v4(&[169, 254, 169, 123]), Some(Service::Ntp));
        assert_eq!(t.service_v4(&[10, 0, 0, 3]), None);
        let v6: Ipv6Addr = "fd00:ec2::253".parse().unwrap();
        assert_eq!(t.service_v6(&v6.octets()), Some(Service::Dns));
        let v6: Ipv6Addr = "fd00:ec2::123".parse().unwrap();
        assert_eq!(t.service_v6(&v6.octets()), Some(Service::Ntp));
    }

    #[test]
    fn duplicates_are_kept_once() {
        let t = Targets::new(&["169.254.169.253".parse().unwrap()]);
        assert_eq!(t.v4().count(), 3);
        assert_eq!(t.v6().count(), 3);
    }
}
