//! Placing, reading, cancelling, shipping and delivering orders.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use inventory_contract::{LineProblemKind, ProductId, ProductRef, Quantity, Sku};
use orders_contract::OrderId;
use platform::auth::{AdminOnly, Authenticated, Principal, Role};
use platform::http::idempotency::IDEMPOTENT_REPLAYED;
use platform::http::pagination::{PageMeta, storable_time};
use platform::http::{
    ApiError, Created, Data, ErrorEnvelope, FieldError, IdempotencyKey, Json, Page, PageQuery, Path, Query,
    RequestContext,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::dto::{LineInput, ListOrdersQuery, OrderSummary, OrderView, PlaceOrderRequest, ShipRequest};
use super::{OrdersState, user_of};
use crate::domain::SagaInput;
use crate::service::{LineRequest, ListFilter, ListKey, PlaceOrder, PlaceOrderError, Placed, SORTABLE, SagaError};

const MAX_LINES: usize = 50;
const MAX_QUANTITY: i64 = 100;

/// Places an order. Prices come from the catalogue at this moment; the order starts `pending`
/// while stock is reserved, then awaits payment (docs/saga.md). `Idempotency-Key` is required:
/// a retry with the same key and body answers with the same order, as it stands now, marked
/// `Idempotent-Replayed: true`, even while the first request still runs (it waits for it);
/// another body is 422. A refused placement writes nothing, so its retry is judged afresh.
#[utoipa::path(post, path = "/orders", tag = "orders",
    request_body = PlaceOrderRequest,
    params(("Idempotency-Key" = String, Header, description = "Required; a retry with the same key gets the same order")),
    // The order row keeps the key (ADR 0028): a retry waits for the first request, never 409.
    extensions(("x-idempotency-kept-by-resource" = json!(true))),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Placed; the saga continues. `Location` is the order", body = inline(platform::http::Envelope<OrderView>),
            headers(("Location" = String, description = "/api/v1/orders/{id}"))),
        (status = 400, description = "`idempotency_key_required`", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not a customer", body = ErrorEnvelope),
        (status = 422, description = "Invalid lines, address or payment method (`validation_failed`), lines that cannot be ordered (`unorderable_lines`, per line in `details`), or the key reused with another body", body = ErrorEnvelope),
        (status = 503, description = "The catalogue cannot be reached; nothing was written. `Retry-After` says when to retry", body = ErrorEnvelope),
    ))]
pub(crate) async fn place_order(
    Authenticated(principal): Authenticated,
    State(state): State<OrdersState>,
    ctx: RequestContext,
    key: IdempotencyKey,
    Json(body): Json<PlaceOrderRequest>,
) -> Result<(HeaderMap, Created<OrderView>), ApiError> {
    if !principal.roles.contains(&Role::Customer) {
        return Err(ApiError::forbidden());
    }
    let request = body.try_into_domain(user_of(&principal)?, key.into_inner())?;
    let mut headers = HeaderMap::new();
    let id = match state.service.place_order(request, &ctx).await? {
        Placed::New(id) => id,
        Placed::Again(id) => {
            headers.insert(IDEMPOTENT_REPLAYED.clone(), HeaderValue::from_static("true"));
            id
        }
    };
    let order = read(&state, id.0).await?;
    Ok((headers, Created::accepted(format!("/api/v1/orders/{id}"), order)))
}

impl PlaceOrderRequest {
    /// The one conversion of a request body into the use case's command: every field checked,
    /// all problems reported at once (422, per field).
    fn try_into_domain(self, user_id: Uuid, idempotency_key: String) -> Result<PlaceOrder, ApiError> {
        validate(user_id, idempotency_key, self)
    }
}

fn validate(user_id: Uuid, idempotency_key: String, body: PlaceOrderRequest) -> Result<PlaceOrder, ApiError> {
    let mut errors = Vec::new();
    let mut field = |field: String, code: &str, message: &str| {
        errors.push(FieldError { field, code: code.to_owned(), message: message.to_owned() });
    };
    if body.lines.is_empty() || body.lines.len() > MAX_LINES {
        field("lines".to_owned(), "length", "must hold 1 to 50 lines");
    }
    let mut seen = HashSet::new();
    let mut lines = Vec::new();
    for (index, LineInput { product_id, sku, quantity }) in body.lines.into_iter().enumerate() {
        let product = match (product_id, sku.map(|s| s.trim().to_owned())) {
            (Some(id), None) => Some(ProductRef::Id(ProductId::from(id))),
            // The catalogue's own rule (the contract's `Sku`), not a looser one of ours.
            (None, Some(sku)) => match Sku::parse(&sku) {
                Ok(sku) => Some(ProductRef::Sku(sku)),
                Err(message) => {
                    field(format!("lines[{index}].sku"), "invalid", message);
                    None
                }
            },
            _ => {
                field(
                    format!("lines[{index}]"),
                    "product",
                    "must name the product by `product_id` or by `sku`, not both",
                );
                None
            }
        };
        let quantity = match Quantity::try_from(quantity) {
            Ok(quantity) if (1..=MAX_QUANTITY).contains(&i64::from(quantity)) => Some(quantity),
            _ => {
                field(format!("lines[{index}].quantity"), "range", "must be between 1 and 100");
                None
            }
        };
        if let Some(product) = product {
            if !seen.insert(product.clone()) {
                let repeated = repeated_line(format!("lines[{index}]"));
                field(repeated.field, &repeated.code, &repeated.message);
            }
            if let Some(quantity) = quantity {
                lines.push(LineRequest { product, quantity });
            }
        }
    }
    let method = body.payment_method.trim().to_owned();
    if method.is_empty() || method.len() > 200 || method.chars().any(char::is_whitespace) {
        field(
            "payment_method".to_owned(),
            "invalid",
            "must be a payment method token (1 to 200 characters, no spaces)",
        );
    }
    let address = body.shipping_address.parse("shipping_address").map_err(|fields| errors.extend(fields)).ok();
    match address {
        Some(shipping_address) if errors.is_empty() => {
            Ok(PlaceOrder { user_id, lines, shipping_address, payment_method: method, idempotency_key })
        }
        _ => {
            errors.sort_by(|a, b| a.field.cmp(&b.field));
            Err(ApiError::validation(errors))
        }
    }
}

/// A line naming a product another line names: as written (two lines with one SKU), or once
/// resolved (by id on one line, by SKU on another), answered alike.
fn repeated_line(field: String) -> FieldError {
    FieldError { field, code: "duplicate".to_owned(), message: "names a product already on another line".to_owned() }
}

impl From<PlaceOrderError> for ApiError {
    fn from(error: PlaceOrderError) -> Self {
        place_error(error)
    }
}

impl From<SagaError> for ApiError {
    fn from(error: SagaError) -> Self {
        match error {
            SagaError::NotFound => ApiError::not_found("The order"),
            SagaError::Transition(error) => ApiError::conflict("invalid_transition", format!("{error}."))
                .with_details(serde_json::json!({ "status": error.from })),
            SagaError::Unexpected(error) => ApiError::internal(error),
        }
    }
}

fn place_error(error: PlaceOrderError) -> ApiError {
    match error {
        PlaceOrderError::Lines(problems) => {
            let details: Vec<serde_json::Value> = problems
                .iter()
                .map(|p| {
                    let (code, message) = match p.kind {
                        LineProblemKind::UnknownProduct => ("unknown_product", "No such product."),
                        LineProblemKind::InactiveProduct => ("inactive_product", "This product is not for sale."),
                        LineProblemKind::CurrencyMismatch => {
                            ("currency_mismatch", "Priced in another currency than the rest of the order.")
                        }
                    };
                    serde_json::json!({ "field": format!("lines[{}]", p.line), "code": code, "message": message })
                })
                .collect();
            ApiError::unprocessable("unorderable_lines", "Some lines cannot be ordered as asked.").with_details(details)
        }
        PlaceOrderError::RepeatedProducts(lines) => {
            ApiError::validation(lines.into_iter().map(|index| repeated_line(format!("lines[{index}]"))).collect())
        }
        PlaceOrderError::InventoryUnavailable { retry_after } => ApiError::unavailable(
            "inventory_unavailable",
            "The catalogue cannot be reached right now; nothing was ordered. Try again shortly.",
            retry_after,
        ),
        PlaceOrderError::TooLarge => ApiError::unprocessable("order_too_large", "The order's amounts are too large."),
        PlaceOrderError::KeyReused => ApiError::unprocessable(
            "idempotency_key_reused",
            "This Idempotency-Key was used for a different order; use a new key for a new order.",
        ),
        PlaceOrderError::Unexpected(error) => ApiError::internal(error),
    }
}

async fn read(state: &OrdersState, id: Uuid) -> Result<OrderView, ApiError> {
    let order = state.service.order(id).await?.ok_or_else(|| ApiError::not_found("The order"))?;
    Ok(OrderView::try_from(order)?)
}

/// The order if the caller may see it (its customer, or an admin); 404 otherwise, so ids of
/// other people's orders are not confirmed.
async fn visible(state: &OrdersState, principal: &Principal, id: Uuid) -> Result<OrderView, ApiError> {
    let order = read(state, id).await?;
    if principal.is_admin() || principal.subject == order.user_id.to_string() {
        Ok(order)
    } else {
        Err(ApiError::not_found("The order"))
    }
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderPage {
    data: Vec<OrderSummary>,
    meta: PageMeta,
}

/// Lists orders, newest first by default: a customer's own; for admins everyone's, filtered
/// by status, customer and creation time.
#[utoipa::path(get, path = "/orders", tag = "orders",
    params(ListOrdersQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of orders", body = OrderPage),
        (status = 400, description = "Bad limit, sort, cursor or filter", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "`user_id` filter from a non-admin for another customer", body = ErrorEnvelope),
    ))]
pub(crate) async fn list_orders(
    Authenticated(principal): Authenticated,
    State(state): State<OrdersState>,
    Query(query): Query<ListOrdersQuery>,
) -> Result<Page<OrderSummary>, ApiError> {
    let page = PageQuery { limit: query.limit, after: query.after, sort: query.sort }
        .parse::<ListKey>(SORTABLE, "-created_at")?;
    let page = page.one_sort_field("Orders", SORTABLE)?;
    let by_total = page.sort.keys().first().is_some_and(|k| k.field == "total");
    let cursor_out_of_range = matches!(&page.after, Some(ListKey::CreatedAt(at, _)) if !storable_time(at));
    if cursor_out_of_range
        || matches!((&page.after, by_total), (Some(ListKey::CreatedAt(..)), true) | (Some(ListKey::Total(..)), false))
    {
        return Err(ApiError::bad_request("invalid_cursor", "The cursor was issued for a different sort order."));
    }
    for (name, time) in [("created_from", query.created_from), ("created_before", query.created_before)] {
        if time.is_some_and(|t| !storable_time(&t)) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("`{name}` must be a time between the years 1 and 9999."),
            ));
        }
    }
    let filter = ListFilter {
        user_id: principal.list_scope(query.user_id)?,
        status: query.status,
        created_from: query.created_from,
        created_before: query.created_before,
    };
    Ok(state.service.list_orders(&filter, &page).await?.try_map(OrderSummary::try_from)?)
}

/// One order with its lines, totals and status history: for its customer or an admin.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = inline(platform::http::Envelope<OrderView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 404, description = "No such order, or not yours", body = ErrorEnvelope),
    ))]
pub(crate) async fn get_order(
    Authenticated(principal): Authenticated,
    State(state): State<OrdersState>,
    Path(id): Path<Uuid>,
) -> Result<Data<OrderView>, ApiError> {
    Ok(Data(visible(&state, &principal, id).await?))
}

/// Applies a request to an order in its own transaction.
async fn act(
    state: &OrdersState,
    ctx: &RequestContext,
    actor: &Principal,
    id: Uuid,
    input: SagaInput,
) -> Result<OrderView, ApiError> {
    let metadata = ctx.metadata(Some(actor.subject.clone()));
    state.service.request(OrderId(id), input, &ctx.request_id, &metadata).await?;
    read(state, id).await
}

/// Cancels an order that has not shipped: its stock is released, and a paid order is
/// refunded. For its customer or an admin. With an `Idempotency-Key`, a retry gets the first
/// answer instead of a 409.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders",
    params(
        ("id" = Uuid, Path, description = "Order id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry replay the first answer"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = inline(platform::http::Envelope<OrderView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 404, description = "No such order, or not yours", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`: shipped, delivered, rejected or already cancelled", body = ErrorEnvelope),
    ))]
pub(crate) async fn cancel_order(
    Authenticated(principal): Authenticated,
    State(state): State<OrdersState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Data<OrderView>, ApiError> {
    visible(&state, &principal, id).await?;
    Ok(Data(act(&state, &ctx, &principal, id, SagaInput::CancelRequested).await?))
}

/// Hands a confirmed order to a carrier (admins).
#[utoipa::path(post, path = "/orders/{id}/ship", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    request_body = ShipRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Shipped", body = inline(platform::http::Envelope<OrderView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such order", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`: not confirmed", body = ErrorEnvelope),
        (status = 422, description = "Missing or overlong carrier or tracking number", body = ErrorEnvelope),
    ))]
pub(crate) async fn ship_order(
    AdminOnly(admin): AdminOnly,
    State(state): State<OrdersState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
    Json(body): Json<ShipRequest>,
) -> Result<Data<OrderView>, ApiError> {
    let input = SagaInput::try_from(body)?;
    Ok(Data(act(&state, &ctx, &admin, id, input).await?))
}

impl TryFrom<ShipRequest> for SagaInput {
    type Error = ApiError;

    /// Carrier and tracking number, trimmed, 1 to 100 characters each.
    fn try_from(body: ShipRequest) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        for (field, value) in [("carrier", &body.carrier), ("tracking_number", &body.tracking_number)] {
            let length = value.trim().chars().count();
            if length == 0 || length > 100 {
                errors.push(FieldError {
                    field: field.to_owned(),
                    code: "length".to_owned(),
                    message: "must be 1 to 100 characters".to_owned(),
                });
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        Ok(SagaInput::Ship {
            carrier: body.carrier.trim().to_owned(),
            tracking_number: body.tracking_number.trim().to_owned(),
        })
    }
}

/// Records that a shipped order was delivered (admins).
#[utoipa::path(post, path = "/orders/{id}/deliver", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Delivered", body = inline(platform::http::Envelope<OrderView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such order", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`: not shipped", body = ErrorEnvelope),
    ))]
pub(crate) async fn deliver_order(
    AdminOnly(admin): AdminOnly,
    State(state): State<OrdersState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Data<OrderView>, ApiError> {
    Ok(Data(act(&state, &ctx, &admin, id, SagaInput::Deliver).await?))
}
