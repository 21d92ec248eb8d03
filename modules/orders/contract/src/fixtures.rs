//! Fixed orders values for payload snapshots and other modules' tests (feature `testing`),
//! beside `shared_kernel::fixtures`.

use crate::ShippingAddress;

/// The address every snapshot ships to (the OpenAPI example's).
#[must_use]
pub fn shipping_address() -> ShippingAddress {
    ShippingAddress {
        name: "Ada Lovelace".to_owned(),
        line1: "12 St James's Square".to_owned(),
        line2: None,
        city: "London".to_owned(),
        region: None,
        postal_code: "SW1Y 4JH".to_owned(),
        country: "GB".to_owned(),
    }
}
