//! Shipping addresses: checked at the edge, so an order always holds one a carrier can use.

use orders_contract::ShippingAddress;
use platform::http::FieldError;

/// ISO 3166-1 alpha-2 codes of the countries and territories a parcel can go to.
const COUNTRIES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA",
    "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE",
    "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA",
    "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK",
    "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT",
    "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS",
    "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS",
    "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST",
    "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
    "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA",
    "ZM", "ZW",
];

/// An address as a client sends it.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"}))]
pub(crate) struct AddressInput {
    /// Recipient, 1 to 100 characters.
    pub(crate) name: String,
    /// Street and number, 1 to 200 characters.
    pub(crate) line1: String,
    pub(crate) line2: Option<String>,
    pub(crate) city: String,
    pub(crate) region: Option<String>,
    /// 1 to 20 letters, digits, spaces or hyphens.
    pub(crate) postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `GB`.
    pub(crate) country: String,
}

impl AddressInput {
    /// The address, trimmed, or every field that is wrong (paths under `prefix`).
    ///
    /// # Errors
    /// One [`FieldError`] per wrong field.
    pub(crate) fn parse(self, prefix: &str) -> Result<ShippingAddress, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut text = |field: &str, value: &str, max: usize, required: bool| -> Option<String> {
            let trimmed = value.trim();
            let length = trimmed.chars().count();
            let problem = if required && length == 0 {
                Some("is required")
            } else if length > max {
                Some("is too long")
            } else if trimmed.chars().any(char::is_control) {
                Some("must not contain control characters")
            } else {
                None
            };
            match problem {
                Some(message) => {
                    errors.push(FieldError {
                        field: format!("{prefix}.{field}"),
                        code: "invalid".to_owned(),
                        message: format!("{message} (at most {max} characters)"),
                    });
                    None
                }
                None => Some(trimmed.to_owned()),
            }
        };
        let name = text("name", &self.name, 100, true);
        let line1 = text("line1", &self.line1, 200, true);
        let line2 = self.line2.as_deref().map(|l| text("line2", l, 200, false)).unwrap_or(Some(String::new()));
        let city = text("city", &self.city, 100, true);
        let region = self.region.as_deref().map(|r| text("region", r, 100, false)).unwrap_or(Some(String::new()));
        let postal = text("postal_code", &self.postal_code, 20, true);
        let postal_code = postal.filter(|p| {
            let ok = p.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
            if !ok {
                errors.push(FieldError {
                    field: format!("{prefix}.postal_code"),
                    code: "invalid".to_owned(),
                    message: "may hold only letters, digits, spaces and hyphens".to_owned(),
                });
            }
            ok
        });
        let country = self.country.trim().to_ascii_uppercase();
        let country = if COUNTRIES.contains(&country.as_str()) {
            Some(country)
        } else {
            errors.push(FieldError {
                field: format!("{prefix}.country"),
                code: "country".to_owned(),
                message: "must be an ISO 3166-1 alpha-2 country code, e.g. GB".to_owned(),
            });
            None
        };
        match (name, line1, line2, city, region, postal_code, country) {
            (Some(name), Some(line1), Some(line2), Some(city), Some(region), Some(postal_code), Some(country))
                if errors.is_empty() =>
            {
                let optional = |s: String| (!s.is_empty()).then_some(s);
                Ok(ShippingAddress {
                    name,
                    line1,
                    line2: optional(line2),
                    city,
                    region: optional(region),
                    postal_code,
                    country,
                })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> AddressInput {
        AddressInput {
            name: " Ada Lovelace ".to_owned(),
            line1: "12 St James's Square".to_owned(),
            line2: Some("  ".to_owned()),
            city: "London".to_owned(),
            region: None,
            postal_code: "SW1Y 4JH".to_owned(),
            country: "gb".to_owned(),
        }
    }

    #[test]
    fn a_good_address_is_trimmed_and_normalised() {
        let address = valid().parse("shipping_address").ok();
        let address = address.as_ref();
        assert_eq!(address.map(|a| a.name.as_str()), Some("Ada Lovelace"));
        assert_eq!(address.map(|a| a.country.as_str()), Some("GB"));
        assert_eq!(address.and_then(|a| a.line2.clone()), None);
    }

    #[test]
    fn every_wrong_field_is_named() {
        let input = AddressInput {
            name: String::new(),
            postal_code: "SW1Y;4JH".to_owned(),
            country: "XX".to_owned(),
            ..valid()
        };
        let fields: Vec<String> = input.parse("a").err().unwrap_or_default().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["a.name", "a.postal_code", "a.country"]);
    }
}
