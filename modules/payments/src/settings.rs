//! The payments module's settings as flags and environment variables, known only to
//! binaries that compile the module in, and the gateway they choose.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use platform::settings::{duration_in, duration_or_zero_in, http_url};
use secrecy::SecretString;
use sqlx::PgPool;

use crate::gateway::{SandboxConfig, SandboxGateway, WebhookTarget};
use crate::{PaymentGateway, PaymentsConfig, SANDBOX_WEBHOOK_PATH};

/// The payment gateways built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GatewayKind {
    Sandbox,
}

/// `BULKHEAD_PAYMENTS_*`.
#[derive(Debug, Clone, clap::Args)]
pub struct PaymentsArgs {
    /// The payment gateway payments calls. `sandbox` (the only one built in) behaves like a
    /// card processor's test mode: the payment method token picks the outcome (docs/payments.md).
    #[arg(long, env = "BULKHEAD_PAYMENTS_GATEWAY", default_value = "sandbox", global = true, value_enum)]
    pub payments_gateway: GatewayKind,

    /// Time added to every sandbox gateway call, as a real network and processor would (`0`:
    /// none, for measuring Bulkhead's own overhead).
    #[arg(long, env = "BULKHEAD_PAYMENTS_SANDBOX_LATENCY", default_value = "50ms", global = true, value_parser = |v: &str| duration_or_zero_in(v, "BULKHEAD_PAYMENTS_SANDBOX_LATENCY", Some(Duration::from_secs(60))))]
    pub payments_sandbox_latency: Duration,

    /// Longest a gateway call may take before it counts as a timeout (and is retried with the
    /// same idempotency key).
    #[arg(long, env = "BULKHEAD_PAYMENTS_GATEWAY_TIMEOUT", default_value = "10s", global = true, value_parser = |v: &str| duration_in(v, "BULKHEAD_PAYMENTS_GATEWAY_TIMEOUT", Some(Duration::from_millis(100)), None))]
    pub payments_gateway_timeout: Duration,

    /// A payment pending or authorized for longer than this is looked up at the gateway and
    /// settled (reconciliation runs every minute).
    #[arg(long, env = "BULKHEAD_PAYMENTS_RECONCILE_AFTER", default_value = "5m", global = true, value_parser = |v: &str| duration_in(v, "BULKHEAD_PAYMENTS_RECONCILE_AFTER", Some(Duration::from_secs(1)), None))]
    pub payments_reconcile_after: Duration,

    /// Secret of the gateway's webhook signatures (default: one generated at start, which
    /// suits one process; replicas must share one).
    #[arg(long, env = "BULKHEAD_PAYMENTS_WEBHOOK_SECRET", global = true, hide_env_values = true, value_parser = parse_webhook_secret)]
    pub payments_webhook_secret: Option<SecretString>,

    /// Where the sandbox gateway delivers its webhooks (default: this process's own address).
    #[arg(long, env = "BULKHEAD_PAYMENTS_WEBHOOK_URL", global = true, value_parser = |v: &str| http_url(v, "BULKHEAD_PAYMENTS_WEBHOOK_URL").map(String::from))]
    pub payments_webhook_url: Option<String>,
}

impl PaymentsArgs {
    /// The configured gateway and the module's configuration. The sandbox keeps its books
    /// through `pool` (in its own schema, ADR 0021) and delivers its webhooks to this process (listening on `addr`) unless `BULKHEAD_PAYMENTS_WEBHOOK_URL`
    /// says otherwise.
    pub fn gateway_and_config(&self, pool: PgPool, addr: SocketAddr) -> (Arc<dyn PaymentGateway>, PaymentsConfig) {
        let secret = self.payments_webhook_secret.clone().unwrap_or_else(|| {
            let generated = format!("whsec_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            SecretString::from(generated)
        });
        let gateway: Arc<dyn PaymentGateway> = match self.payments_gateway {
            GatewayKind::Sandbox => {
                let sandbox = SandboxGateway::new(
                    pool,
                    SandboxConfig { latency: self.payments_sandbox_latency, ..SandboxConfig::default() },
                );
                let url = self.payments_webhook_url.clone().unwrap_or_else(|| {
                    let mut addr = addr;
                    if addr.ip().is_unspecified() {
                        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    format!("http://{addr}{SANDBOX_WEBHOOK_PATH}")
                });
                sandbox.set_webhook_target(WebhookTarget { url, secret: secret.clone() });
                Arc::new(sandbox)
            }
        };
        let mut config = PaymentsConfig::new(secret);
        config.gateway_timeout = self.payments_gateway_timeout;
        config.reconcile_after = self.payments_reconcile_after;
        (gateway, config)
    }
}

fn parse_webhook_secret(value: &str) -> Result<SecretString, String> {
    if value.chars().count() < 16 {
        return Err("BULKHEAD_PAYMENTS_WEBHOOK_SECRET must be at least 16 characters".to_owned());
    }
    Ok(SecretString::from(value.to_owned()))
}
