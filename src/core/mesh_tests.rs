use super::*;

fn me(n: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, n])
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, n], 655))
}

fn node(n: u8, seeds: &[u8]) -> Node {
    Node::new(config(n, seeds))
}

fn config(n: u8, seeds: &[u8]) -> NodeConfig {
    NodeConfig {
        me: me(n),
        max_links: 8,
        limits: dialer::Limits::DEFAULT,
        policy: AddrPolicy::new(&[], false),
        handshake_timeout: 10_000,
        announce_interval: 5_000,
        workers: 2,
        seeds: seeds.iter().map(|&s| (me(s), addr(s))).collect(),
        rng_seed: n as u64,
        direct_rate: crate::core::direct::DEFAULT_RATE,
        direct_idle: 10_000,
        near_links: false,
        probe_start: PROBE_START,
    }
}

fn actions(n: &mut Node) -> Vec<Action> {
    std::iter::from_fn(|| n.poll_action()).collect()
}

fn dials(acts: &[Action]) -> Vec<(LinkId, Mac)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Dial { id, mac, .. } => Some((*id, *mac)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_dials_its_seed_and_announces_when_the_link_is_up() {
    let mut a = node(1, &[2]);
    a.handle_timeout(0);
    let acts = actions(&mut a);
    assert!(acts.contains(&Action::Announce));
    let d = dials(&acts);
    assert_eq!(d.len(), 1);
    let (id, mac) = d[0];
    assert_eq!(mac, me(2));
    assert_eq!(a.state(id), Some(ConnState::Dialling));
    assert!(a.established(id, me(2), true, 100));
    assert_eq!(a.state(id), Some(ConnState::Up));
    let acts = actions(&mut a);
    assert!(
        matches!(&acts[..], [Action::Remember { .. }, Action::Up(i)] if i.id == id && i.outbound)
    );
    // due at once (the start's announcement reached nobody)
    assert_eq!(a.poll_timeout(), Some(0), "an announcement is due at once");
    a.handle_timeout(100);
    assert_eq!(actions(&mut a), vec![Action::Announce]);
    // nothing else to do: the next announcement is the next deadline
    assert_eq!(a.poll_timeout(), Some(5_100));
}

#[test]
fn link_changes_that_come_together_are_announced_in_one_flood() {
    let mut a = node(1, &[2, 3, 4]);
    a.handle_timeout(0);
    let acts = actions(&mut a);
    assert!(acts.contains(&Action::Announce));
    let d = dials(&acts);
    assert_eq!(d.len(), 3);
    // the first link is announced at once (the start's announcement
    // reached nobody), the next two, within ANNOUNCE_GAP of it, together
    let announced =
        |a: &mut Node| actions(a).into_iter().filter(|x| *x == Action::Announce).count();
    for (k, (id, mac)) in d.into_iter().enumerate() {
        let now = 10 * (k as u64 + 1);
        assert!(a.established(id, mac, true, now));
        a.handle_timeout(now);
        assert_eq!(announced(&mut a), usize::from(k == 0), "at {now}");
    }
    assert_eq!(a.poll_timeout(), Some(10 + ANNOUNCE_GAP));
    a.handle_timeout(10 + ANNOUNCE_GAP);
    assert_eq!(announced(&mut a), 1, "one flood says the other two");
    // a change long after is announced at once (the gap, long past)
    let first = a.links().all()[0].id;
    a.closed(first, &CloseReason::PeerClosed, 1_000);
    assert_eq!(a.poll_timeout(), Some(10 + 2 * ANNOUNCE_GAP), "due at once");
}

#[test]
fn a_node_asked_to_announce_does_at_most_eight_times_an_interval() {
    let mut a = node(1, &[2]);
    a.handle_timeout(0);
    let (id, mac) = dials(&actions(&mut a))[0];
    assert!(a.established(id, mac, true, 10));
    a.handle_timeout(10);
    assert!(actions(&mut a).contains(&Action::Announce));
    let turn = 5_000 / ASKED_PER_INTERVAL;
    // asked soon after an announcement: it waits its turn, and the
    // requests that come meanwhile are said by the same announcement
    a.announce_asked(100);
    assert_eq!(a.poll_timeout(), Some(10 + turn));
    a.announce_asked(300);
    a.announce_asked(600);
    assert_eq!(a.poll_timeout(), Some(10 + turn));
    a.handle_timeout(10 + turn);
    assert_eq!(actions(&mut a), vec![Action::Announce]);
    // then the next interval is due as ever
    assert_eq!(a.poll_timeout(), Some(10 + turn + 5_000));
    // asked long after its last announcement, it announces at once
    a.announce_asked(3_000);
    assert_eq!(a.poll_timeout(), Some(3_000));
}

#[test]
fn simultaneous_dials_keep_the_link_dialled_by_the_lower_mac_at_both_ends() {
    let (mut a, mut b) = (node(1, &[2]), node(2, &[1]));
    a.handle_timeout(0);
    b.handle_timeout(0);
    let (a_out, _) = dials(&actions(&mut a))[0];
    let (b_out, _) = dials(&actions(&mut b))[0];
    // each accepts the other's connection
    let a_in = a.accept(addr(2), 5).unwrap();
    let b_in = b.accept(addr(1), 5).unwrap();
    // all four handshakes finish, in an order that differs at each end
    assert!(a.established(a_out, me(2), true, 10));
    assert!(b.established(b_out, me(1), true, 10));
    assert!(!a.established(a_in, me(2), false, 11));
    assert!(b.established(b_in, me(1), false, 11));
    let (acts_a, acts_b) = (actions(&mut a), actions(&mut b));
    // a (lower MAC) keeps its own dial and refuses b's
    assert!(acts_a.contains(&Action::Close { id: a_in, reason: CloseReason::Duplicate }));
    // b replaces its own dial by a's
    assert!(acts_b.contains(&Action::Close { id: b_out, reason: CloseReason::Replaced }));
    assert_eq!(a.links().to_peer(&me(2)).map(|l| l.id), Some(a_out));
    assert_eq!(b.links().to_peer(&me(1)).map(|l| l.id), Some(b_in));
    // the losers' closes are reported: the links stay
    assert_eq!(
        a.closed(a_in, &CloseReason::Duplicate, 20),
        Closed::Conn(Origin::Accepted, addr(2))
    );
    assert!(matches!(
        b.closed(b_out, &CloseReason::Replaced, 20),
        Closed::Unknown | Closed::Conn(..)
    ));
    assert_eq!(a.links().len(), 1);
    assert_eq!(b.links().len(), 1);
}

#[test]
fn failed_dials_back_off_and_a_repeated_failure_is_not_worth_a_warning() {
    let mut a = node(1, &[2]);
    a.handle_timeout(0);
    let mut now = 0;
    let mut starts = Vec::new();
    for _ in 0..4 {
        let acts = actions(&mut a);
        let (id, _) = dials(&acts)[0];
        starts.push(now);
        let refused = CloseReason::ConnectFailed(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(a.closed(id, &refused, now), Closed::Conn(Origin::Dialled(_), _)));
        let failed = actions(&mut a);
        let first = starts.len() == 1;
        assert!(
            matches!(&failed[..], [Action::DialFailed { first: f, .. }] if *f == first),
            "{failed:?}"
        );
        // run the clock to the next dial
        loop {
            now = a.poll_timeout().unwrap().max(now + 1);
            a.handle_timeout(now);
            if a.connecting().0 > 0 {
                break;
            }
        }
    }
    starts.push(now);
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // 1 s, 2 s, then the cut of ISOLATED_RETRY for a node without links
    assert!((800..=1_200).contains(&gaps[0]), "{gaps:?}");
    assert!((1_600..=2_400).contains(&gaps[1]), "{gaps:?}");
    assert!(gaps[2] <= ISOLATED_RETRY && gaps[3] <= ISOLATED_RETRY, "{gaps:?}");
}

#[test]
fn a_node_whose_seed_is_overloaded_joins_as_soon_as_the_seed_recovers() {
    // The seed accepts the TCP connection but its handshakes time out until
    // RECOVERS (monotonic ms); from then on they finish in 50 ms.
    const RECOVERS: u64 = 200_000;
    let mut a = node(1, &[2]);
    let mut now = 0;
    let mut pending: Option<(LinkId, u64)> = None;
    let mut joined = None;
    let mut timeouts = 0;
    while now < RECOVERS + 60_000 && joined.is_none() {
        a.handle_timeout(now);
        for act in actions(&mut a) {
            match act {
                Action::Dial { id, .. } => pending = Some((id, now)),
                Action::Close { id, reason } => {
                    assert!(matches!(reason, CloseReason::HandshakeTimeout(_)));
                    timeouts += 1;
                    assert!(pending.is_some_and(|p| p.0 == id));
                    pending = None;
                    a.closed(id, &reason, now);
                }
                Action::Up(_) => joined = Some(now),
                _ => {}
            }
        }
        if let Some((id, at)) = pending {
            if at >= RECOVERS && now >= at + 50 {
                a.established(id, me(2), true, now);
                pending = None;
                continue;
            }
        }
        let next = a.poll_timeout().unwrap_or(u64::MAX);
        now = next.max(now + 1).min(pending.map_or(u64::MAX, |p| p.1 + 50).max(now + 1));
    }
    let joined = joined.expect("never joined");
    assert!(timeouts >= 10, "the seed timed out {timeouts} handshakes");
    // the dial under way at RECOVERS times out (10 s), the next one starts
    // at once and takes 50 ms
    assert!(joined <= RECOVERS + 10_000 + ISOLATED_RETRY + 100, "joined at {joined}");
}

#[test]
fn a_lost_link_is_dialled_again_soon_and_a_silent_one_too() {
    let mut a = node(1, &[2]);
    a.handle_timeout(0);
    let (id, _) = dials(&actions(&mut a))[0];
    a.established(id, me(2), true, 10);
    actions(&mut a);
    assert!(matches!(a.closed(id, &CloseReason::Silent(12_500), 1_000), Closed::Link(_)));
    assert!(a.links().is_empty());
    assert_eq!(actions(&mut a), vec![]);
    let due = a.poll_timeout().unwrap();
    assert!(due <= 1_000, "an announcement that the link went is due: {due}");
    a.handle_timeout(due.max(1_000));
    let mut now = 1_000;
    let mut redial = None;
    while redial.is_none() && now < 3_000 {
        now = a.poll_timeout().unwrap().max(now + 1);
        a.handle_timeout(now);
        redial = dials(&actions(&mut a)).first().copied();
    }
    let (id2, mac) = redial.expect("not dialled again within 2 s");
    assert_eq!(mac, me(2));
    assert_ne!(id2, id);
}

#[test]
fn churn_keeps_the_tables_consistent() {
    // links to many peers come and go in random order; the node's tables
    // end empty and its deadlines stay in the future
    let mut a = node(1, &[]);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut up: Vec<LinkId> = Vec::new();
    for step in 0..2_000u64 {
        let now = step * 10;
        if rng.bool() || up.is_empty() {
            let peer = me(rng.u8(2..60));
            let id = a.accept(addr(rng.u8(2..60)), now).unwrap();
            if a.established(id, peer, rng.bool(), now) {
                up.push(id);
            }
        } else {
            let id = up.swap_remove(rng.usize(..up.len()));
            a.closed(id, &CloseReason::PeerClosed, now);
        }
        for act in actions(&mut a) {
            if let Action::Close { id, reason } = act {
                up.retain(|u| *u != id);
                a.closed(id, &reason, now);
            }
        }
        a.handle_timeout(now);
        assert!(a.poll_timeout().unwrap() > now);
        assert!(a.links().len() <= 58);
        assert_eq!(a.links().len(), up.len());
    }
    for id in up {
        a.closed(id, &CloseReason::PeerClosed, 30_000);
    }
    assert!(a.links().is_empty());
    assert_eq!(a.connecting(), (0, 0));
    assert_eq!(a.pending_handshakes(), 0);
}

#[test]
fn incoming_handshakes_are_capped_per_address_and_time_out() {
    let mut a = node(1, &[]);
    let ids: Vec<_> = (0..admission::PER_ADDRESS).map(|_| a.accept(addr(9), 0).unwrap()).collect();
    assert_eq!(a.accept(addr(9), 0), None, "too many pending from one address");
    assert_eq!(a.connecting(), (0, admission::PER_ADDRESS));
    a.handle_timeout(0);
    actions(&mut a);
    a.handle_timeout(10_001);
    let closes: Vec<_> = actions(&mut a)
        .into_iter()
        .filter(|a| matches!(a, Action::Close { reason: CloseReason::HandshakeTimeout(_), .. }))
        .collect();
    assert_eq!(closes.len(), ids.len());
    for id in ids {
        a.closed(id, &CloseReason::HandshakeTimeout(10_000), 10_001);
    }
    assert!(a.accept(addr(9), 10_002).is_some());
}

#[test]
fn links_beyond_max_links_get_a_grace_and_go_but_never_those_of_0_4_nodes() {
    let mut a = Node::new(NodeConfig { max_links: 2, ..config(1, &[]) });
    let mut ids = Vec::new();
    for (i, ext) in [(2u8, true), (3, true), (4, true), (5, false)] {
        let id = a.accept(addr(i), 0).unwrap();
        assert!(a.established(id, me(i), ext, 0));
        ids.push(id);
    }
    actions(&mut a);
    assert_eq!(a.links().len(), 4, "kept during their grace");
    a.handle_timeout(GRACE - 1);
    assert!(!actions(&mut a).iter().any(|x| matches!(x, Action::Close { .. })));
    assert_eq!(a.poll_timeout(), Some(GRACE), "the grace is a deadline");
    a.handle_timeout(GRACE);
    let closes: Vec<LinkId> = actions(&mut a)
        .into_iter()
        .filter_map(|x| match x {
            Action::Close { id, reason: CloseReason::Full } => Some(id),
            _ => None,
        })
        .collect();
    // the third invpnd link goes; the 0.4 node's stays
    assert_eq!(closes, vec![ids[2]]);
}

/// Node 1 with `max_links` as many as `seeds`, linked to each of them at
/// 10 ms (node 2) to 10 ms more per node, all up at 10 ms: the node and
/// its links by peer.
fn full_node(seeds: &[u8]) -> (Node, Vec<(Mac, LinkId)>) {
    let mut a = Node::new(NodeConfig { max_links: seeds.len(), ..config(1, seeds) });
    a.handle_timeout(0);
    let mut ids: Vec<(Mac, LinkId)> =
        dials(&actions(&mut a)).into_iter().map(|(id, mac)| (mac, id)).collect();
    ids.sort();
    for &(mac, id) in &ids {
        a.measured(id, 10_000 * u64::from(mac.0[5] - 1));
        assert!(a.established(id, mac, true, 10));
    }
    actions(&mut a);
    (a, ids)
}

#[test]
fn a_full_node_gives_up_its_farthest_dialled_link_for_a_new_one_once_both_are_settled() {
    // node 1 (max_links 4) dialled 2, 3, 4 and 5 at 10 to 40 ms; the
    // first two up it keeps as random links
    let (mut a, ids) = full_node(&[2, 3, 4, 5]);
    // a link opened while those are young gets a grace ...
    let young = a.accept(addr(6), 1_000).unwrap();
    assert!(a.established(young, me(6), true, 1_000));
    assert!(closes(&actions(&mut a)).is_empty());
    a.handle_timeout(1_000 + GRACE - 1);
    assert!(closes(&actions(&mut a)).is_empty());
    // ... at whose end the farthest dialled link goes in its stead: the
    // node that opened it has nothing to replace
    a.handle_timeout(1_000 + GRACE);
    assert_eq!(closes(&actions(&mut a)), vec![(ids[3].1, CloseReason::Full)]);
    a.closed(ids[3].1, &CloseReason::Full, 1_000 + GRACE);
    assert_eq!(a.links().len(), 4);
    // once the dialled links are settled, a new one takes the place of
    // the farthest of them as soon as it has lasted SETTLE (a probe, closed
    // at once by its dialler, takes no link's place)
    let probe = a.accept(addr(9), 11_500).unwrap();
    assert!(a.established(probe, me(9), true, 11_500));
    a.closed(probe, &CloseReason::PeerClosed, 11_505);
    let new = a.accept(addr(7), 12_000).unwrap();
    assert!(a.established(new, me(7), true, 12_000));
    let acts = actions(&mut a);
    assert!(closes(&acts).is_empty());
    assert!(acts.iter().any(|x| matches!(x, Action::Up(i) if i.id == new)));
    a.handle_timeout(12_000 + SETTLE);
    assert_eq!(closes(&actions(&mut a)), vec![(ids[2].1, CloseReason::Full)]);
    a.closed(ids[2].1, &CloseReason::Full, 12_000 + SETTLE);
    // with only the random links left dialled, the new link gets a grace
    // and goes
    for l in a.links().all() {
        a.heard(l.id, 13_000);
    }
    let last = a.accept(addr(8), 13_000).unwrap();
    assert!(a.established(last, me(8), true, 13_000));
    assert!(closes(&actions(&mut a)).is_empty());
    for l in a.links().all() {
        a.heard(l.id, 13_000 + GRACE);
    }
    a.handle_timeout(13_000 + GRACE);
    assert_eq!(closes(&actions(&mut a)), vec![(last, CloseReason::Full)]);
}

#[test]
fn a_new_link_whose_stand_in_went_meanwhile_keeps_its_whole_grace() {
    // node 1 (max_links 3) dialled 2, 3 and 4; 4 is the one it may give up
    let (mut a, ids) = full_node(&[2, 3, 4]);
    // a new link, for which 4's goes once it has lasted SETTLE ...
    let new = a.accept(addr(6), 12_000).unwrap();
    assert!(a.established(new, me(6), true, 12_000));
    // ... but 4's goes first, and another node links
    a.closed(ids[2].1, &CloseReason::PeerClosed, 12_500);
    let other = a.accept(addr(7), 12_600).unwrap();
    assert!(a.established(other, me(7), true, 12_600));
    for t in [12_000 + SETTLE, 12_000 + GRACE - 1] {
        for l in a.links().all() {
            a.heard(l.id, t);
        }
        a.handle_timeout(t);
        assert!(closes(&actions(&mut a)).is_empty(), "at {t}");
    }
    // the new link's grace ends as if it had had no stand-in
    a.handle_timeout(12_000 + GRACE);
    assert_eq!(closes(&actions(&mut a)), vec![(new, CloseReason::Full)]);
}

#[test]
fn a_dialled_link_the_far_end_soon_closes_backs_off() {
    // a seed that is full: each link it accepts is closed after its grace
    let mut a = node(1, &[2, 3]);
    a.handle_timeout(0);
    let d = dials(&actions(&mut a));
    let (mut id, _) = d.iter().copied().find(|(_, m)| *m == me(2)).unwrap();
    let mut now = 10;
    let mut gaps = Vec::new();
    for _ in 0..3 {
        a.established(id, me(2), true, now);
        actions(&mut a);
        now += GRACE;
        a.closed(id, &CloseReason::PeerClosed, now);
        let closed_at = now;
        let mut again = None;
        while now < closed_at + 30_000 && again.is_none() {
            now = a.poll_timeout().unwrap().max(now + 1);
            a.handle_timeout(now);
            again = dials(&actions(&mut a)).into_iter().find(|(_, m)| *m == me(2));
        }
        id = again.expect("dialled again within 30 s").0;
        gaps.push(now - closed_at);
    }
    // 1 s, 2 s, 4 s (+-20 %): not the half second of a link lost after a
    // long life
    assert!(gaps[0] >= 800 && gaps[1] >= 1_600 && gaps[2] >= 3_200, "{gaps:?}");
}

#[test]
fn a_node_with_its_fill_of_links_has_no_dial_deadline() {
    // one link to dial for, two seeds: once the first is up, the second
    // is overdue but waits for room, without waking the node every turn
    let mut a = Node::new(NodeConfig { max_links: 1, ..config(1, &[2, 3]) });
    a.handle_timeout(0);
    let d = dials(&actions(&mut a));
    assert_eq!(d.len(), 1);
    a.established(d[0].0, d[0].1, true, 10);
    a.handle_timeout(10);
    actions(&mut a);
    assert_eq!(a.poll_timeout(), Some(5_010), "only the next announcement");
    // the link goes: the other seed is dialled at once
    a.closed(d[0].0, &CloseReason::Silent(3_000), 6_000);
    a.handle_timeout(6_000);
    let again = dials(&actions(&mut a));
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].1, d[0].1, "{again:?}");
}

fn closes(acts: &[Action]) -> Vec<(LinkId, CloseReason)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Close { id, reason } => Some((*id, reason.clone())),
            _ => None,
        })
        .collect()
}

/// Node 1 with `max_links` 1, linked to its seed 2, which told it that
/// node 3 listens at `addr(3)`.
fn linked_to_a_relay() -> Node {
    let mut a = Node::new(NodeConfig { max_links: 1, ..config(1, &[2]) });
    a.handle_timeout(0);
    let d = dials(&actions(&mut a));
    assert!(a.established(d[0].0, me(2), true, 10));
    a.learned(me(3), addr(3), me(2), 20);
    actions(&mut a);
    a
}

#[test]
fn a_busy_destination_behind_a_relay_gets_a_direct_link_outside_max_links() {
    let mut a = linked_to_a_relay();
    assert!(!a.want_direct(me(4), 100), "no address known");
    assert!(!a.want_direct(me(2), 100), "already a neighbour");
    assert!(a.want_direct(me(3), 100));
    let acts = actions(&mut a);
    let [Action::Dial { id, mac, addr: at, origin: Origin::Direct(_) }] = acts[..] else {
        panic!("{acts:?}")
    };
    assert_eq!((mac, at), (me(3), addr(3)));
    assert_eq!(a.state(id), Some(ConnState::Dialling));
    assert!(!a.want_direct(me(3), 150), "a dial is under way");
    assert!(actions(&mut a).is_empty());
    assert!(a.established(id, me(3), true, 200));
    assert!(a.is_direct(id));
    assert_eq!(a.links().len(), 2);
    actions(&mut a);
    // the direct link does not count: the node has its fill of one link
    // and no dial is due, however many targets it knows
    a.learned(me(5), addr(5), me(2), 300);
    a.handle_timeout(300);
    assert!(dials(&actions(&mut a)).is_empty());
    assert!(!a.want_direct(me(3), 400), "linked now");
}

#[test]
fn a_direct_link_is_closed_once_idle_and_its_node_can_be_dialled_again() {
    let mut a = linked_to_a_relay();
    a.want_direct(me(3), 100);
    let id = dials(&actions(&mut a))[0].0;
    a.established(id, me(3), true, 200);
    actions(&mut a);
    // 1 MB a second for 10 s, then 1 kB a second (announcements)
    let mut total = 0;
    let mut closed_at = None;
    for s in 1..=40u64 {
        total += if s <= 10 { 1_000_000 } else { 1_000 };
        a.traffic(id, total, 200 + s * 1000);
        if let [(c, CloseReason::Idle)] = closes(&actions(&mut a))[..] {
            assert_eq!(c, id);
            closed_at = Some(s);
            break;
        }
    }
    // idle from 11 s on, closed 10 s (direct_idle) after the last busy
    // second
    assert_eq!(closed_at, Some(20));
    assert!(matches!(a.closed(id, &CloseReason::Idle, 20_300), Closed::Link(_)));
    assert!(!a.is_direct(id));
    assert_eq!(a.links().len(), 1);
    // traffic through the relay again: dialled again, no back-off
    assert!(a.want_direct(me(3), 20_400));
}

#[test]
fn a_failed_direct_dial_backs_off_and_says_so_once() {
    let mut a = linked_to_a_relay();
    let mut t = 100;
    let mut gaps = Vec::new();
    let mut firsts = Vec::new();
    let mut last = t;
    for _ in 0..3 {
        // the TAP thread says so twice a second while traffic stays relayed
        while !a.want_direct(me(3), t) {
            t += 500;
        }
        gaps.push(t - last);
        let id = dials(&actions(&mut a))[0].0;
        let refused = CloseReason::ConnectFailed(std::io::ErrorKind::ConnectionRefused);
        a.closed(id, &refused, t + 5);
        let acts = actions(&mut a);
        let [Action::DialFailed { direct: true, first, .. }] = acts[..] else { panic!("{acts:?}") };
        firsts.push(first);
        last = t;
    }
    assert_eq!(firsts, vec![true, false, false]);
    // at once, then after 30 s, then after 60 s (on the half second)
    assert_eq!(gaps[0], 0);
    assert!((30_000..=30_500).contains(&gaps[1]), "{gaps:?}");
    assert!((60_000..=60_500).contains(&gaps[2]), "{gaps:?}");
    // the relay link is untouched, and no ordinary dial was charged
    assert_eq!(a.links().len(), 1);
}

#[test]
fn a_node_takes_a_direct_link_outside_max_links_but_only_so_many() {
    use crate::core::direct::MAX_DIRECT;
    // node 1 is full with one link; nodes 10.. dial it as direct links
    let mut b = Node::new(NodeConfig { max_links: 1, ..config(1, &[]) });
    let first = b.accept(addr(2), 0).unwrap();
    assert!(b.established(first, me(2), true, 0));
    let mut ids = Vec::new();
    for i in 0..MAX_DIRECT as u8 + 2 {
        let id = b.accept(addr(10 + i), 0).unwrap();
        assert!(b.established(id, me(10 + i), true, 0));
        // their hellos say so
        b.peer_direct(id, 1);
        ids.push(id);
    }
    actions(&mut b);
    b.handle_timeout(GRACE);
    let mut full: Vec<LinkId> = closes(&actions(&mut b))
        .into_iter()
        .filter(|(_, r)| *r == CloseReason::Full)
        .map(|(id, _)| id)
        .collect();
    full.sort();
    // the first MAX_DIRECT stay; the two beyond are surplus like any other
    assert_eq!(full, ids[MAX_DIRECT..].to_vec());
    assert!(ids[..MAX_DIRECT].iter().all(|id| b.is_direct(*id)));
    assert!(!b.is_direct(first));
}

#[test]
fn with_direct_off_nothing_is_dialled_or_taken_outside_max_links() {
    let mut a = Node::new(NodeConfig { max_links: 1, direct_rate: 0, ..config(1, &[2]) });
    a.handle_timeout(0);
    let d = dials(&actions(&mut a));
    a.established(d[0].0, me(2), true, 10);
    a.learned(me(3), addr(3), me(2), 20);
    assert!(!a.want_direct(me(3), 100));
    let id = a.accept(addr(4), 200).unwrap();
    a.established(id, me(4), true, 200);
    a.peer_direct(id, 201);
    assert!(!a.is_direct(id));
    actions(&mut a);
    a.handle_timeout(200 + GRACE);
    assert_eq!(closes(&actions(&mut a)), vec![(id, CloseReason::Full)]);
}

#[test]
fn a_silent_link_is_closed_after_three_intervals_of_the_slower_side() {
    let mut a = Node::new(NodeConfig { announce_interval: 1_000, ..config(1, &[]) });
    let fast = a.accept(addr(2), 0).unwrap();
    let old = a.accept(addr(3), 0).unwrap();
    a.established(fast, me(2), true, 0);
    a.established(old, me(3), false, 0);
    actions(&mut a);
    // the invpnd peer announces every second: 3 s of silence is enough;
    // the 0.4 peer is taken at its 5 s
    for t in [1_000, 2_000, 3_000] {
        a.announced(fast, t);
        a.announced(old, t);
    }
    a.handle_timeout(6_000);
    assert!(closes(&actions(&mut a)).is_empty());
    assert!(a.poll_timeout().is_some_and(|t| t <= 6_001), "the silence deadline");
    // something arrived meanwhile (reported late): the deadline moves
    a.heard(fast, 4_000);
    a.handle_timeout(7_000);
    assert!(closes(&actions(&mut a)).is_empty());
    a.handle_timeout(7_001);
    assert_eq!(closes(&actions(&mut a)), vec![(fast, CloseReason::Silent(3_000))]);
    // a link being closed is no deadline any more
    assert!(a.poll_timeout().is_some_and(|t| t > 7_001));
    a.closed(fast, &CloseReason::Silent(3_000), 7_002);
    // the 0.4 peer's link lasts 15 s from its last message
    a.handle_timeout(18_000);
    assert!(closes(&actions(&mut a)).is_empty());
    a.handle_timeout(18_001);
    assert_eq!(closes(&actions(&mut a)), vec![(old, CloseReason::Silent(15_000))]);
}

/// Node 1 (max_links 3: it dials 3) linked to nodes 2, 3 and 4 at
/// round-trip times 10, 20 and 30 ms, probing for nearer ones, and knowing
/// node 5 and 6 from hearsay.
fn probing_node() -> (Node, Vec<LinkId>) {
    let mut a = Node::new(NodeConfig { max_links: 3, near_links: true, ..config(1, &[2, 3, 4]) });
    a.handle_timeout(0);
    let mut ids = Vec::new();
    for (id, mac) in dials(&actions(&mut a)) {
        let rtt = 10_000 * u64::from(mac.0[5] - 1);
        a.measured(id, rtt);
        assert!(a.established(id, mac, true, 10));
        ids.push((mac, id));
    }
    ids.sort();
    a.learned(me(5), addr(5), me(2), 20);
    a.learned(me(6), addr(6), me(2), 20);
    actions(&mut a);
    (a, ids.into_iter().map(|(_, id)| id).collect())
}

fn probe_dial(a: &mut Node, from: u64, until: u64) -> Option<(u64, LinkId, Mac)> {
    let mut now = from;
    while now < until {
        now = a.poll_timeout().unwrap_or(until).max(now + 1);
        // the links are alive
        for l in a.links().all() {
            a.heard(l.id, now);
        }
        a.handle_timeout(now);
        for act in actions(a) {
            if let Action::Dial { id, mac, origin: Origin::Probe(_), .. } = act {
                return Some((now, id, mac));
            }
        }
    }
    None
}

#[test]
fn a_probe_finds_a_nearer_node_which_replaces_the_farthest_link_but_not_a_random_one() {
    let (mut a, ids) = probing_node();
    // the first two links the dialer picked are kept as random ones: the
    // third, at 30 ms, is the one a nearer node may replace
    let (at, probe, mac) = probe_dial(&mut a, 0, 300_000).expect("no probe");
    assert!((PROBE_START..2 * PROBE_START + 1_000).contains(&at), "probed at {at}");
    assert!(mac == me(5) || mac == me(6));
    assert_eq!(a.state(probe), Some(ConnState::Dialling));
    // 5 ms away: nearer by far
    a.measured(probe, 5_000);
    assert!(a.established(probe, mac, true, at + 5));
    let acts = actions(&mut a);
    let far = *ids.iter().max_by_key(|id| id.0).unwrap();
    assert!(closes(&acts).contains(&(far, CloseReason::Farther)), "{acts:?}");
    assert!(acts.iter().any(|x| matches!(x, Action::Up(i) if i.id == probe)));
    // the links dialled at random stay whatever their round-trip time
    assert!(!closes(&acts).iter().any(|(id, _)| *id != far));
}

#[test]
fn a_probe_no_nearer_is_closed_unused_and_the_next_waits_twice_as_long() {
    let (mut a, ids) = probing_node();
    let _ = ids;
    let (at, probe, mac) = probe_dial(&mut a, 0, 300_000).expect("no probe");
    // 26 ms against the farthest's 30: not worth a change
    a.measured(probe, 26_000);
    assert!(!a.established(probe, mac, true, at + 5));
    let acts = actions(&mut a);
    assert_eq!(closes(&acts), vec![(probe, CloseReason::Probed)]);
    assert!(!acts.iter().any(|x| matches!(x, Action::Up(_))), "a probe not kept never comes up");
    a.closed(probe, &CloseReason::Probed, at + 6);
    assert_eq!(a.links().len(), 3);
    let (again, _, _) = probe_dial(&mut a, at + 6, at + 300_000).expect("no second probe");
    // (plus up to a quarter of jitter)
    let wait = again - at;
    assert!((2 * PROBE_MIN..=2 * PROBE_MIN * 5 / 4 + 1_000).contains(&wait), "{at} {again}");
}

#[test]
fn without_near_links_or_without_a_fill_of_links_nothing_is_probed() {
    let mut a = Node::new(NodeConfig { max_links: 3, ..config(1, &[2, 3, 4]) });
    a.handle_timeout(0);
    for (id, mac) in dials(&actions(&mut a)) {
        a.established(id, mac, true, 10);
    }
    a.learned(me(5), addr(5), me(2), 20);
    assert!(probe_dial(&mut a, 0, 300_000).is_none(), "near_links off");
    // one link of three: the dialer fills, nothing is probed
    let mut b = Node::new(NodeConfig { max_links: 3, near_links: true, ..config(1, &[2]) });
    b.handle_timeout(0);
    for (id, mac) in dials(&actions(&mut b)) {
        b.established(id, mac, true, 10);
    }
    assert!(probe_dial(&mut b, 0, 600_000).is_none(), "no fill of links");
}
