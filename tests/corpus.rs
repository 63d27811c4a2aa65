//! Every input of the fuzz seed corpus (fuzz/corpus/), including the ones
//! that once made a target fail, run through the fuzz drivers by make test.

use std::path::Path;

fn each(target: &str, run: impl Fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        run(&data);
        n += 1;
    }
    assert!(n > 0, "empty corpus {}", dir.display());
}

#[test]
fn wire_corpus() {
    each("wire", |d| {
        invpn::fuzz::wire_round_trip(d);
        invpn::fuzz::deframer_chunks(d);
    });
}

#[test]
fn engine_corpus() {
    each("engine", invpn::fuzz::engine_sequence);
}

#[test]
fn dialer_corpus() {
    each("dialer", invpn::fuzz::dialer_sequence);
}

#[test]
fn offload_corpus() {
    each("offload", invpn::fuzz::offload_input);
}

#[test]
fn text_corpus() {
    each("text", invpn::fuzz::text_inputs);
}
