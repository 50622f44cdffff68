#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sotto_test_support::fuzzing::sealed_sender_v2_sent(data));
