//! Loading the libsignal v0.74.1 transcripts kept in `crates/protocol/tests/vectors/libsignal`.

use std::path::PathBuf;

use serde_json::Value;

/// Every transcript file the repository ships. Each must be present: a missing file fails the
/// test that asks for it.
pub const FILES: &[&str] = &[
    "a_x3dh_v3_otpk_base_seed1.json",
    "a_x3dh_v3_otpk_base_seed2.json",
    "b_x3dh_v3_no_otpk_base_seed1.json",
    "b_x3dh_v3_no_otpk_base_seed2.json",
    "c_pqxdh_v4_kyber1024_base_seed1.json",
    "c_pqxdh_v4_kyber1024_base_seed2.json",
    "d_out_of_order_base_seed1.json",
    "d_out_of_order_base_seed2.json",
    "e_sender_keys_base_seed1.json",
    "e_sender_keys_base_seed2.json",
    "f_sealed_sender_base_seed1.json",
    "f_sealed_sender_base_seed2.json",
    "g_fingerprints_base_seed1.json",
    "g_fingerprints_base_seed2.json",
    "h_xeddsa_base_seed1.json",
    "h_xeddsa_base_seed2.json",
];

/// The folder holding the transcripts.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../protocol/tests/vectors/libsignal")
}

/// The transcripts whose file name starts with `prefix` (e.g. `"a_"`), parsed. Panics when
/// none is found or one is missing or unreadable.
pub fn load_scenario(prefix: &str) -> Vec<(String, Value)> {
    let names: Vec<&str> = FILES
        .iter()
        .copied()
        .filter(|f| f.starts_with(prefix))
        .collect();
    assert!(!names.is_empty(), "no transcript named {prefix}*");
    names
        .into_iter()
        .map(|name| (name.to_owned(), load(name)))
        .collect()
}

/// One transcript, parsed. Panics when it is missing: a missing vector is a failure.
pub fn load(name: &str) -> Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "vector file {} is missing or unreadable: {e}",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("vector file {name} is not JSON: {e}"))
}

/// Decodes the hex string at `value[key]`; panics if absent or not hex.
pub fn hex_field(value: &Value, key: &str) -> Vec<u8> {
    hex_value(&value[key]).unwrap_or_else(|| panic!("field {key:?} is not a hex string in {value}"))
}

/// Decodes a hex string value, `None` for JSON null.
pub fn hex_opt(value: &Value, key: &str) -> Option<Vec<u8>> {
    if value[key].is_null() {
        None
    } else {
        Some(hex_field(value, key))
    }
}

/// Decodes a hex string into a fixed-size array; panics on the wrong length.
pub fn hex_array<const N: usize>(value: &Value, key: &str) -> [u8; N] {
    let bytes = hex_field(value, key);
    bytes
        .as_slice()
        .try_into()
        .unwrap_or_else(|_| panic!("field {key:?}: expected {N} bytes, got {}", bytes.len()))
}

/// The unsigned integer at `value[key]`; panics if absent.
pub fn u64_field(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("field {key:?} is not an unsigned integer in {value}"))
}

fn hex_value(v: &Value) -> Option<Vec<u8>> {
    hex::decode(v.as_str()?).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_vector_file_is_present_and_parses() {
        for name in super::FILES {
            let v = super::load(name);
            assert_eq!(v["kat_format"], 1, "{name}");
        }
    }
}
