//! The inventory HTTP API: the catalogue under `/api/v1/products` (public reads, admin
//! writes) and stock adjustments and movements under each product (admins).

mod dto;
mod internal;
mod products;
mod stock;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::middleware::from_fn_with_state;
use platform::auth::JwtVerifier;
use platform::http::{Idempotency, idempotency};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::InventoryService;

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct InventoryState {
    pub(crate) service: Arc<InventoryService>,
    pub(crate) verifier: JwtVerifier,
}

impl FromRef<InventoryState> for JwtVerifier {
    fn from_ref(state: &InventoryState) -> Self {
        state.verifier.clone()
    }
}

pub(crate) use internal::router as internal_router;

/// The public routes, relative to `/api/v1`.
pub(crate) fn router(service: Arc<InventoryService>, verifier: JwtVerifier) -> OpenApiRouter {
    // Creating a product and adjusting stock take an Idempotency-Key: a retry gets the first
    // answer instead of, say, counting a receipt twice.
    let idempotent = Idempotency::new(service.pool.clone()).scoped_by(verifier.clone());
    let state = InventoryState { service, verifier };
    let creating = OpenApiRouter::new()
        .routes(routes!(products::create_product))
        .route_layer(from_fn_with_state(idempotent.clone(), idempotency::middleware))
        .with_state(state.clone());
    let adjusting = OpenApiRouter::new()
        .routes(routes!(stock::adjust_stock))
        .route_layer(from_fn_with_state(idempotent, idempotency::middleware))
        .with_state(state.clone());
    OpenApiRouter::new()
        .routes(routes!(products::list_products))
        .routes(routes!(products::get_product, products::update_product, products::archive_product))
        .routes(routes!(stock::list_movements))
        .with_state(state)
        .merge(creating)
        .merge(adjusting)
}
