//! Catalogue values: a product has a name, a description and a price in one currency. Its SKU
//! is the contract's [`inventory_contract::Sku`], so orders and inventory parse it alike.

use platform::http::FieldError;
use platform::money::Money;

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
