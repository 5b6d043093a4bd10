//! IPv4 CIDR blocks (`10.42.0.0/24`), enough for pod address management and
//! routes to other nodes' pod CIDRs.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: address with host bits cleared, and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR address: {0}")]
pub struct CidrError(pub String);

impl Ipv4Cidr {
    /// The network containing `addr` with that prefix length (host bits are
    /// cleared, as Go's `net.ParseCIDR` does).
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, CidrError> {
        if prefix_len > 32 {
            return Err(CidrError(format!("{addr}/{prefix_len}")));
        }
        let network = Ipv4Addr::from(u32::from(addr) & Self::mask_bits(prefix_len));
        Ok(Self {
            network,
            prefix_len,
        })
    }

    fn mask_bits(prefix_len: u8) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0)
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The broadcast (last) address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !Self::mask_bits(self.prefix_len))
    }

    /// Whether `addr` lies inside this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & Self::mask_bits(self.prefix_len) == u32::from(self.network)
    }

    /// The address `offset` places after the network address, if inside.
    pub fn nth(&self, offset: u32) -> Option<Ipv4Addr> {
        let addr = u32::from(self.network).checked_add(offset)?;
        let addr = Ipv4Addr::from(addr);
        self.contains(addr).then_some(addr)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        // Go's ParseCIDR takes only plain decimal prefix lengths.
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let len: u8 = len.parse().map_err(|_| bad())?;
        Self::new(addr, len).map_err(|_| bad())
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks_host_bits() {
        for (input, want) in [
            ("10.42.0.0/16", "10.42.0.0/16"),
            ("10.42.3.7/24", "10.42.3.0/24"),
            ("192.168.1.1/32", "192.168.1.1/32"),
            ("1.2.3.4/0", "0.0.0.0/0"),
        ] {
            let cidr: Ipv4Cidr = input.parse().unwrap();
            assert_eq!(cidr.to_string(), want, "{input}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for input in [
            "10.42.0.0",
            "10.42.0.0/33",
            "10.42.0.0/",
            "10.42.0/24",
            "10.42.0.0/+8",
            "10.42.0.0/024",
            "x/8",
        ] {
            let err = input.parse::<Ipv4Cidr>().unwrap_err();
            assert_eq!(err.to_string(), format!("invalid CIDR address: {input}"));
        }
    }

    #[test]
    fn contains_broadcast_and_nth() {
        let cidr: Ipv4Cidr = "10.244.7.0/24".parse().unwrap();
        assert_eq!(cidr.broadcast(), Ipv4Addr::new(10, 244, 7, 255));
        assert!(cidr.contains(Ipv4Addr::new(10, 244, 7, 0)));
        assert!(cidr.contains(Ipv4Addr::new(10, 244, 7, 255)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 244, 8, 0)));
        assert_eq!(cidr.nth(1), Some(Ipv4Addr::new(10, 244, 7, 1)));
        assert_eq!(cidr.nth(255), Some(Ipv4Addr::new(10, 244, 7, 255)));
        assert_eq!(cidr.nth(256), None);
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
        assert_eq!(all.broadcast(), Ipv4Addr::BROADCAST);
    }
}
