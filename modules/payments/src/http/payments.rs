//! Reading payments, refunding them, and the gateway's state.

use axum::extract::State;
use chrono::{DateTime, Utc};
use orders_contract::OrderId;
use payments_contract::PaymentId;
use platform::auth::{AdminOnly, Authenticated, Principal};
use platform::http::pagination::{PageMeta, storable_time};
use platform::http::{
    ApiError, Created, Data, ErrorEnvelope, FieldError, IdempotencyKey, Json, Page, PageQuery, Path, Query,
    RequestContext,
};
use platform::money::Money;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::PaymentsState;
use crate::domain::{Balances, PaymentStatus};
use crate::gateway::BreakerState;
use crate::service::refunds::{AdminRefund, RefundError};
use crate::service::{Entry, ListFilter, ListKey, PaymentDetail, PaymentRow, RefundRow};

/// Why a payment failed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Failure {
    /// `card_declined`, `insufficient_funds`, `expired_card`, `invalid_payment_method` or
    /// `processing_error`.
    code: String,
    message: Option<String>,
}

/// A payment in a list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PaymentSummary {
    id: Uuid,
    order_id: Uuid,
    user_id: Uuid,
    status: PaymentStatus,
    amount: Money,
    /// Minor units taken and given back.
    captured: i64,
    refunded: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PaymentRow> for PaymentSummary {
    type Error = anyhow::Error;

    fn try_from(row: PaymentRow) -> anyhow::Result<Self> {
        Ok(Self {
            id: row.id.into_inner(),
            order_id: row.order_id.0,
            user_id: row.user_id,
            status: row.status,
            amount: row.money(row.amount)?,
            captured: row.captured,
            refunded: row.refunded,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Why a person must look at a payment (admins only; ADR 0021), or the acknowledgement that
/// last cleared such a flag.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttentionView {
    /// `reconciliation_gave_up`, `gateway_disagrees`, `release_refused` or `refund_refused`,
    /// with the details; `null` once acknowledged.
    reason: Option<String>,
    since: Option<DateTime<Utc>>,
    acknowledged_at: Option<DateTime<Utc>>,
    acknowledged_by: Option<String>,
    /// The admin's note: how it was settled with the processor.
    acknowledgement: Option<String>,
}

impl AttentionView {
    fn of(row: &PaymentRow) -> Option<Self> {
        (row.attention.is_some() || row.acknowledged_at.is_some()).then(|| Self {
            reason: row.attention.clone(),
            since: row.attention_since,
            acknowledged_at: row.acknowledged_at,
            acknowledged_by: row.acknowledged_by.clone(),
            acknowledgement: row.acknowledgement.clone(),
        })
    }
}

/// A payment with its balances, refunds and ledger.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PaymentView {
    id: Uuid,
    order_id: Uuid,
    user_id: Uuid,
    status: PaymentStatus,
    amount: Money,
    /// The payment method token the order named.
    payment_method: String,
    /// The gateway's id of the authorization.
    gateway_reference: Option<String>,
    failure: Option<Failure>,
    /// The order was cancelled: nothing more will be captured.
    cancel_requested: bool,
    /// The order is cancelled if no payment is captured by then.
    pay_by: DateTime<Utc>,
    /// Sums over the ledger, in minor units.
    balances: Balances,
    /// What an admin may still refund: captured, less refunds pending or done.
    refundable: i64,
    refunds: Vec<RefundRow>,
    ledger: Vec<Entry>,
    /// Admins only: a flag for a person, or its acknowledgement.
    attention: Option<AttentionView>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

async fn read(state: &PaymentsState, id: PaymentId) -> Result<Option<PaymentView>, ApiError> {
    let Some(detail) = state.service.payment(id).await? else { return Ok(None) };
    Ok(Some(PaymentView::try_from(detail)?))
}

impl TryFrom<PaymentDetail> for PaymentView {
    type Error = anyhow::Error;

    fn try_from(detail: PaymentDetail) -> anyhow::Result<Self> {
        let PaymentDetail { payment: row, ledger, balances, refunds, refundable } = detail;
        Ok(Self {
            id: row.id.into_inner(),
            order_id: row.order_id.0,
            user_id: row.user_id,
            status: row.status,
            amount: row.money(row.amount)?,
            payment_method: row.payment_method.clone(),
            gateway_reference: row.gateway_reference.clone(),
            failure: row.failure_code.clone().map(|code| Failure { code, message: row.failure_message.clone() }),
            cancel_requested: row.cancel_requested,
            pay_by: row.pay_by,
            balances,
            refundable,
            refunds,
            ledger,
            attention: AttentionView::of(&row),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn owns(principal: &Principal, user_id: Uuid) -> bool {
    principal.is_admin() || principal.subject == user_id.to_string()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListPaymentsQuery {
    /// The payments of this order.
    order_id: Option<Uuid>,
    status: Option<PaymentStatus>,
    /// Admins only: this customer's payments.
    user_id: Option<Uuid>,
    /// Admins only: `true` for the payments a person must look at (ADR 0021), `false` for
    /// the others.
    needs_attention: Option<bool>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `meta.next_cursor` of the previous page.
    after: Option<String>,
    /// `created_at` or `-created_at` (the default, newest first).
    sort: Option<String>,
}

/// A page of payments.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PaymentPage {
    data: Vec<PaymentSummary>,
    meta: PageMeta,
}

/// Lists payments, newest first: a customer's own (e.g. `?order_id=` for one order's); for
/// admins everyone's, filtered by order, customer, status and whether a person must look.
#[utoipa::path(get, path = "/payments", tag = "payments",
    params(ListPaymentsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of payments", body = PaymentPage),
        (status = 400, description = "Bad limit, sort, cursor or filter", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "`user_id` filter from a non-admin for another customer, or `needs_attention` from a non-admin", body = ErrorEnvelope),
    ))]
pub(crate) async fn list_payments(
    Authenticated(principal): Authenticated,
    State(state): State<PaymentsState>,
    Query(query): Query<ListPaymentsQuery>,
) -> Result<Page<PaymentSummary>, ApiError> {
    let page = PageQuery { limit: query.limit, after: query.after, sort: query.sort }
        .parse::<ListKey>(&["created_at"], "-created_at")?;
    if page.after.as_ref().is_some_and(|ListKey(at, _)| !storable_time(at)) {
        return Err(ApiError::bad_request("invalid_cursor", "The cursor is not one this endpoint issued."));
    }
    if query.needs_attention.is_some() && !principal.is_admin() {
        return Err(ApiError::forbidden());
    }
    let filter = ListFilter {
        user_id: principal.list_scope(query.user_id)?,
        order_id: query.order_id.map(OrderId),
        status: query.status,
        needs_attention: query.needs_attention,
    };
    Ok(state.service.list_payments(&filter, &page).await?.try_map(PaymentSummary::try_from)?)
}

/// One payment with its balances (sums over its ledger), refunds and ledger entries: for its
/// customer or an admin.
#[utoipa::path(get, path = "/payments/{id}", tag = "payments",
    params(("id" = Uuid, Path, description = "Payment id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The payment", body = inline(platform::http::Envelope<PaymentView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 404, description = "No such payment, or not yours", body = ErrorEnvelope),
    ))]
pub(crate) async fn get_payment(
    Authenticated(principal): Authenticated,
    State(state): State<PaymentsState>,
    Path(id): Path<PaymentId>,
) -> Result<Data<PaymentView>, ApiError> {
    match read(&state, id).await? {
        Some(mut payment) if owns(&principal, payment.user_id) => {
            if !principal.is_admin() {
                payment.attention = None;
            }
            Ok(Data(payment))
        }
        _ => Err(ApiError::not_found("The payment")),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"note": "Checked the processor's dashboard: the hold was released on 21 Nov."}))]
pub(crate) struct AcknowledgeBody {
    /// How it was settled with the processor, for the record (1 to 500 characters).
    note: String,
}

/// Clears a payment's flag for a person (ADR 0021) once an admin has settled it with the
/// processor; the note and who wrote it stay on the payment.
#[utoipa::path(post, path = "/payments/{id}/acknowledge", tag = "payments",
    params(("id" = Uuid, Path, description = "Payment id")),
    request_body = AcknowledgeBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Acknowledged: the payment, its flag cleared", body = inline(platform::http::Envelope<PaymentView>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such payment", body = ErrorEnvelope),
        (status = 409, description = "`nothing_to_acknowledge`: the payment is not flagged", body = ErrorEnvelope),
        (status = 422, description = "`validation_failed`: the note is empty or too long", body = ErrorEnvelope),
    ))]
pub(crate) async fn acknowledge_payment(
    AdminOnly(admin): AdminOnly,
    State(state): State<PaymentsState>,
    Path(id): Path<PaymentId>,
    Json(body): Json<AcknowledgeBody>,
) -> Result<Data<PaymentView>, ApiError> {
    let note = body.note.trim();
    if note.is_empty() || note.chars().count() > 500 {
        return Err(ApiError::validation(vec![FieldError {
            field: "note".to_owned(),
            code: "length".to_owned(),
            message: "must be 1 to 500 characters".to_owned(),
        }]));
    }
    if read(&state, id).await?.is_none() {
        return Err(ApiError::not_found("The payment"));
    }
    if !state.service.acknowledge(id, &admin.subject, note, state.service.now()).await? {
        return Err(ApiError::conflict("nothing_to_acknowledge", "This payment is not flagged for attention."));
    }
    let payment = read(&state, id).await?.ok_or_else(|| ApiError::not_found("The payment"))?;
    Ok(Data(payment))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": 1000, "reason": "Damaged in transit: partial refund agreed with the customer"}))]
pub(crate) struct RefundBody {
    /// Minor units of the payment's currency; leave out to refund everything still refundable.
    #[schema(minimum = 1)]
    amount: Option<i64>,
    /// Why, for the record (1 to 500 characters).
    reason: String,
}

/// Refunds a captured payment in full (no `amount`) or in part; several partial refunds may
/// follow each other up to what was captured. The gateway is called by a job: the refund
/// answers `pending` and the payment shows it `succeeded` (or `failed`) shortly after.
#[utoipa::path(post, path = "/payments/{id}/refunds", tag = "payments",
    params(
        ("id" = Uuid, Path, description = "Payment id"),
        ("Idempotency-Key" = String, Header, description = "Required; the same key replays the first answer"),
    ),
    request_body = RefundBody,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Refund recorded and on its way; `Location` is the payment", body = inline(platform::http::Envelope<RefundRow>),
            headers(("Location" = String, description = "/api/v1/payments/{id}"))),
        (status = 400, description = "`idempotency_key_required`", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such payment", body = ErrorEnvelope),
        (status = 409, description = "`payment_not_captured`, or the same key still in flight", body = ErrorEnvelope),
        (status = 422, description = "`validation_failed`, `refund_exceeds_captured` (with what is refundable in `details`), or the key reused with another body", body = ErrorEnvelope),
    ))]
pub(crate) async fn refund_payment(
    AdminOnly(admin): AdminOnly,
    State(state): State<PaymentsState>,
    ctx: RequestContext,
    key: IdempotencyKey,
    Path(id): Path<PaymentId>,
    Json(body): Json<RefundBody>,
) -> Result<Created<RefundRow>, ApiError> {
    let mut errors = Vec::new();
    if body.amount.is_some_and(|amount| amount < 1) {
        errors.push(FieldError {
            field: "amount".to_owned(),
            code: "range".to_owned(),
            message: "must be at least 1 (minor units)".to_owned(),
        });
    }
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 500 {
        errors.push(FieldError {
            field: "reason".to_owned(),
            code: "length".to_owned(),
            message: "must be 1 to 500 characters".to_owned(),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let ask = AdminRefund {
        payment_id: id,
        amount: body.amount,
        reason,
        admin: admin.subject.clone(),
        idempotency_key: key.into_inner(),
    };
    let metadata = ctx.metadata(Some(admin.subject.clone()));
    let refund = state.service.refund_by_admin(&ask, &metadata).await?;
    Ok(Created::accepted(format!("/api/v1/payments/{id}"), refund))
}

impl From<RefundError> for ApiError {
    fn from(error: RefundError) -> Self {
        match error {
            RefundError::NotFound => ApiError::not_found("The payment"),
            RefundError::NotCaptured(status) => ApiError::conflict(
                "payment_not_captured",
                format!("The payment is {status}: only captured money can be refunded."),
            ),
            RefundError::Exceeds { requested, refundable } => ApiError::unprocessable(
                "refund_exceeds_captured",
                format!("{requested} asked, but only {refundable} is left to refund."),
            )
            .with_details(serde_json::json!({ "requested": requested, "refundable": refundable })),
            RefundError::Unexpected(error) => ApiError::internal(error),
        }
    }
}

/// The payment gateway as payments sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GatewayStatus {
    /// While `open`, gateway calls fail fast and payments wait in `pending`.
    breaker: BreakerState,
}

/// The gateway's circuit breaker: admins see whether payments are being held back.
#[utoipa::path(get, path = "/payments/gateway", tag = "payments",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The breaker's state in this process", body = inline(platform::http::Envelope<GatewayStatus>)),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
    ))]
pub(crate) async fn gateway_status(
    AdminOnly(_admin): AdminOnly,
    State(state): State<PaymentsState>,
) -> Data<GatewayStatus> {
    Data(GatewayStatus { breaker: state.service.gateway.state() })
}
