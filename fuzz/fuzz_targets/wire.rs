//! Fuzz target: see invpn::fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    invpn::fuzz::wire_round_trip(data);
    invpn::fuzz::deframer_chunks(data);
});
