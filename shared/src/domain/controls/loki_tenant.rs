//! `tenant_id` of a Grafana Loki destination: the tenant a push is written to, sent as the
//! [`TENANT_HEADER`] header, for a Loki run in multi-tenant mode.
//!
//! Loki's tenant ID rules (Grafana Loki "Multi-tenancy"; the same as Cortex and Mimir): 1 to
//! [`MAX_TENANT_ID_LEN`] bytes of `A-Z a-z 0-9 ! - _ . * ' ( )`, and neither `.` nor `..`,
//! which would name a directory once the ID becomes a path in object storage.

use std::fmt;

use crate::domain::ValidationError;

/// The header Loki reads the tenant from.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";
/// Loki's bound on a tenant ID.
pub const MAX_TENANT_ID_LEN: usize = 150;

const FIELD: &str = "tenant_id";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LokiTenantId(String);

impl LokiTenantId {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        if value.is_empty() || value.len() > MAX_TENANT_ID_LEN {
            return Err(ValidationError::new(
                FIELD,
                format!("must be 1 to {MAX_TENANT_ID_LEN} bytes"),
            ));
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"!-_.*'()".contains(&b);
        if !value.bytes().all(allowed) {
            return Err(ValidationError::new(
                FIELD,
                "may hold only A-Z, a-z, 0-9 and ! - _ . * ' ( ) (Loki's tenant ID rules)",
            ));
        }
        if value == "." || value == ".." {
            return Err(ValidationError::new(FIELD, "must not be . or .."));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LokiTenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_follow_lokis_rules() {
        let longest = "t".repeat(MAX_TENANT_ID_LEN);
        let too_long = "t".repeat(MAX_TENANT_ID_LEN + 1);
        for (value, accepted) in [
            ("acme", true),
            ("Acme-Prod_1", true),
            ("a!b-c_d.e*f'g(h)", true),
            ("...", true),
            (".hidden", true),
            (longest.as_str(), true),
            ("", false),
            (too_long.as_str(), false),
            (".", false),
            ("..", false),
            ("acme prod", false),
            ("acme/prod", false),
            ("acme|other", false),
            ("acme:prod", false),
            ("tenant\u{e9}", false),
            ("acme\n", false),
        ] {
            let parsed = LokiTenantId::parse(value);
            assert_eq!(parsed.is_ok(), accepted, "{value:?}");
            if let Err(err) = parsed {
                assert_eq!(err.field, "tenant_id");
            }
        }
        assert_eq!(LokiTenantId::parse("acme").unwrap().as_str(), "acme");
    }
}
