//! A string that must never be printed: API keys, passwords, management secrets.
//!
//! `Debug` and `Display` print `***`, and there is deliberately no `Serialize`: the only way
//! to the value is [`Secret::expose`], called where a header is set or a store record written.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

pub const MIN_LEN_TO_SHOW_LAST_FOUR: usize = 12;

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The last four characters, which customers use to tell their keys apart; empty for a
    /// secret shorter than [`MIN_LEN_TO_SHOW_LAST_FOUR`], of which four characters would give
    /// away too much.
    pub fn last_four(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < MIN_LEN_TO_SHOW_LAST_FOUR {
            return String::new();
        }
        chars[chars.len() - 4..].iter().collect()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(Secret(***))");
    }

    #[test]
    fn last_four_is_the_tail_of_long_secrets_only() {
        assert_eq!(Secret::new("abcdefgh0123").last_four(), "0123");
        assert_eq!(Secret::new("abcdefg0123").last_four(), "");
        assert_eq!(Secret::new("ab").last_four(), "");
    }
}
