//! Ethernet MAC addresses: a node's identity on the mesh.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address.
///
/// A node's MAC is its identity: the MAC of its TAP interface and the Common
/// Name of its certificate, written `xx:xx:xx:xx:xx:xx`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacParseError(String);

impl fmt::Display for MacParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a MAC address (expected six hex pairs such as 02:50:56:00:00:01)",
            self.0
        )
    }
}

impl std::error::Error for MacParseError {}

impl Mac {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// The MAC in the first six bytes of `b`, if there are six.
    pub fn from_slice(b: &[u8]) -> Option<Mac> {
        let a: [u8; 6] = b.get(..6)?.try_into().ok()?;
        Some(Mac(a))
    }

    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// A group address (broadcast or multicast): the first octet's low bit.
    pub fn is_group(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// `00:00:00:00:00:00`.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// The locally-administered bit (second-lowest bit of the first octet).
    pub fn is_local(&self) -> bool {
        self.0[0] & 2 == 2
    }

    /// Whether this address can identify a node: unicast and not all zero.
    pub fn is_node_address(&self) -> bool {
        !self.is_group() && !self.is_zero()
    }

    /// A cheap, well-mixed hash used to pick a shard of a table.
    pub fn shard_hash(&self) -> u64 {
        let [a, b, c, d, e, f] = self.0;
        let v = u64::from_be_bytes([0, 0, a, b, c, d, e, f]);
        v.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

impl FromStr for Mac {
    type Err = MacParseError;

    /// Parses `xx:xx:xx:xx:xx:xx` (hex, either case). `-` is accepted as a
    /// separator too, since operators paste such addresses from other tools.
    fn from_str(s: &str) -> Result<Mac, MacParseError> {
        let err = || MacParseError(s.to_string());
        let bytes = s.as_bytes();
        if bytes.len() != 17 {
            return Err(err());
        }
        let sep = bytes[2];
        if sep != b':' && sep != b'-' {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (i, o) in out.iter_mut().enumerate() {
            let at = i * 3;
            if i < 5 && bytes[at + 2] != sep {
                return Err(err());
            }
            let hi = hex_val(bytes[at]).ok_or_else(err)?;
            let lo = hex_val(bytes[at + 1]).ok_or_else(err)?;
            *o = hi << 4 | lo;
        }
        Ok(Mac(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let m: Mac = "02:50:56:00:00:0A".parse().unwrap();
        assert_eq!(m.0, [2, 0x50, 0x56, 0, 0, 0x0a]);
        assert_eq!(m.to_string(), "02:50:56:00:00:0a");
        let dash: Mac = "02-50-56-00-00-0a".parse().unwrap();
        assert_eq!(dash, m);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "02:50:56:00:00",
            "02:50:56:00:00:0g",
            "02:50:56-00:00:01",
            "02:50:56:00:00:001",
            "0250:56:00:00:01:",
            "node1",
            "02:50:56:00:00:01 ",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn classifies() {
        assert!(Mac::BROADCAST.is_group());
        assert!(Mac([0x33, 0x33, 0, 0, 0, 1]).is_group());
        assert!(Mac([0x01, 0, 0x5e, 0, 0, 1]).is_group());
        let n = Mac([2, 0x50, 0x56, 0, 0, 1]);
        assert!(!n.is_group() && n.is_local() && n.is_node_address());
        assert!(!Mac::default().is_node_address());
    }

    #[test]
    fn from_slice_needs_six_bytes() {
        assert_eq!(Mac::from_slice(&[1, 2, 3, 4, 5]), None);
        assert_eq!(Mac::from_slice(&[1, 2, 3, 4, 5, 6, 7]), Some(Mac([1, 2, 3, 4, 5, 6])));
    }
}
