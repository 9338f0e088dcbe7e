use std::fmt;

use super::ValidationError;

/// The id of a customer project: 1–128 characters of `A-Za-z0-9._-`.
///
/// The id becomes part of a Secrets Manager secret name and a Datadog tag, so the alphabet is
/// kept to characters that are safe in both without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(String);

pub const PROJECT_ID_MAX_LEN: usize = 128;

impl ProjectId {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        if value.is_empty() || value.len() > PROJECT_ID_MAX_LEN {
            return Err(ValidationError::new(
                "project_id",
                format!("must be 1 to {PROJECT_ID_MAX_LEN} characters long"),
            ));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(ValidationError::new(
                "project_id",
                "may only contain the characters A-Z, a-z, 0-9, '.', '_' and '-'",
            ));
        }
        if value.bytes().all(|b| b == b'.') {
            // `.` and `..` are path segments with a meaning of their own.
            return Err(ValidationError::new(
                "project_id",
                "must not consist of dots only (such as . or ..)",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["project-test-1234", "a", "A.b_c-9", &"x".repeat(128)] {
            assert!(ProjectId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_empty_long_and_foreign_characters() {
        for bad in [
            "",
            &"x".repeat(129),
            "a/b",
            "a b",
            "ü",
            "a:b",
            "../etc",
            ".",
            "..",
            "...",
        ] {
            assert!(ProjectId::parse(bad).is_err(), "{bad}");
        }
    }
}
