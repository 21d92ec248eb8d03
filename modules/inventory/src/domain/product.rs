//! Catalogue values: a SKU is upper-case letters, digits, `.`, `_` or `-`; a product has a
//! name, a description and a price in one currency.

use platform::http::FieldError;
use platform::money::Money;

/// A stock-keeping unit: 1 to 64 of `A-Z 0-9 . _ -`, starting with a letter or digit;
/// compared upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Sku(String);

impl Sku {
    /// # Errors
    /// A sentence saying why the value is not a SKU.
    pub(crate) fn parse(raw: &str) -> Result<Self, &'static str> {
        let sku = raw.trim().to_uppercase();
        let valid_start = sku.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let valid_rest =
            sku.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if sku.is_empty() || sku.len() > 64 || !valid_start || !valid_rest {
            return Err(
                "must be 1 to 64 letters, digits, dots, underscores or hyphens, starting with a letter or digit",
            );
        }
        Ok(Self(sku))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product's editable fields, checked.
#[derive(Debug, Clone)]
pub(crate) struct ProductDraft {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) price: Money,
}

impl ProductDraft {
    /// # Errors
    /// One [`FieldError`] per wrong field.
    pub(crate) fn parse(name: &str, description: &str, price: Money) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut check = |field: &str, ok: bool, message: &str| {
            if !ok {
                errors.push(FieldError {
                    field: field.to_owned(),
                    code: "invalid".to_owned(),
                    message: message.to_owned(),
                });
            }
        };
        let name = name.trim();
        check("name", (1..=200).contains(&name.chars().count()), "must be 1 to 200 characters");
        check("description", description.chars().count() <= 5000, "must be at most 5000 characters");
        check("price.amount", price.amount >= 0, "must not be negative");
        if errors.is_empty() {
            Ok(Self { name: name.to_owned(), description: description.trim().to_owned(), price })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_upper_cased_and_checked() {
        assert_eq!(Sku::parse(" mug-001 ").map(|s| s.as_str().to_owned()), Ok("MUG-001".to_owned()));
        for bad in ["", "-MUG", "MUG 001", "MÜG", &"X".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad}");
        }
    }
}
