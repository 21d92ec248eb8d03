//! A webhook endpoint's state: it receives deliveries while `enabled`, and is `disabled` by
//! too many failed attempts in a row until an admin enables it again.

use serde::{Deserialize, Serialize};

/// An endpoint's status, as its column holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub(crate) enum EndpointStatus {
    Enabled,
    Disabled,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialize_as_their_column_values() {
        assert_eq!(serde_json::to_value(EndpointStatus::Enabled).ok(), Some(serde_json::json!("enabled")));
        assert_eq!(serde_json::to_value(EndpointStatus::Disabled).ok(), Some(serde_json::json!("disabled")));
    }
}
