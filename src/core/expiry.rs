//! Certificate expiry, checked while the daemon runs (not only at start
//! and reload): the node warns 30, 7 and 1 day(s) before its own
//! certificate or its CA's expires (once each), says so once when one has
//! expired, and closes the links whose peer's certificate has expired.
//!
//! Sans-IO: the supervisor passes the time (Unix seconds, the wall clock
//! certificates are written in) and each link's peer certificate expiry,
//! and acts on what comes back.

use std::fmt;

use super::links::CloseReason;
use super::{LinkId, Mac};

/// How many days ahead the node warns of an expiry, each once.
pub const WARN_DAYS: [i64; 3] = [30, 7, 1];

const DAY: i64 = 86_400;

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn unix_to_text(t: i64) -> String {
    match ::time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => format!("@{t}"),
    }
}

/// Which of this node's certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Own {
    /// The node's certificate, by subject.
    Node(String),
    /// A CA certificate of `[ssl] ca`, by subject.
    Ca(String),
}

impl fmt::Display for Own {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Own::Node(s) => write!(f, "node certificate {s}"),
            Own::Ca(s) => write!(f, "CA certificate {s}"),
        }
    }
}

/// What to do about an expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryAction {
    /// One of this node's certificates expires in `days_left` whole days
    /// (at most one of [`WARN_DAYS`]): warn.
    Warn { cert: Own, days_left: i64, not_after: i64 },
    /// One of this node's certificates has expired: peers refuse new links
    /// (say it once, as an error).
    Expired { cert: Own, not_after: i64 },
    /// Close this link: its peer's certificate has expired.
    Close { link: LinkId, peer: Mac, reason: CloseReason },
}

#[derive(Debug, Clone)]
struct OwnCert {
    cert: Own,
    not_after: i64,
    /// How many of [`WARN_DAYS`] have been warned of.
    warned: usize,
    expired_said: bool,
}

/// The expiry watch of one node.
#[derive(Debug, Clone, Default)]
pub struct Expiry {
    own: Vec<OwnCert>,
}

impl Expiry {
    /// Watches the node certificate (`node`: subject and expiry, Unix
    /// seconds) and the CA certificates (`cas`, the same). Nothing is warned
    /// of yet: the next [`Expiry::tick`] says what is near. A reload calls
    /// this again, so the warnings are repeated once after it.
    pub fn new(node: (String, i64), cas: &[(String, i64)]) -> Expiry {
        let one = |cert, not_after| OwnCert { cert, not_after, warned: 0, expired_said: false };
        let mut own = vec![one(Own::Node(node.0), node.1)];
        own.extend(cas.iter().map(|(s, t)| one(Own::Ca(s.clone()), *t)));
        Expiry { own }
    }

    /// What to do at `now` (Unix seconds), given each link's peer
    /// certificate expiry (0: unknown, never closed). A link is named in
    /// `Close` as long as it is passed in: the caller stops passing it.
    pub fn tick(
        &mut self,
        now: i64,
        links: impl IntoIterator<Item = (LinkId, Mac, i64)>,
    ) -> Vec<ExpiryAction> {
        let mut out = Vec::new();
        for c in &mut self.own {
            let left = c.not_after - now;
            if left <= 0 {
                if !c.expired_said {
                    c.expired_said = true;
                    c.warned = WARN_DAYS.len();
                    out.push(ExpiryAction::Expired {
                        cert: c.cert.clone(),
                        not_after: c.not_after,
                    });
                }
                continue;
            }
            let due = WARN_DAYS.iter().filter(|d| left <= *d * DAY).count();
            if due > c.warned {
                c.warned = due;
                out.push(ExpiryAction::Warn {
                    cert: c.cert.clone(),
                    days_left: left / DAY,
                    not_after: c.not_after,
                });
            }
        }
        for (link, peer, not_after) in links {
            if not_after != 0 && not_after <= now {
                let reason = CloseReason::CertificateExpired(not_after);
                out.push(ExpiryAction::Close { link, peer, reason });
            }
        }
        out
    }
}

/// The soonest peer certificate expiry among `links` (0s are unknown), so
/// that the caller can check then rather than a tick later.
pub fn next_peer_expiry(links: impl IntoIterator<Item = (LinkId, Mac, i64)>) -> Option<i64> {
    links.into_iter().map(|l| l.2).filter(|t| *t != 0).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    fn node(not_after: i64) -> (String, i64) {
        ("CN=n".to_string(), not_after)
    }

    fn warns(acts: &[ExpiryAction]) -> Vec<(Own, i64)> {
        acts.iter()
            .filter_map(|a| match a {
                ExpiryAction::Warn { cert, days_left, .. } => Some((cert.clone(), *days_left)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn warns_30_7_and_1_day_ahead_once_each() {
        let mut e = Expiry::new(node(T0 + 40 * DAY), &[]);
        let mut said = Vec::new();
        // every hour for 41 days
        for h in 0..(41 * 24) {
            for a in e.tick(T0 + h * 3600, []) {
                said.push((h / 24, a));
            }
        }
        let days: Vec<i64> = said
            .iter()
            .filter_map(|(_, a)| match a {
                ExpiryAction::Warn { days_left, .. } => Some(*days_left),
                _ => None,
            })
            .collect();
        assert_eq!(days, vec![30, 7, 1]);
        let expired = said.iter().filter(|(_, a)| matches!(a, ExpiryAction::Expired { .. }));
        assert_eq!(expired.count(), 1);
        assert!(matches!(
            said.last(),
            Some((40, ExpiryAction::Expired { cert: Own::Node(_), .. }))
        ));
    }

    #[test]
    fn a_start_close_to_expiry_warns_once_with_the_days_left() {
        let ca = ("CN=net CA".to_string(), T0 + 5 * DAY + 10);
        let mut e = Expiry::new(node(T0 + 365 * DAY), std::slice::from_ref(&ca));
        assert_eq!(warns(&e.tick(T0, [])), vec![(Own::Ca(ca.0.clone()), 5)]);
        assert!(e.tick(T0 + 60, []).is_empty());
        assert_eq!(warns(&e.tick(T0 + 4 * DAY + 10, [])), vec![(Own::Ca(ca.0), 1)]);
        // a reload starts over: said once more
        let mut e = Expiry::new(node(T0 + 20 * DAY), &[]);
        assert_eq!(warns(&e.tick(T0, [])), vec![(Own::Node("CN=n".into()), 20)]);
        let mut e = Expiry::new(node(T0 - 1), &[]);
        assert!(matches!(e.tick(T0, [])[..], [ExpiryAction::Expired { .. }]));
        assert!(e.tick(T0 + 1, []).is_empty());
    }

    #[test]
    fn links_close_when_their_peer_certificate_expires() {
        let mut e = Expiry::new(node(T0 + 365 * DAY), &[]);
        let peer = Mac([2, 0, 0, 0, 0, 2]);
        let links = [(LinkId(1), peer, T0 + 5), (LinkId(2), peer, 0), (LinkId(3), peer, T0 + 99)];
        assert!(e.tick(T0, links).is_empty());
        assert_eq!(next_peer_expiry(links), Some(T0 + 5));
        let acts = e.tick(T0 + 5, links);
        let reason = CloseReason::CertificateExpired(T0 + 5);
        assert_eq!(
            acts,
            vec![ExpiryAction::Close { link: LinkId(1), peer, reason: reason.clone() }]
        );
        assert_eq!(reason.cause(), crate::core::stats::CloseCause::CertificateExpired);
        assert!(reason.to_string().starts_with("peer certificate expired on "));
        assert_eq!(next_peer_expiry([(LinkId(2), peer, 0)]), None);
    }
}
