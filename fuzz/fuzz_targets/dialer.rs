//! Fuzz target: see invpn::fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    invpn::fuzz::dialer_sequence(data);
});
