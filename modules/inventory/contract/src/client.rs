//! The inventory port for processes that do not host inventory: [`InventoryApi`] over the
//! module's internal HTTP API. Transport failures become [`InventoryError::Unavailable`] and
//! [`InventoryError::Timeout`], as the in-process service reports its own, so orders
//! behaves the same in both topologies.

use std::sync::Arc;

use shared_kernel::port::CallContext;
use shared_kernel::port::remote::{RemoteCall, RemoteError, Transport, call_as};

use crate::internal_api::{QUOTE, QuoteRequest};
use crate::{InventoryApi, InventoryError, Quote, QuoteLine};

/// [`InventoryApi`] served by another process.
#[derive(Debug, Clone)]
pub struct InventoryClient {
    transport: Arc<dyn Transport>,
}

impl InventoryClient {
    /// A client sending its calls through `transport` (pointed at the inventory process).
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self { transport }
    }
}

#[async_trait::async_trait]
impl InventoryApi for InventoryClient {
    async fn quote(&self, ctx: &CallContext, lines: &[QuoteLine]) -> Result<Quote, InventoryError> {
        let body = QuoteRequest { lines: lines.to_vec() };
        // A quote reads prices and stock; asking twice is harmless.
        let call = RemoteCall::post("quote", QUOTE, &body).map_err(into_error)?.idempotent(true);
        call_as(self.transport.as_ref(), ctx, call).await.map_err(into_error)
    }
}

fn into_error(error: RemoteError) -> InventoryError {
    match error {
        RemoteError::Unavailable(reason) => InventoryError::Unavailable(reason),
        RemoteError::Timeout => InventoryError::Timeout,
        refused @ (RemoteError::Refused { .. } | RemoteError::Invalid(_)) => {
            InventoryError::Unexpected(refused.to_string())
        }
    }
}
