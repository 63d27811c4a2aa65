//! Which addresses are worth dialling: an address a neighbour announced
//! (or an old cache held) is dialled only if a node could really listen
//! there. Unspecified, multicast, broadcast, reserved and link-local
//! addresses, port 0 and this node's own listening addresses are refused;
//! loopback only where this node itself lives on loopback (a seed or
//! `bind` on loopback: nodes run side by side on one host).
//!
//! Seeds from the configuration are the operator's choice and are not
//! checked here.

use std::net::{IpAddr, SocketAddr};

/// Most own addresses remembered (those of `bind`, and those neighbours
/// reached us at); later ones are not added.
pub const MAX_OWN: usize = 32;

/// Why an address is not dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unusable {
    /// 0.0.0.0/8 or `::`.
    Unspecified,
    /// 127.0.0.0/8 or `::1`, while this node does not live on loopback.
    Loopback,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 240.0.0.0/4 (reserved, never assigned).
    Reserved,
    /// 169.254.0.0/16 or fe80::/10: needs an interface to mean anything.
    LinkLocal,
    /// Port 0.
    PortZero,
    /// One of this node's own listening addresses.
    Own,
}

impl Unusable {
    /// Every value, in order.
    pub const ALL: &'static [Unusable] = &[
        Unusable::Unspecified,
        Unusable::Loopback,
        Unusable::Multicast,
        Unusable::Broadcast,
        Unusable::Reserved,
        Unusable::LinkLocal,
        Unusable::PortZero,
        Unusable::Own,
    ];

    /// A stable label for logs and the control interface.
    pub fn label(self) -> &'static str {
        match self {
            Unusable::Unspecified => "unspecified",
            Unusable::Loopback => "loopback",
            Unusable::Multicast => "multicast",
            Unusable::Broadcast => "broadcast",
            Unusable::Reserved => "reserved",
            Unusable::LinkLocal => "link_local",
            Unusable::PortZero => "port_zero",
            Unusable::Own => "own_address",
        }
    }
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The rule, with what it needs to know about this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrPolicy {
    allow_loopback: bool,
    own: Vec<SocketAddr>,
}

impl AddrPolicy {
    /// A policy for a node listening at `own` (empty if it takes no
    /// connections or listens on every address: see [`AddrPolicy::add_own`]);
    /// loopback addresses are dialled only if `allow_loopback`.
    pub fn new(own: &[SocketAddr], allow_loopback: bool) -> AddrPolicy {
        let mut p = AddrPolicy { allow_loopback, own: Vec::new() };
        own.iter().for_each(|a| p.add_own(*a));
        p
    }

    /// Whether loopback addresses may be dialled: only where this node
    /// itself is reached on loopback (it binds there, or a seed is there).
    pub fn loopback_allowed(bind: Option<IpAddr>, seeds: &[SocketAddr]) -> bool {
        bind.is_some_and(|b| b.to_canonical().is_loopback())
            || seeds.iter().any(|s| s.ip().to_canonical().is_loopback())
    }

    /// Changes whether loopback addresses may be dialled (the seeds
    /// changed on reload).
    pub fn set_loopback_allowed(&mut self, allow: bool) {
        self.allow_loopback = allow;
    }

    /// Remembers an address this node is reached at (a neighbour connected
    /// to it there), so that an announcement of it is not dialled.
    pub fn add_own(&mut self, addr: SocketAddr) {
        let addr = canonical(addr);
        if self.own.len() < MAX_OWN && !self.own.contains(&addr) {
            self.own.push(addr);
        }
    }

    /// The addresses known as this node's own.
    pub fn own(&self) -> &[SocketAddr] {
        &self.own
    }

    /// Whether `addr` may be dialled.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Unusable> {
        let addr = canonical(addr);
        if addr.port() == 0 {
            return Err(Unusable::PortZero);
        }
        match addr.ip() {
            IpAddr::V4(ip) => {
                let o = ip.octets();
                if o[0] == 0 {
                    return Err(Unusable::Unspecified);
                }
                if ip.is_broadcast() {
                    return Err(Unusable::Broadcast);
                }
                if ip.is_multicast() {
                    return Err(Unusable::Multicast);
                }
                if o[0] >= 240 {
                    return Err(Unusable::Reserved);
                }
                if ip.is_link_local() {
                    return Err(Unusable::LinkLocal);
                }
                if ip.is_loopback() && !self.allow_loopback {
                    return Err(Unusable::Loopback);
                }
            }
            IpAddr::V6(ip) => {
                if ip.is_unspecified() {
                    return Err(Unusable::Unspecified);
                }
                if ip.is_multicast() {
                    return Err(Unusable::Multicast);
                }
                if ip.segments()[0] & 0xffc0 == 0xfe80 {
                    return Err(Unusable::LinkLocal);
                }
                if ip.is_loopback() && !self.allow_loopback {
                    return Err(Unusable::Loopback);
                }
            }
        }
        if self.own.contains(&addr) {
            return Err(Unusable::Own);
        }
        Ok(())
    }
}

/// `addr` with an IPv4-mapped IPv6 address as plain IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unusable_addresses_are_refused_with_their_reason() {
        let p = AddrPolicy::new(&[a("198.18.1.1:41744")], false);
        let cases = [
            ("0.0.0.0:41744", Unusable::Unspecified),
            ("0.1.2.3:41744", Unusable::Unspecified),
            ("[::]:41744", Unusable::Unspecified),
            ("127.0.0.1:41744", Unusable::Loopback),
            ("127.9.9.9:1", Unusable::Loopback),
            ("[::1]:41744", Unusable::Loopback),
            ("[::ffff:127.0.0.1]:41744", Unusable::Loopback),
            ("224.0.0.1:41744", Unusable::Multicast),
            ("239.255.255.250:1900", Unusable::Multicast),
            ("[ff02::1]:41744", Unusable::Multicast),
            ("255.255.255.255:41744", Unusable::Broadcast),
            ("240.0.0.1:41744", Unusable::Reserved),
            ("169.254.1.1:41744", Unusable::LinkLocal),
            ("[fe80::1]:41744", Unusable::LinkLocal),
            ("198.18.0.2:0", Unusable::PortZero),
            ("198.18.1.1:41744", Unusable::Own),
            ("[::ffff:198.18.1.1]:41744", Unusable::Own),
        ];
        for (addr, why) in cases {
            assert_eq!(p.check(a(addr)), Err(why), "{addr}");
        }
        for ok in ["198.18.0.2:41744", "198.18.1.1:41745", "[fd00::2]:41744", "10.0.0.1:1"] {
            assert_eq!(p.check(a(ok)), Ok(()), "{ok}");
        }
    }

    #[test]
    fn loopback_only_for_a_node_that_lives_on_loopback() {
        let seeds = [a("127.0.0.1:41745")];
        assert!(AddrPolicy::loopback_allowed(None, &seeds));
        assert!(AddrPolicy::loopback_allowed(Some("::1".parse().unwrap()), &[]));
        assert!(!AddrPolicy::loopback_allowed(None, &[a("198.18.1.1:41744")]));
        assert!(!AddrPolicy::loopback_allowed(Some("0.0.0.0".parse().unwrap()), &[]));
        let mut p = AddrPolicy::new(&[a("127.0.0.1:41744")], true);
        assert_eq!(p.check(a("127.0.0.1:41745")), Ok(()));
        assert_eq!(p.check(a("127.0.0.1:41744")), Err(Unusable::Own), "still not itself");
        p.set_loopback_allowed(false);
        assert_eq!(p.check(a("127.0.0.1:41745")), Err(Unusable::Loopback));
    }

    #[test]
    fn own_addresses_learnt_are_bounded() {
        let mut p = AddrPolicy::new(&[], false);
        for i in 0..100u16 {
            p.add_own(SocketAddr::from(([198, 18, 1, 1], 1000 + i)));
        }
        p.add_own(a("198.18.1.1:1000"));
        assert_eq!(p.own().len(), MAX_OWN);
        assert_eq!(p.check(a("198.18.1.1:1005")), Err(Unusable::Own));
        assert_eq!(p.check(a("198.18.1.1:1100")), Ok(()));
    }
}
