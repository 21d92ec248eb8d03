//! The inventory module's settings as flags and environment variables, known only to
//! binaries that compile the module in.

use std::time::Duration;

use platform::settings::duration_in;

use crate::InventoryConfig;

/// `BULKHEAD_INVENTORY_RESERVATION_TTL`, `BULKHEAD_DEMO_DATA`.
#[derive(Debug, Clone, clap::Args)]
pub struct InventoryArgs {
    /// How long a reservation holds an order's units before they are free again (keep it
    /// longer than the payment timeout, so that one normally wins).
    #[arg(long, env = "BULKHEAD_INVENTORY_RESERVATION_TTL", default_value = "30m", global = true, value_parser = |v: &str| duration_in(v, "BULKHEAD_INVENTORY_RESERVATION_TTL", Some(Duration::from_secs(1)), None))]
    pub inventory_reservation_ttl: Duration,

    /// Fill an empty catalogue with demo products and stock on start (`false` to start empty).
    #[arg(long, env = "BULKHEAD_DEMO_DATA", default_value_t = true, global = true, action = clap::ArgAction::Set)]
    pub demo_data: bool,
}

impl InventoryArgs {
    pub fn config(&self) -> InventoryConfig {
        InventoryConfig { reservation_ttl: self.inventory_reservation_ttl }
    }
}
