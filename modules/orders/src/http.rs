//! The orders HTTP API under `/api/v1/orders`.

mod dto;
mod orders;
mod stream;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::middleware::from_fn_with_state;
use platform::auth::{JwtVerifier, Principal};
use platform::bus::listener::Wakeups;
use platform::http::{ApiError, Idempotency, idempotency};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::service::OrdersService;

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct OrdersState {
    pub(crate) service: Arc<OrdersService>,
    pub(crate) verifier: JwtVerifier,
    /// The bus's wake-ups, so an order's event stream hears of its changes (`None`: it polls).
    pub(crate) news: Option<Wakeups>,
}

impl FromRef<OrdersState> for JwtVerifier {
    fn from_ref(state: &OrdersState) -> Self {
        state.verifier.clone()
    }
}

/// The public routes, relative to `/api/v1`.
pub(crate) fn router(service: Arc<OrdersService>, verifier: JwtVerifier, news: Option<Wakeups>) -> OpenApiRouter {
    // Cancelling can move money (a refund): a retry with the same key gets the first answer.
    let optionally_idempotent = Idempotency::new(service.pool.clone()).scoped_by(verifier.clone());
    let state = OrdersState { service, verifier, news };
    let cancelling = OpenApiRouter::new()
        .routes(routes!(orders::cancel_order))
        .route_layer(from_fn_with_state(optionally_idempotent, idempotency::middleware))
        .with_state(state.clone());
    OpenApiRouter::new()
        // Placing an order takes an Idempotency-Key, but no idempotency record: the order row
        // keeps the caller's key and the request's digest, written in the placement's own
        // transaction, so a retry gets the same order (ADR 0028).
        .routes(routes!(orders::place_order))
        .routes(routes!(orders::list_orders))
        .routes(routes!(orders::get_order))
        .routes(routes!(orders::ship_order))
        .routes(routes!(orders::deliver_order))
        .routes(routes!(stream::order_events))
        .with_state(state)
        .merge(cancelling)
}

/// The caller's user id (the token subject), if it is one.
pub(crate) fn user_of(principal: &Principal) -> Result<Uuid, ApiError> {
    principal.subject.parse().map_err(|_| ApiError::forbidden())
}
