#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sotto_test_support::fuzzing::sender_key_record(data));
