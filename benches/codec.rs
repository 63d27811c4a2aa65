//! The codec on the hot path: parsing and building frame messages.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use invpn::core::wire::{self, FRAME_HEADROOM};
use invpn::core::Mac;

fn frame(len: usize) -> Vec<u8> {
    let mut f = Mac([2, 0, 0, 0, 0, 2]).0.to_vec();
    f.extend_from_slice(&Mac([2, 0, 0, 0, 0, 1]).0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(len, 0x5a);
    f
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    for len in [64usize, 1500, 65000] {
        let f = frame(len);
        let mut msg = Vec::new();
        wire::encode_unicast(&mut msg, &f);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("parse_unicast", len), &msg, |b, m| {
            b.iter(|| black_box(wire::parse(black_box(&m[2..]))))
        });
        let mut buf = vec![0u8; FRAME_HEADROOM + len];
        buf[FRAME_HEADROOM..].copy_from_slice(&f);
        g.bench_with_input(BenchmarkId::new("build_unicast_in_place", len), &len, |b, &n| {
            b.iter(|| black_box(wire::unicast_in_place(black_box(&mut buf), FRAME_HEADROOM, n)))
        });
        let mut out = Vec::with_capacity(len + 16);
        g.bench_with_input(BenchmarkId::new("encode_broadcast", len), &f, |b, f| {
            b.iter(|| {
                out.clear();
                black_box(wire::encode_broadcast(&mut out, 42, black_box(f)))
            })
        });
    }
    g.finish();
    let mut a = Vec::new();
    wire::encode_announce(
        &mut a,
        &wire::Announce {
            version: 1,
            id: 1,
            mac: Mac([2, 0, 0, 0, 0, 9]),
            port: 41744,
            addr: wire::AnnouncedAddr::V4([198, 18, 0, 9].into()),
        },
    );
    c.bench_function("codec/parse_announce", |b| {
        b.iter(|| black_box(wire::parse(black_box(&a[2..]))))
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
