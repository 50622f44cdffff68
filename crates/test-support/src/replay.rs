//! An RNG that hands out exactly the draws a libsignal transcript recorded.

use std::collections::VecDeque;

use serde_json::Value;

use crate::vectors::hex_field;

#[derive(Debug)]
enum Draw {
    /// One `fill_bytes` call of exactly this many bytes.
    Fill(Vec<u8>),
    /// One `next_u32` call.
    Word(u32),
}

/// Replays recorded random draws: every `fill_bytes` must ask for exactly the length recorded
/// next, and every `next_u32` must come where a `next_u32` was recorded. Anything else panics,
/// so a test fails when our code draws randomness differently from libsignal.
#[derive(Debug)]
pub struct ReplayRng {
    draws: VecDeque<Draw>,
    what: String,
}

impl ReplayRng {
    /// Builds a replayer from one or more `rng_draws` arrays (concatenated in order).
    /// `what` names the operation in panic messages.
    pub fn new(what: impl Into<String>, logs: &[&Value]) -> Self {
        let mut draws = VecDeque::new();
        for log in logs {
            let entries = log
                .as_array()
                .unwrap_or_else(|| panic!("rng_draws is not an array: {log}"));
            for entry in entries {
                match entry["kind"].as_str() {
                    Some("fill_bytes") => draws.push_back(Draw::Fill(hex_field(entry, "bytes"))),
                    Some("next_u32") => {
                        let words = hex_field(entry, "words_le");
                        assert_eq!(words.len() % 4, 0, "words_le length");
                        for w in words.chunks_exact(4) {
                            draws.push_back(Draw::Word(u32::from_le_bytes([
                                w[0], w[1], w[2], w[3],
                            ])));
                        }
                    }
                    other => panic!("unknown draw kind {other:?}"),
                }
            }
        }
        Self {
            draws,
            what: what.into(),
        }
    }

    /// An RNG with no draws at all: for operations that must be deterministic.
    pub fn empty(what: impl Into<String>) -> Self {
        Self {
            draws: VecDeque::new(),
            what: what.into(),
        }
    }

    /// Panics unless every recorded draw was consumed.
    pub fn assert_exhausted(&self) {
        assert!(
            self.draws.is_empty(),
            "{}: {} recorded draw(s) were not consumed: {:?}",
            self.what,
            self.draws.len(),
            self.draws
        );
    }

    /// How many draws remain.
    pub fn remaining(&self) -> usize {
        self.draws.len()
    }
}

impl rand_core::RngCore for ReplayRng {
    fn next_u32(&mut self) -> u32 {
        match self.draws.pop_front() {
            Some(Draw::Word(w)) => w,
            other => panic!(
                "{}: next_u32 called but the next recorded draw is {other:?}",
                self.what
            ),
        }
    }

    fn next_u64(&mut self) -> u64 {
        panic!(
            "{}: next_u64 called; libsignal never draws u64s in the transcripts",
            self.what
        )
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        match self.draws.pop_front() {
            Some(Draw::Fill(bytes)) if bytes.len() == dst.len() => dst.copy_from_slice(&bytes),
            other => panic!(
                "{}: fill_bytes({}) called but the next recorded draw is {other:?}",
                self.what,
                dst.len()
            ),
        }
    }
}

impl rand_core::CryptoRng for ReplayRng {}
