//! The payments HTTP API under `/api/v1/payments`: reads for customers and admins, refunds
//! for admins, the sandbox gateway's webhook, and the gateway's circuit breaker state.

mod payments;
mod webhooks;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::middleware::from_fn_with_state;
use platform::auth::JwtVerifier;
use platform::http::{Idempotency, idempotency};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::PaymentsService;

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct PaymentsState {
    pub(crate) service: Arc<PaymentsService>,
    pub(crate) verifier: JwtVerifier,
}

impl FromRef<PaymentsState> for JwtVerifier {
    fn from_ref(state: &PaymentsState) -> Self {
        state.verifier.clone()
    }
}

/// The public routes, relative to `/api/v1`.
pub(crate) fn router(service: Arc<PaymentsService>, verifier: JwtVerifier) -> OpenApiRouter {
    // A refund moves money: it takes an Idempotency-Key, scoped to the caller.
    let idempotent = Idempotency::new(service.pool.clone()).required().scoped_by(verifier.clone());
    let state = PaymentsState { service, verifier };
    let refunding = OpenApiRouter::new()
        .routes(routes!(payments::refund_payment))
        .route_layer(from_fn_with_state(idempotent, idempotency::middleware))
        .with_state(state.clone());
    OpenApiRouter::new()
        .routes(routes!(payments::list_payments))
        .routes(routes!(payments::get_payment))
        .routes(routes!(payments::gateway_status))
        .routes(routes!(payments::acknowledge_payment))
        .routes(routes!(webhooks::sandbox_webhook))
        .with_state(state)
        .merge(refunding)
}
