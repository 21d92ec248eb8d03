//! Stock (admins): adjustments — goods received, counts corrected, units written off — and
//! the immutable movements every change of on-hand leaves, orders' included.

use axum::extract::State;
use chrono::{DateTime, Utc};
use inventory_contract::ProductId;
use platform::auth::AdminOnly;
use platform::http::pagination::{PageMeta, storable_time};
use platform::http::{
    ApiError, Created, ErrorEnvelope, FieldError, Json, Page, PageQuery, Path, Query, RequestContext,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::InventoryState;
use super::dto::StockView;
use crate::domain::MovementKind;
use crate::domain::{Adjustment, AdjustmentKind};
use crate::service::{Adjusted, AdjustmentError};
use crate::service::{MOVEMENTS_SORTABLE, MovementKey, MovementRow};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "write_off", "quantity": 2, "reason": "Dropped while unpacking"}))]
pub(crate) struct AdjustStockRequest {
    pub(crate) kind: AdjustmentKind,
    /// `receive` and `write_off`: units, more than 0. `correct`: the signed difference a count
    /// found (`-3` for three fewer than recorded), not 0.
    pub(crate) quantity: i64,
    /// Why, for the record: 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    pub(crate) reason: String,
}

/// One change of a product's on-hand. Immutable: the sum of a product's movements is its
/// on-hand.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193b5f2-8a4e-7c3d-9a51-0000000000d1", "kind": "write_off", "quantity": -2, "on_hand_after": 48,
    "reason": "Dropped while unpacking", "order_id": null, "actor": "0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e81",
    "at": "2026-11-21T09:45:00Z"
}))]
pub(crate) struct MovementView {
    pub(crate) id: Uuid,
    pub(crate) kind: MovementKind,
    /// Signed change of on-hand: negative for write-offs, commits and downward corrections.
    pub(crate) quantity: i32,
    pub(crate) on_hand_after: i32,
    pub(crate) reason: String,
    /// The order whose confirmation or cancellation moved the stock.
    pub(crate) order_id: Option<Uuid>,
    /// Who: the admin's user id, or `system:…` for background work; null for the order saga.
    pub(crate) actor: Option<String>,
    pub(crate) at: DateTime<Utc>,
}

impl From<MovementRow> for MovementView {
    fn from(row: MovementRow) -> Self {
        Self {
            id: row.id,
            kind: row.kind,
            quantity: row.quantity,
            on_hand_after: row.on_hand_after,
            reason: row.reason,
            order_id: row.order_id,
            actor: row.actor,
            at: row.at,
        }
    }
}

/// An adjustment's movement and the product's stock after it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "movement": {"id": "0193b5f2-8a4e-7c3d-9a51-0000000000d1", "kind": "write_off", "quantity": -2, "on_hand_after": 48,
                 "reason": "Dropped while unpacking", "order_id": null, "actor": "0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e81",
                 "at": "2026-11-21T09:45:00Z"},
    "stock": {"on_hand": 48, "reserved": 2, "available": 46, "in_stock": true}
}))]
pub(crate) struct AdjustmentView {
    pub(crate) movement: MovementView,
    pub(crate) stock: StockView,
}

/// A page of movements.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MovementPage {
    data: Vec<MovementView>,
    meta: PageMeta,
}

/// Filter, order and page of a product's movements.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListMovementsQuery {
    /// Only movements of this kind.
    pub(crate) kind: Option<MovementKind>,
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
    /// `meta.next_cursor` of the previous page.
    pub(crate) after: Option<String>,
    /// `-at` (default, newest first) or `at`.
    pub(crate) sort: Option<String>,
}

/// Records a stock adjustment of a product (admins): `receive` adds units, `write_off`
/// removes them, `correct` applies the difference a count found. On-hand never falls below
/// the units reserved for orders. With an `Idempotency-Key`, a retry gets the first answer
/// instead of adjusting twice.
#[utoipa::path(post, path = "/products/{id}/stock-adjustments", tag = "stock",
    params(
        ("id" = Uuid, Path, description = "Product id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry replay the first answer"),
    ),
    request_body = AdjustStockRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Recorded: the movement and the stock after it. `Location` is the product", body = inline(platform::http::Envelope<AdjustmentView>),
            headers(("Location" = String, description = "/api/v1/products/{id}"))),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such product, or archived", body = ErrorEnvelope),
        (status = 409, description = "`insufficient_stock`: on-hand would fall below the units reserved, or below zero (`details.available`); nothing was recorded. Or the same Idempotency-Key still in flight", body = ErrorEnvelope),
        (status = 422, description = "`validation_failed` per field (`quantity`, `reason`), a body of the wrong shape or an unknown `kind` (`invalid_body`), or the Idempotency-Key reused with another body", body = ErrorEnvelope),
    ))]
pub(crate) async fn adjust_stock(
    AdminOnly(admin): AdminOnly,
    State(state): State<InventoryState>,
    ctx: RequestContext,
    Path(id): Path<ProductId>,
    Json(body): Json<AdjustStockRequest>,
) -> Result<Created<AdjustmentView>, ApiError> {
    let adjustment = Adjustment::parse(body.kind, body.quantity, &body.reason).map_err(ApiError::validation)?;
    let metadata = ctx.metadata(Some(admin.subject.clone()));
    let Adjusted { movement, levels } = state.service.adjust_stock(id, &adjustment, &admin.subject, &metadata).await?;
    let view = AdjustmentView {
        movement: MovementView::from(movement),
        stock: StockView::new(levels.on_hand, levels.reserved, true),
    };
    Ok(Created::new(format!("/api/v1/products/{id}"), view))
}

/// A product's stock movements, newest first by default (admins); archived products keep
/// their history.
#[utoipa::path(get, path = "/products/{id}/stock-movements", tag = "stock",
    params(("id" = Uuid, Path, description = "Product id"), ListMovementsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of movements", body = MovementPage),
        (status = 400, description = "Bad limit, sort, cursor or kind", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such product", body = ErrorEnvelope),
    ))]
pub(crate) async fn list_movements(
    AdminOnly(_admin): AdminOnly,
    State(state): State<InventoryState>,
    Path(id): Path<ProductId>,
    Query(query): Query<ListMovementsQuery>,
) -> Result<Page<MovementView>, ApiError> {
    let page = PageQuery { limit: query.limit, after: query.after, sort: query.sort }
        .parse::<MovementKey>(MOVEMENTS_SORTABLE, "-at")?;
    if page.after.as_ref().is_some_and(|MovementKey(at, _)| !storable_time(at)) {
        return Err(ApiError::bad_request("invalid_cursor", "The cursor is not one this endpoint issued."));
    }
    let movements =
        state.service.movements(id, query.kind, &page).await?.ok_or_else(|| ApiError::not_found("The product"))?;
    Ok(movements.map(MovementView::from))
}

impl From<AdjustmentError> for ApiError {
    fn from(error: AdjustmentError) -> Self {
        match error {
            AdjustmentError::NotFound => ApiError::not_found("The product"),
            AdjustmentError::Insufficient { available } => ApiError::conflict(
                "insufficient_stock",
                format!(
                    "Only {available} units are available: on-hand cannot fall below the units reserved for orders, nor below zero."
                ),
            )
            .with_details(serde_json::json!({ "available": available })),
            AdjustmentError::TooMany => ApiError::validation(vec![FieldError {
                field: "quantity".to_owned(),
                code: "range".to_owned(),
                message: format!("would take on-hand above {}", i32::MAX),
            }]),
            AdjustmentError::Unexpected(error) => ApiError::internal(error),
        }
    }
}
