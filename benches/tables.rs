//! The shared tables under concurrent access: route lookups (every frame)
//! while announcements update routes, and broadcast de-duplication.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use invpn::core::dedup::Dedup;
use invpn::core::routes::{Hop, RouteTable};
use invpn::core::{LinkId, Mac};

fn mac(i: u32) -> Mac {
    let [_, a, b, c] = i.to_be_bytes();
    Mac([2, 0, 0, a, b, c])
}

fn hop(i: u32) -> Hop {
    Hop { link: LinkId(u64::from(i % 8)), via: mac(0), alt_ok: true, slot: None, answer: false }
}

fn tables(c: &mut Criterion) {
    let routes = Arc::new(RouteTable::new());
    for i in 0..1000 {
        routes.offer(mac(i), 1, hop(i), None, 0);
    }
    let mut g = c.benchmark_group("routes");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u32;
    g.bench_function("lookup_1000_routes", |b| {
        b.iter(|| {
            i = (i + 7) % 1000;
            black_box(routes.next_hop(&mac(i)))
        })
    });
    // the same while another thread keeps offering announcements
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (routes, stop) = (routes.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut stamp = 2;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..1000 {
                    routes.offer(mac(i), stamp, hop(i), None, stamp);
                }
                stamp += 1;
            }
        })
    };
    g.bench_function("lookup_while_announcements_update", |b| {
        b.iter(|| {
            i = (i + 7) % 1000;
            black_box(routes.next_hop(&mac(i)))
        })
    });
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    g.finish();

    let mut g = c.benchmark_group("dedup");
    g.throughput(Throughput::Elements(1));
    let d = Arc::new(Dedup::new());
    let mut id = 1_000_000u64;
    g.bench_function("check_fresh_100_sources", |b| {
        b.iter(|| {
            id += 1;
            black_box(d.check(mac((id % 100) as u32), id, id))
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut id = 5_000_000_000u64;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                d.check(mac((id % 100) as u32), id, id);
            }
        })
    };
    g.bench_function("check_while_another_thread_checks", |b| {
        b.iter(|| {
            id += 1;
            black_box(d.check(mac((id % 100) as u32), id, id))
        })
    });
    stop.store(true, Ordering::Relaxed);
    let _ = other.join();
    g.finish();
}

criterion_group!(benches, tables);
criterion_main!(benches);
