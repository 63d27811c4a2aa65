use super::*;

fn m(n: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, n])
}

fn a(n: u8) -> SocketAddr {
    format!("198.18.0.{n}:41744").parse().unwrap()
}

/// Neighbour `n`, that announces others.
fn via(n: u8) -> Mac {
    Mac([2, 0xee, 0, 0, 0, n])
}

/// Invented node `i`.
fn inv(i: u32) -> Mac {
    Mac([2, 1, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

fn inv_addr(i: u32) -> SocketAddr {
    SocketAddr::from(([198, 19, (i >> 8) as u8, i as u8], 41744))
}

fn dialer(max_links: usize, seed: u64) -> Dialer {
    Dialer::new(m(1), max_links, Limits::DEFAULT, AddrPolicy::new(&[a(1)], false), seed)
}

fn small(total: usize, per_link: usize) -> Dialer {
    Dialer::new(m(1), 10, Limits { total, per_link }, AddrPolicy::new(&[a(1)], false), 7)
}

#[test]
fn dials_seed_then_not_while_linked_or_dialing() {
    let mut d = dialer(10, 1);
    d.add_seed(m(2), a(2));
    assert_eq!(d.poll(0, 0), vec![Dial { mac: m(2), addr: a(2) }]);
    assert!(d.poll(0, 0).is_empty(), "no second dial while the first runs");
    d.linked(m(2), Some(a(2)));
    assert!(d.poll(100_000, 1).is_empty(), "seeds are not redialled while linked");
    d.unlinked(m(2), 100_000);
    assert!(d.poll(100_000, 0).is_empty());
    assert_eq!(d.poll(101_000, 0).len(), 1, "retried within a second of losing the link");
    d.audit().unwrap();
}

#[test]
fn backoff_doubles_and_is_capped() {
    let mut d = dialer(10, 2);
    d.add_seed(m(2), a(2));
    let mut now = 0;
    let mut gaps = Vec::new();
    for _ in 0..10 {
        assert_eq!(d.poll(now, 0).len(), 1);
        d.failed(m(2), now);
        let next = d.next_due().unwrap();
        gaps.push(next - now);
        assert!(d.poll(next - 1, 0).is_empty());
        now = next;
    }
    for (i, g) in gaps.iter().enumerate() {
        let base = (BACKOFF_MIN << i.min(16)).min(BACKOFF_MAX) as f64;
        assert!((*g as f64) >= base * 0.8 && (*g as f64) <= base * 1.2, "gap {i}: {g}");
    }
    assert!(*gaps.last().unwrap() <= BACKOFF_MAX * 12 / 10);
    assert_eq!(d.known(), 1, "a seed is never given up");
}

#[test]
fn respects_max_links_in_random_order() {
    let mut d = dialer(3, 3);
    for i in 2..20 {
        d.learn(m(i), a(i), via(1), 0);
    }
    let first = d.poll(0, 1);
    assert_eq!(first.len(), 2, "3 links allowed, 1 up");
    assert!(d.poll(0, 1).is_empty(), "2 dialing + 1 up = 3");
    let orders: Vec<_> = (0..5)
        .map(|s| {
            let mut x = dialer(18, s);
            (2..20).for_each(|i| {
                x.learn(m(i), a(i), via(1), 0);
            });
            x.poll(0, 0).iter().map(|d| d.mac).collect::<Vec<_>>()
        })
        .collect();
    assert!(orders.windows(2).any(|w| w[0] != w[1]), "order is randomized");
}

#[test]
fn never_dials_itself_and_tries_each_address_in_turn() {
    let mut d = dialer(10, 4);
    d.add_seed(m(1), a(1));
    assert_eq!(d.learn(m(1), a(5), via(1), 0), Learn::Ignored);
    assert!(d.poll(0, 0).is_empty());
    d.add_seed(m(2), a(2));
    d.learn(m(2), a(9), via(1), 0);
    assert_eq!(d.poll(0, 0)[0].addr, a(9), "announced address first");
    d.failed(m(2), 0);
    assert_eq!(d.poll(10_000, 0)[0].addr, a(2), "then the seed");
    d.is_self(m(2));
    assert!(d.poll(100_000, 0).is_empty());
    d.audit().unwrap();
}

#[test]
fn a_confirmed_address_comes_first_and_frees_the_share() {
    let mut d = dialer(10, 8);
    d.learn(m(2), a(2), via(1), 0);
    assert_eq!(d.stats().hearsay, 1);
    let dial = d.poll(0, 0)[0];
    assert!(d.linked(m(2), Some(dial.addr)), "newly confirmed");
    assert!(!d.linked(m(2), Some(dial.addr)), "confirmed already");
    let s = d.stats();
    assert_eq!((s.confirmed, s.hearsay, s.hearsay_neighbours), (1, 0, 0));
    // a neighbour now announces another address for it: tried after the
    // confirmed one, which is never given up
    assert_eq!(d.learn(m(2), a(7), via(3), 0), Learn::New);
    d.unlinked(m(2), 0);
    assert_eq!(d.poll(1_000, 0)[0].addr, a(2));
    d.failed(m(2), 1_000);
    assert_eq!(d.poll(100_000, 0)[0].addr, a(7));
    for t in 0..20 {
        d.failed(m(2), 100_000 * t);
        d.poll(100_000 * (t + 1), 0);
    }
    assert_eq!(d.stats().hearsay, 0, "the announced address failed too often");
    assert_eq!(d.confirmed().collect::<Vec<_>>(), vec![(m(2), a(2))]);
    d.audit().unwrap();
}

#[test]
fn unusable_addresses_are_refused_and_counted() {
    let mut d = dialer(10, 5);
    let bad = [
        ("127.0.0.1:41744", Unusable::Loopback),
        ("224.0.0.1:41744", Unusable::Multicast),
        ("0.0.0.0:41744", Unusable::Unspecified),
        ("169.254.0.9:41744", Unusable::LinkLocal),
        ("198.18.0.9:0", Unusable::PortZero),
        ("198.18.0.1:41744", Unusable::Own),
    ];
    for (i, (addr, why)) in bad.iter().enumerate() {
        let r = d.learn(m(10 + i as u8), addr.parse().unwrap(), via(1), 0);
        assert_eq!(r, Learn::Refused(*why), "{addr}");
    }
    assert!(d.poll(0, 0).is_empty());
    assert_eq!(d.known(), 0);
    assert_eq!(d.stats().refused, bad.len() as u64);
    let r = d.take_refusal().unwrap();
    assert_eq!((r.mac, r.via, r.why), (m(15), via(1), Unusable::Own));
    assert_eq!(d.take_refusal(), None);
    assert_eq!(d.add_confirmed(m(3), "127.0.0.1:41744".parse().unwrap()), Err(Unusable::Loopback));
    // the operator's seeds are not second-guessed
    d.add_seed(m(4), "127.0.0.1:41744".parse().unwrap());
    assert_eq!(d.poll(0, 0).len(), 1);
    d.audit().unwrap();
}

#[test]
fn one_neighbour_only_fills_its_own_share() {
    let mut d = small(1_000, 100);
    // an honest neighbour's nodes
    for i in 2..12 {
        d.learn(m(i), a(i), via(1), 0);
    }
    // a hostile one announces 10,000 invented nodes
    for i in 0..10_000 {
        d.learn(inv(i), inv_addr(i), via(66), 1 + u64::from(i));
    }
    let s = d.stats();
    assert_eq!(s.hearsay_largest_share, 100);
    assert_eq!(s.hearsay, 110);
    assert_eq!(s.evicted, 10_000 - 100);
    assert!((2..12).all(|i| d.targets.contains_key(&m(i))), "honest hearsay kept");
    // the newest of the invented survive, the oldest went first
    assert!(d.targets.contains_key(&inv(9_999)) && !d.targets.contains_key(&inv(0)));
    d.audit().unwrap();
}

#[test]
fn the_total_is_kept_by_evicting_from_the_largest_share() {
    let mut d = small(50, 40);
    for i in 0..10 {
        d.learn(m(2 + i), a(2 + i), via(1), 0);
    }
    for i in 0..40 {
        d.learn(inv(i), inv_addr(i), via(66), 1);
    }
    for i in 100..140 {
        d.learn(inv(i), inv_addr(i), via(67), 2);
    }
    let s = d.stats();
    assert_eq!(s.hearsay, 50);
    assert!((0..10).all(|i| d.targets.contains_key(&m(2 + i))), "the smallest share is untouched");
    d.audit().unwrap();
    // a smaller limit on reload applies at once
    d.set_limits(Limits { total: 20, per_link: 5 });
    let s = d.stats();
    assert!(s.hearsay <= 15 && s.hearsay_largest_share <= 5, "{s:?}");
    d.audit().unwrap();
}

#[test]
fn hearsay_ages_out_and_a_refresh_keeps_it() {
    let mut d = dialer(0, 6);
    d.learn(m(2), a(2), via(1), 0);
    d.learn(m(3), a(3), via(1), 0);
    assert_eq!(d.learn(m(3), a(3), via(1), HEARSAY_MAX_AGE), Learn::Refreshed);
    assert_eq!(d.prune(HEARSAY_MAX_AGE + 1), 1);
    assert!(!d.targets.contains_key(&m(2)) && d.targets.contains_key(&m(3)));
    assert_eq!(d.stats().expired, 1);
    // another neighbour announcing it takes over the charge
    assert_eq!(d.learn(m(3), a(3), via(2), HEARSAY_MAX_AGE + 2), Learn::New);
    let s = d.stats();
    assert_eq!((s.hearsay, s.hearsay_neighbours), (1, 1));
    d.audit().unwrap();
}

#[test]
fn hearsay_that_keeps_failing_is_given_up() {
    let mut d = dialer(10, 9);
    d.learn(m(2), a(2), via(1), 0);
    let mut now = 0;
    for _ in 0..HEARSAY_MAX_FAILURES {
        assert_eq!(d.poll(now, 0).len(), 1);
        d.failed(m(2), now);
        now += BACKOFF_MAX * 2;
    }
    assert_eq!(d.known(), 0);
    assert_eq!(d.stats().expired, 1);
    assert!(d.targets.is_empty());
    d.audit().unwrap();
}

#[test]
fn evicted_while_dialling_then_the_dial_ends() {
    let mut d = small(1, 1);
    d.learn(m(2), a(2), via(1), 0);
    assert_eq!(d.poll(0, 0).len(), 1);
    d.learn(m(3), a(3), via(1), 0); // evicts m(2)'s address mid-dial
    d.audit().unwrap();
    d.failed(m(2), 0);
    assert!(!d.targets.contains_key(&m(2)));
    d.audit().unwrap();
    // a dial that succeeds confirms even so
    d.learn(m(4), a(4), via(1), 0);
    let dial = d.poll(0, 0);
    d.learn(m(5), a(5), via(1), 0);
    assert!(d.linked(dial[0].mac, Some(dial[0].addr)));
    d.audit().unwrap();
}

#[test]
fn confirmed_addresses_are_bounded() {
    let mut d = dialer(10, 10);
    for i in 0..(MAX_CONFIRMED as u32 + 10) {
        d.add_confirmed(inv(i), inv_addr(i)).unwrap();
    }
    assert_eq!(d.stats().confirmed, MAX_CONFIRMED);
    assert!(!d.targets.contains_key(&inv(0)), "oldest first");
    d.audit().unwrap();
}

#[test]
fn forgetting_drops_hearsay_only() {
    let mut d = dialer(10, 5);
    d.learn(m(3), a(3), via(1), 0);
    d.poll(0, 0);
    d.failed(m(3), 0);
    // a new address is tried at once
    d.learn(m(3), a(4), via(1), 10);
    assert_eq!(d.poll(10, 0), vec![Dial { mac: m(3), addr: a(4) }]);
    d.failed(m(3), 10);
    d.forget(m(3));
    assert!(d.poll(1_000_000, 0).is_empty());
    assert_eq!(d.known(), 0);
    d.add_confirmed(m(5), a(5)).unwrap();
    d.forget(m(5));
    assert_eq!(d.known(), 1, "a confirmed address stays");
    d.audit().unwrap();
}

#[test]
fn many_nodes_announced_at_one_address_are_dialled_once_at_a_time_with_one_backoff() {
    let mut d = dialer(100, 11);
    // a neighbour announces 50 invented MACs at an honest node's address
    for i in 0..50 {
        d.learn(inv(i), a(2), via(66), 0);
    }
    let mut now = 0;
    let mut dials = 0;
    for _ in 0..20 {
        let got = d.poll(now, 0);
        assert!(got.len() <= 1, "one dial at a time to one address: {got:?}");
        for dial in got {
            dials += 1;
            d.failed(dial.mac, now); // the node there is not that MAC
        }
        d.audit().unwrap();
        now = d.next_due().unwrap_or(now + 1);
    }
    // 20 rounds, each after the address's back-off: not 50 dials at once
    assert_eq!(dials, 20);
    assert!(now >= 5 * BACKOFF_MAX, "the address backed off: {now}");
    // the honest node itself is reached there: its success clears it
    d.learn(m(2), a(2), via(1), now);
    let mut linked = false;
    for _ in 0..100 {
        for dial in d.poll(now, 0) {
            if dial.mac == m(2) {
                d.linked(m(2), Some(dial.addr));
                linked = true;
            } else {
                d.failed(dial.mac, now);
            }
        }
        if linked {
            break;
        }
        now = d.next_due().unwrap();
    }
    assert!(linked);
    assert!(d.addr_backoff.is_empty());
    d.audit().unwrap();
}

#[test]
fn an_address_that_reached_this_node_is_its_own() {
    let mut d = dialer(10, 12);
    d.learn(m(2), a(7), via(1), 0);
    assert_eq!(d.poll(0, 0)[0].addr, a(7));
    d.learn(m(4), a(7), via(2), 0);
    d.is_self(m(2));
    assert_eq!(d.stats().hearsay, 0, "others announced there went too");
    assert_eq!(d.learn(m(3), a(7), via(1), 0), Learn::Refused(Unusable::Own));
    d.audit().unwrap();
}
