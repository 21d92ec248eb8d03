//! The server side of the inventory port (`/internal/inventory/v1`,
//! `inventory_contract::internal_api`), for processes that do not host inventory: the same
//! service in-process callers use. The app mounts it behind service tokens, so only the
//! modules in `inventory_contract::CALLERS` get here.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use inventory_contract::internal_api::QuoteRequest;
use inventory_contract::{InventoryApi, InventoryError, Quote};
use platform::http::{ApiError, Data, Envelope, ErrorEnvelope, Json};
use platform::remote::PortCall;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The internal routes, relative to `/internal/inventory/v1`.
pub(crate) fn router(port: Arc<dyn InventoryApi>) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(quote)).with_state(port)
}

/// Prices lines at current prices and says, per line, what stands in the way
/// ([`InventoryApi::quote`]).
#[utoipa::path(post, path = "/quote", tag = "inventory port", request_body = QuoteRequest,
    responses(
        (status = 200, description = "The quote, with the problems of lines that cannot be ordered", body = inline(Envelope<Quote>)),
        (status = 400, description = "Malformed JSON", body = ErrorEnvelope),
        (status = 401, description = "No valid service token", body = ErrorEnvelope),
        (status = 403, description = "The calling module does not declare this port", body = ErrorEnvelope),
        (status = 503, description = "The catalogue cannot be read now", body = ErrorEnvelope),
    ))]
async fn quote(
    State(port): State<Arc<dyn InventoryApi>>,
    PortCall(ctx): PortCall,
    Json(request): Json<QuoteRequest>,
) -> Result<Data<Quote>, ApiError> {
    port.quote(&ctx, &request.lines).await.map(Data).map_err(|error| match error {
        InventoryError::Unavailable(reason) => {
            ApiError::unavailable("inventory_unavailable", "The catalogue cannot be read now.", Duration::from_secs(1))
                .with_source(anyhow::anyhow!(reason))
        }
        InventoryError::Timeout => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", "No answer in time."),
        InventoryError::Unexpected(reason) => ApiError::internal(anyhow::anyhow!(reason)),
    })
}
