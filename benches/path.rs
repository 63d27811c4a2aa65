//! The whole per-frame path, in memory: a frame from node A's TAP becomes a
//! message (built in place), messages are batched into TLS records, the
//! records go through node B's TLS session and deframer, and B's engine
//! hands the frame to its TAP. Sockets and the TAP are left out: this is
//! what invpnd itself costs per frame. Reported as bytes of Ethernet frames
//! per second; frames per second are that divided by the frame size.

use std::io::{Read, Write};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use invpn::config::Ssl;
use invpn::core::deframer::Deframer;
use invpn::core::wire::FRAME_HEADROOM;
use invpn::core::{
    Engine, EngineConfig, Event, Fanout, LinkCtx, LinkId, Mac, Now, Output, TapAction,
};
use invpn::pki::{self, KeyType, Validity};
use invpn::tls::Material;
use rustls::pki_types::UnixTime;

struct Sink(usize);

impl Output for Sink {
    fn send(&mut self, _: LinkId, _: &[u8]) {}
    fn flood(&mut self, _: &Fanout, _: &[u8]) {}
    fn deliver(&mut self, frame: &[u8]) {
        self.0 += frame.len();
    }
    fn event(&mut self, _: Event) {}
}

fn material(dir: &std::path::Path, ca: &pki::CertAndKey, n: u8) -> Material {
    let node =
        pki::new_node(ca, Mac([2, 0, 0, 0, 0, n]), Validity::days_from_now(2), KeyType::EcdsaP256)
            .unwrap();
    let p = |e: &str| dir.join(format!("n{n}.{e}"));
    std::fs::write(p("crt"), &node.cert_pem).unwrap();
    std::fs::write(p("key"), &node.key_pem).unwrap();
    Material::load(
        &Ssl { key: p("key"), cert: p("crt"), ca: dir.join("ca.crt"), crl: None },
        UnixTime::now(),
    )
    .unwrap()
}

/// Moves TLS records from one end to the other, handing what the far end
/// decrypts to `plain` as it goes (rustls holds only so much plaintext).
fn pump(
    from: &mut rustls::Connection,
    to: &mut rustls::Connection,
    wire: &mut Vec<u8>,
    mut plain: impl FnMut(&[u8]),
) {
    wire.clear();
    while from.wants_write() {
        from.write_tls(wire).unwrap();
    }
    let mut got = [0u8; 16 * 1024];
    let mut rd = &wire[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets().unwrap();
        while let Ok(n @ 1..) = to.reader().read(&mut got) {
            plain(&got[..n]);
        }
    }
}

fn path(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::new_ca("bench CA", Validity::days_from_now(2), KeyType::EcdsaP256).unwrap();
    std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
    let (ma, mb) = (material(dir.path(), &ca, 1), material(dir.path(), &ca, 2));
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut client = rustls::Connection::Client(
        rustls::ClientConnection::new(ma.client_config(mb.mac).unwrap(), name).unwrap(),
    );
    let mut server = rustls::Connection::Server(
        rustls::ServerConnection::new(mb.server_config().unwrap()).unwrap(),
    );
    let mut wire = Vec::new();
    for _ in 0..10 {
        pump(&mut client, &mut server, &mut wire, |_| {});
        pump(&mut server, &mut client, &mut wire, |_| {});
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());

    let now = Now { mono: 1, unix_ms: 1_700_000_000_000 };
    let (a, b) = (Engine::new(EngineConfig::new(ma.mac)), Engine::new(EngineConfig::new(mb.mac)));
    let addr = "198.18.0.1:41744".parse().unwrap();
    a.link_up(&LinkCtx { id: LinkId(1), peer: mb.mac, addr, ext: true }, now);
    let from_a = LinkCtx { id: LinkId(1), peer: ma.mac, addr, ext: true };
    b.link_up(&from_a, now);

    let mut g = c.benchmark_group("per_frame_path");
    for len in [64usize, 1500, 9000, 65000] {
        // about 256 KiB of frames per iteration
        let batch = (262_144 / len).max(1);
        g.throughput(Throughput::Bytes((batch * len) as u64));
        let mut frame = mb.mac.0.to_vec();
        frame.extend_from_slice(&ma.mac.0);
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.resize(len, 0x5a);
        let mut buf = vec![0u8; FRAME_HEADROOM + len];
        let mut plain = Vec::with_capacity(64 * 1024 + len);
        let mut rx = Deframer::new();
        g.bench_function(BenchmarkId::from_parameter(len), |bench| {
            bench.iter(|| {
                let mut sink = Sink(0);
                let mut sent = 0;
                while sent < batch {
                    plain.clear();
                    // batch messages into up to 64 KiB of plaintext
                    while sent < batch && plain.len() + len + 3 <= 64 * 1024 + len {
                        buf[FRAME_HEADROOM..].copy_from_slice(&frame);
                        match a.tap_frame(&mut buf, len, now) {
                            TapAction::Unicast { msg, .. } => plain.extend_from_slice(&buf[msg]),
                            other => panic!("{other:?}"),
                        }
                        sent += 1;
                    }
                    // as the worker does: rustls takes what its buffer
                    // limit allows, the rest after the records went out
                    let mut off = 0;
                    while off < plain.len() {
                        off += client.writer().write(&plain[off..]).unwrap();
                        pump(&mut client, &mut server, &mut wire, |p| rx.push(p));
                    }
                    while let Some(m) = rx.next_message() {
                        b.handle_message(&from_a, m, now, &mut sink);
                    }
                }
                assert_eq!(sink.0, batch * len);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, path);
criterion_main!(benches);
