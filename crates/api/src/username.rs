//! What a username may be.

use crate::USERNAME_LEN;

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsernameError {
    /// Shorter or longer than [`USERNAME_LEN`] allows.
    #[error("a username has {min} to {max} characters, this one has {actual}")]
    Length {
        /// The fewest allowed.
        min: usize,
        /// The most allowed.
        max: usize,
        /// What was given.
        actual: usize,
    },
    /// A character other than `a`–`z`, `0`–`9`, `_`, `.`, `-`.
    #[error("a username may contain only a-z, 0-9, '_', '.' and '-'")]
    Character,
    /// Does not start with a letter.
    #[error("a username starts with a letter a-z")]
    Start,
}

/// Checks a username: 3 to 32 characters from `a`–`z`, `0`–`9`, `_`, `.`, `-`, starting with a
/// letter. Usernames are compared as given; there is no case folding because upper case is
/// refused.
pub fn validate_username(name: &str) -> Result<(), UsernameError> {
    let len = name.len();
    if !USERNAME_LEN.contains(&len) {
        return Err(UsernameError::Length {
            min: *USERNAME_LEN.start(),
            max: *USERNAME_LEN.end(),
            actual: name.chars().count(),
        });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(UsernameError::Character);
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return Err(UsernameError::Start);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        assert_eq!(validate_username("alice"), Ok(()));
        assert_eq!(validate_username("bob_2.x-y"), Ok(()));
        assert!(matches!(
            validate_username("al"),
            Err(UsernameError::Length { actual: 2, .. })
        ));
        assert!(matches!(
            validate_username(&"a".repeat(33)),
            Err(UsernameError::Length { .. })
        ));
        assert_eq!(validate_username("Alice"), Err(UsernameError::Character));
        assert_eq!(validate_username("al ice"), Err(UsernameError::Character));
        assert_eq!(validate_username("ålice"), Err(UsernameError::Character));
        assert_eq!(validate_username("1alice"), Err(UsernameError::Start));
        assert_eq!(validate_username("_alice"), Err(UsernameError::Start));
    }
}
