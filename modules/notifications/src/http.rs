//! The notifications HTTP API under `/api/v1`: people's notification history and the admins'
//! view and retries (`/notifications`), and webhook endpoints with their deliveries
//! (`/webhook-endpoints`, admins only: they are system integrations, ADR 0013).

mod dto;
mod notifications;
mod webhook_endpoints;

use std::sync::Arc;

use axum::extract::FromRef;
use platform::auth::{JwtVerifier, Principal};
use platform::http::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::service::NotificationsService;

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct NotificationsState {
    pub(crate) service: Arc<NotificationsService>,
    pub(crate) verifier: JwtVerifier,
}

impl FromRef<NotificationsState> for JwtVerifier {
    fn from_ref(state: &NotificationsState) -> Self {
        state.verifier.clone()
    }
}

/// The public routes, relative to `/api/v1`.
pub(crate) fn router(service: Arc<NotificationsService>, verifier: JwtVerifier) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(notifications::list_notifications))
        .routes(routes!(notifications::get_notification))
        .routes(routes!(notifications::retry_notification))
        .routes(routes!(webhook_endpoints::create_endpoint, webhook_endpoints::list_endpoints))
        .routes(routes!(webhook_endpoints::get_endpoint, webhook_endpoints::delete_endpoint))
        .routes(routes!(webhook_endpoints::enable_endpoint))
        .routes(routes!(webhook_endpoints::list_deliveries))
        .routes(routes!(webhook_endpoints::get_delivery))
        .routes(routes!(webhook_endpoints::redeliver))
        .with_state(NotificationsState { service, verifier })
}

/// The caller's user id (the token subject), if it is one.
pub(crate) fn user_of(principal: &Principal) -> Result<Uuid, ApiError> {
    principal.subject.parse().map_err(|_| ApiError::forbidden())
}
