//! Email addresses, normalised so that `Alice@Example.com` and `alice@example.com` are the
//! same account.

use validator::ValidateEmail;

/// An email address that parsed: trimmed, lower case, at most 254 characters (RFC 5321).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Email(String);

impl Email {
    /// # Errors
    /// A sentence saying why the address is not one.
    pub(crate) fn parse(raw: &str) -> Result<Self, &'static str> {
        let normalised = raw.trim().to_lowercase();
        if normalised.is_empty() {
            return Err("must not be empty");
        }
        if normalised.chars().count() > 254 {
            return Err("must be at most 254 characters long");
        }
        if !normalised.validate_email() {
            return Err("must be an email address");
        }
        Ok(Self(normalised))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@`.
    pub(crate) fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        assert_eq!(Email::parse("  Alice@Example.COM ").unwrap().as_str(), "alice@example.com");
    }

    #[test]
    fn non_addresses_are_refused() {
        for raw in ["", "   ", "alice", "alice@", "@example.com", "a b@example.com"] {
            assert!(Email::parse(raw).is_err(), "{raw:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
