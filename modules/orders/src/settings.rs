//! The orders module's settings as flags and environment variables, known only to binaries
//! that compile the module in.

use std::time::Duration;

use platform::settings::duration_in;

use crate::OrdersConfig;

/// `BULKHEAD_ORDERS_PAYMENT_TIMEOUT`.
#[derive(Debug, Clone, clap::Args)]
pub struct OrdersArgs {
    /// How long an order whose stock is reserved waits for payment before it is cancelled.
    #[arg(long, env = "BULKHEAD_ORDERS_PAYMENT_TIMEOUT", default_value = "15m", global = true, value_parser = |v: &str| duration_in(v, "BULKHEAD_ORDERS_PAYMENT_TIMEOUT", Some(Duration::from_secs(1)), None))]
    pub orders_payment_timeout: Duration,
}

impl OrdersArgs {
    pub fn config(&self) -> OrdersConfig {
        OrdersConfig { payment_timeout: self.orders_payment_timeout, ..OrdersConfig::default() }
    }
}
