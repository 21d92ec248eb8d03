//! Money as every module holds it: integer minor units and an ISO 4217 currency, never
//! floats (DESIGN §3). A lightweight type contract crates share.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An ISO 4217 alphabetic code (`EUR`, `USD`): three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "EUR", pattern = "^[A-Z]{3}$")]
pub struct Currency([u8; 3]);

impl Currency {
    /// # Errors
    /// Anything but three ASCII letters (lower case is accepted and upper-cased).
    pub fn parse(code: &str) -> Result<Self, CurrencyError> {
        let bytes = code.trim().as_bytes();
        match bytes {
            [a, b, c] if bytes.iter().all(u8::is_ascii_alphabetic) => {
                Ok(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase(), c.to_ascii_uppercase()]))
            }
            _ => Err(CurrencyError(code.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Always three ASCII letters, by construction.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = CurrencyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.as_str().to_owned()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not an ISO 4217 currency code (three letters, e.g. EUR)")]
pub struct CurrencyError(String);

/// An amount in minor units (cents) of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"amount": 2599, "currency": "EUR"}))]
pub struct Money {
    /// Minor units: 2599 EUR is 25.99 EUR.
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self { amount: 0, currency }
    }

    /// The sum, if the currencies match and it does not overflow.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        (self.currency == other.currency)
            .then(|| self.amount.checked_add(other.amount))
            .flatten()
            .map(|amount| Self { amount, currency: self.currency })
    }

    /// This amount times `factor`, unless it overflows.
    pub fn checked_mul(self, factor: i64) -> Option<Self> {
        self.amount.checked_mul(factor).map(|amount| Self { amount, currency: self.currency })
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.amount < 0 { "-" } else { "" };
        let units = self.amount.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", units / 100, units % 100, self.currency)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn currencies_are_three_letters_upper_cased() {
        assert_eq!(Currency::parse("eur").unwrap().as_str(), "EUR");
        for bad in ["", "EU", "EURO", "E1R", "€€€"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Currency>("\"usd\"").is_ok());
        assert!(serde_json::from_str::<Currency>("\"dollars\"").is_err());
    }

    #[test]
    fn money_adds_only_within_a_currency() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(Money::new(150, eur).checked_add(Money::new(250, eur)), Some(Money::new(400, eur)));
        assert_eq!(Money::new(150, eur).checked_add(Money::new(250, usd)), None);
        assert_eq!(Money::new(i64::MAX, eur).checked_mul(2), None);
        assert_eq!(Money::new(-1205, eur).to_string(), "-12.05 EUR");
    }
}
