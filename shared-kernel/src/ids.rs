//! Ids that more than one contract carries: a product (owned by inventory) and a payment
//! (owned by payments). They live here because a contract may depend on the shared kernel
//! only, never on another contract (DESIGN §1), and orders' events name both; the owning
//! contracts re-export them (`inventory_contract::ProductId`, `payments_contract::PaymentId`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A product's id, as inventory gave it. On the wire it is the plain UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Uuid)]
pub struct ProductId(Uuid);

/// A payment's id, as payments gave it. On the wire it is the plain UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Uuid)]
pub struct PaymentId(Uuid);

macro_rules! uuid_id {
    ($id:ident) => {
        impl $id {
            /// A new, time-ordered id (UUID v7).
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The UUID, for a store column or a log field.
            #[must_use]
            pub fn into_inner(self) -> Uuid {
                self.0
            }
        }

        impl Default for $id {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $id {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$id> for Uuid {
            fn from(id: $id) -> Self {
                id.0
            }
        }

        impl std::fmt::Display for $id {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(ProductId);
uuid_id!(PaymentId);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn an_id_on_the_wire_is_its_uuid() {
        let raw = Uuid::from_u128(0xaa);
        let product = ProductId::from(raw);
        assert_eq!(serde_json::to_value(product).unwrap(), serde_json::json!(raw.to_string()));
        assert_eq!(serde_json::from_value::<PaymentId>(serde_json::json!(raw)).unwrap().into_inner(), raw);
        assert_eq!(product.to_string(), raw.to_string());
        assert!(serde_json::from_value::<ProductId>(serde_json::json!("not-a-uuid")).is_err());
    }
}
