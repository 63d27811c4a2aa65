//! Admission of incoming connections before they authenticate: a node
//! facing the internet sees scanners, junk and idle connections. Pending
//! handshakes are capped per address and in total; when the total is
//! reached the oldest pending handshake makes room, so a crowd of idle
//! connections can delay an honest peer by at most its own handshake time,
//! never lock it out.

use std::collections::VecDeque;
use std::net::IpAddr;

use hashbrown::HashMap;

use super::LinkId;

/// Default cap on handshakes pending from one address.
pub const PER_ADDRESS: usize = 8;
/// Default cap on handshakes pending in total.
pub const TOTAL: usize = 256;

/// The decision on a new incoming connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go ahead with the handshake.
    Accept,
    /// Go ahead, and close this older pending handshake to make room.
    AcceptEvicting(LinkId),
    /// Close the connection now: its address has too many pending.
    RefuseAddress,
}

/// The incoming connections whose handshake has not finished.
#[derive(Debug)]
pub struct Admission {
    per_address: usize,
    total: usize,
    order: VecDeque<(LinkId, IpAddr)>,
    by_addr: HashMap<IpAddr, usize>,
}

impl Admission {
    /// Caps of `per_address` and `total` pending handshakes.
    pub fn new(per_address: usize, total: usize) -> Admission {
        Admission {
            per_address: per_address.max(1),
            total: total.max(1),
            order: VecDeque::new(),
            by_addr: HashMap::new(),
        }
    }

    /// Decides on connection `id` from `ip` and records it if admitted.
    pub fn admit(&mut self, id: LinkId, ip: IpAddr) -> Admit {
        if self.by_addr.get(&ip).copied().unwrap_or(0) >= self.per_address {
            return Admit::RefuseAddress;
        }
        let verdict = if self.order.len() >= self.total {
            match self.order.pop_front() {
                Some((old, old_ip)) => {
                    self.forget_addr(old_ip);
                    Admit::AcceptEvicting(old)
                }
                None => Admit::Accept,
            }
        } else {
            Admit::Accept
        };
        self.order.push_back((id, ip));
        *self.by_addr.entry(ip).or_insert(0) += 1;
        verdict
    }

    fn forget_addr(&mut self, ip: IpAddr) {
        if let Some(n) = self.by_addr.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.by_addr.remove(&ip);
            }
        }
    }

    /// The handshake of `id` finished or failed.
    pub fn done(&mut self, id: LinkId) {
        if let Some(pos) = self.order.iter().position(|(l, _)| *l == id) {
            if let Some((_, ip)) = self.order.remove(pos) {
                self.forget_addr(ip);
            }
        }
    }

    /// Handshakes pending.
    pub fn pending(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, n])
    }

    #[test]
    fn per_address_cap() {
        let mut a = Admission::new(2, 100);
        assert_eq!(a.admit(LinkId(1), ip(1)), Admit::Accept);
        assert_eq!(a.admit(LinkId(2), ip(1)), Admit::Accept);
        assert_eq!(a.admit(LinkId(3), ip(1)), Admit::RefuseAddress);
        assert_eq!(a.admit(LinkId(4), ip(2)), Admit::Accept);
        a.done(LinkId(1));
        assert_eq!(a.admit(LinkId(5), ip(1)), Admit::Accept);
        assert_eq!(a.pending(), 3);
    }

    #[test]
    fn the_oldest_makes_room_so_honest_peers_always_get_in() {
        let mut a = Admission::new(1000, 300);
        // an attacker holds 300 idle connections from many addresses
        for i in 0..300u64 {
            assert_eq!(
                a.admit(LinkId(i), IpAddr::from([203, 0, (i >> 8) as u8, i as u8])),
                Admit::Accept
            );
        }
        // an honest peer still gets a handshake; the oldest idle one goes
        assert_eq!(a.admit(LinkId(1000), ip(9)), Admit::AcceptEvicting(LinkId(0)));
        assert_eq!(a.pending(), 300);
        // and the attacker's reconnection evicts another idle one, not it
        assert_eq!(
            a.admit(LinkId(1001), IpAddr::from([203, 0, 0, 0])),
            Admit::AcceptEvicting(LinkId(1))
        );
        a.done(LinkId(1000));
        assert_eq!(a.pending(), 299);
        // finishing unknown ids changes nothing
        a.done(LinkId(9999));
        assert_eq!(a.pending(), 299);
    }
}
