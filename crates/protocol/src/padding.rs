//! Content padding that hides message lengths: `content || 0x80 || 0x00…` up to a multiple of
//! [`PADDING_BLOCK_SIZE`] (160) bytes, as Signal clients pad before encrypting.
//!
//! Signal's senders (`PushTransportDetails.getPaddedMessageBody`) compute the padded length of
//! `n` content bytes as the smallest multiple of 160 that is at least `n + 1` (room for the
//! `0x80` terminator) — and then add one byte of slack that they cut off again, so the rule is
//! exactly this. Signal's receivers are lenient (they strip trailing zeros and one `0x80`);
//! [`unpad`] is strict: the length must be a non-zero multiple of the block, the terminator
//! present, and every byte after it zero — anything else is an error.
//!
//! [`PADDING_BLOCK_SIZE`]: crate::PADDING_BLOCK_SIZE

use thiserror::Error;

use crate::consts::PADDING_BLOCK_SIZE;

const TERMINATOR: u8 = 0x80;

/// Padded content that does not unpad.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PaddingError {
    /// The padded length is zero or not a multiple of the block size.
    #[error("padded length {0} is not a non-zero multiple of the block size")]
    BadLength(usize),
    /// No `0x80` terminator followed only by zeros.
    #[error("malformed padding")]
    Malformed,
}

/// Pads `content` to the next multiple of 160 bytes with a `0x80` terminator.
pub fn pad(content: &[u8]) -> Vec<u8> {
    let padded_len = (content.len() / PADDING_BLOCK_SIZE + 1) * PADDING_BLOCK_SIZE;
    let mut out = Vec::with_capacity(padded_len);
    out.extend_from_slice(content);
    out.push(TERMINATOR);
    out.resize(padded_len, 0);
    out
}

/// Removes the padding, strictly: the terminator must be followed only by zeros, and the
/// padding must be exactly what [`pad`] adds. Runs through the whole input whatever it holds.
pub fn unpad(padded: &[u8]) -> Result<&[u8], PaddingError> {
    if padded.is_empty() || padded.len() % PADDING_BLOCK_SIZE != 0 {
        return Err(PaddingError::BadLength(padded.len()));
    }
    // Scan from the end: zeros, then one 0x80. Branch-free over the contents so the time taken
    // does not reveal where the content ends.
    let mut terminator_at = 0usize;
    let mut found = 0u8; // 1 once the terminator is seen
    let mut bad = 0u8;
    for (i, &byte) in padded.iter().enumerate().rev() {
        let searching = 1 - found;
        let is_zero = u8::from(byte == 0);
        let is_terminator = u8::from(byte == TERMINATOR);
        // While searching, a byte must be zero or the terminator.
        bad |= searching & (1 - is_zero) & (1 - is_terminator);
        let hit = searching & is_terminator;
        terminator_at = if hit == 1 { i } else { terminator_at };
        found |= hit;
    }
    // Exactly as much padding as `pad` adds: never a whole extra block.
    let minimal = (terminator_at / PADDING_BLOCK_SIZE + 1) * PADDING_BLOCK_SIZE == padded.len();
    if found == 0 || bad != 0 || !minimal {
        return Err(PaddingError::Malformed);
    }
    Ok(&padded[..terminator_at])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(pad(&[]).len(), 160);
        assert_eq!(pad(&[1; 159]).len(), 160);
        assert_eq!(pad(&[1; 160]).len(), 320);
        assert_eq!(pad(&[1; 161]).len(), 320);
        assert_eq!(unpad(&pad(&[])), Ok(&[][..]));
    }

    #[test]
    fn strictness() {
        assert_eq!(unpad(&[]), Err(PaddingError::BadLength(0)));
        assert_eq!(unpad(&[0; 159]), Err(PaddingError::BadLength(159)));
        assert_eq!(unpad(&[0; 160]), Err(PaddingError::Malformed));
        let mut p = pad(b"hello");
        p[159] = 1;
        assert_eq!(unpad(&p), Err(PaddingError::Malformed));
        // Content that itself ends in 0x80 keeps it.
        assert_eq!(unpad(&pad(&[0x80, 0x80])), Ok(&[0x80, 0x80][..]));
        // More padding than `pad` adds is refused, so `pad(unpad(x)) == x` always holds.
        let mut long = vec![0u8; 320];
        long[0] = 0x80;
        assert_eq!(unpad(&long), Err(PaddingError::Malformed));
    }

    proptest! {
        #[test]
        fn pad_then_unpad_is_identity(content in prop::collection::vec(any::<u8>(), 0..700)) {
            let padded = pad(&content);
            prop_assert_eq!(padded.len() % PADDING_BLOCK_SIZE, 0);
            prop_assert_eq!(unpad(&padded), Ok(&content[..]));
        }

        #[test]
        fn no_change_to_the_padding_goes_unnoticed(content in prop::collection::vec(any::<u8>(), 0..400), at in any::<usize>(), bit in 0u8..8) {
            // A flipped padding bit is rejected, or (a zero turned into 0x80) moves the
            // terminator, which changes the result: never the same content silently.
            let mut padded = pad(&content);
            let padding_start = content.len();
            let i = padding_start + at % (padded.len() - padding_start);
            padded[i] ^= 1 << bit;
            prop_assert_ne!(unpad(&padded), Ok(&content[..]));
            if padded[i] != TERMINATOR && i > padding_start {
                prop_assert_eq!(unpad(&padded), Err(PaddingError::Malformed));
            }
        }
    }
}
