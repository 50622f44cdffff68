//! The fuzz corpus replayed by the normal test run: every input committed under
//! `fuzz/corpus/<target>/` (seeds) and `fuzz/regressions/<target>/` (reproducers of fixed
//! crashes) goes through the same target body the fuzzer runs
//! (`sotto_test_support::fuzzing`), which panics when an invariant fails.
//!
//! To (re)write the seed files derived from the libsignal transcripts:
//! `SOTTO_WRITE_FUZZ_SEEDS=1 cargo test -p sotto-protocol --test it fuzz_corpus`.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use sotto_test_support::fuzzing::{seeds, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The inputs in `dir` (none if it does not exist), by name; libFuzzer's `.tmp*` scratch files
/// and other dot files are skipped.
fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| entry.expect("readable directory").path())
        .filter(|path| path.is_file())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            (!name.starts_with('.')).then(|| (name, std::fs::read(&path).expect("readable input")))
        })
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, body) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    let corpus_dir = fuzz_dir().join("corpus").join(target);
    let corpus = inputs(&corpus_dir);
    assert!(
        !corpus.is_empty(),
        "fuzz corpus {} is missing or empty",
        corpus_dir.display()
    );
    let regressions = inputs(&fuzz_dir().join("regressions").join(target));
    let mut failures = Vec::new();
    for (kind, files) in [("corpus", &corpus), ("regressions", &regressions)] {
        for (name, bytes) in files {
            if catch_unwind(AssertUnwindSafe(|| body(bytes))).is_err() {
                failures.push(format!("fuzz/{kind}/{target}/{name}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: failing inputs (see the panics above): {failures:?}"
    );
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*

        /// The targets this file replays, to check against the list of targets.
        const REPLAYED: &[&str] = &[$(stringify!($target)),*];
    };
}

replay_tests!(
    signal_message,
    prekey_signal_message,
    prekey_bundle,
    session_record,
    prekey_records,
    public_key,
    server_certificate,
    sender_certificate,
    sealed_sender_content,
    sealed_sender_open,
    sealed_sender_v2_sent,
    sender_key_message,
    sender_key_distribution_message,
    sender_key_record,
    scannable_fingerprint,
    padding_unpad,
    two_party,
);

#[test]
fn every_target_is_replayed_and_has_a_fuzz_target() {
    let listed: BTreeSet<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    let replayed: BTreeSet<&str> = REPLAYED.iter().copied().collect();
    assert_eq!(
        listed, replayed,
        "fuzz_corpus.rs must replay every target of fuzzing::TARGETS"
    );
    let files: BTreeSet<String> = inputs(&fuzz_dir().join("fuzz_targets"))
        .into_iter()
        .filter_map(|(name, _)| name.strip_suffix(".rs").map(str::to_owned))
        .collect();
    let listed: BTreeSet<String> = listed.into_iter().map(str::to_owned).collect();
    assert_eq!(
        files, listed,
        "fuzz/fuzz_targets/*.rs must match fuzzing::TARGETS"
    );
    for name in &files {
        let source =
            std::fs::read_to_string(fuzz_dir().join("fuzz_targets").join(format!("{name}.rs")))
                .expect("readable target");
        assert!(
            source.contains(&format!("sotto_test_support::fuzzing::{name}(data)")),
            "fuzz/fuzz_targets/{name}.rs must call fuzzing::{name}"
        );
    }
}

/// Every seed derived from the transcripts is committed (by content, whatever its file name).
#[test]
fn seeds_are_committed() {
    let write = std::env::var_os("SOTTO_WRITE_FUZZ_SEEDS").is_some();
    let mut missing = Vec::new();
    for seed in seeds() {
        let dir = fuzz_dir().join("corpus").join(seed.target);
        if inputs(&dir).iter().any(|(_, bytes)| *bytes == seed.bytes) {
            continue;
        }
        if write {
            std::fs::create_dir_all(&dir).expect("corpus directory");
            std::fs::write(dir.join(&seed.name), &seed.bytes).expect("seed written");
        } else {
            missing.push(format!("{}/{}", seed.target, seed.name));
        }
    }
    assert!(
        missing.is_empty(),
        "seeds missing from fuzz/corpus (write them with SOTTO_WRITE_FUZZ_SEEDS=1): {missing:?}"
    );
}

/// The fixed sessions the decoder targets decrypt on accept the transcript's messages: the
/// corpus reaches the success paths, not only the rejections.
#[test]
fn fixed_sessions_accept_the_transcript() {
    sotto_test_support::fuzzing::check_fixture();
}
