//! Request and response bodies, with the examples the OpenAPI document shows.

use chrono::{DateTime, Utc};
use orders_contract::events::{CancellationReason, RejectedLine};
use orders_contract::{OrderLine, OrderStatus, ShippingAddress};
use platform::money::{Currency, Money};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::AddressInput;
use crate::service::{FullOrder, OrderRow, TimelineEntry};

/// A line to order: a product by id or by SKU, and a quantity.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineInput {
    /// The product's id; give this or `sku`.
    pub(crate) product_id: Option<Uuid>,
    /// The product's SKU; give this or `product_id`.
    pub(crate) sku: Option<String>,
    /// 1 to 100.
    #[schema(minimum = 1, maximum = 100)]
    pub(crate) quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "lines": [{"sku": "MUG-001", "quantity": 2}, {"product_id": "0193b5f2-8a4e-7c3d-9a51-0000000000aa", "quantity": 1}],
    "shipping_address": {"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"},
    "payment_method": "pm_card_visa"
}))]
pub(crate) struct PlaceOrderRequest {
    /// 1 to 50 lines, each product at most once. Prices come from the catalogue.
    pub(crate) lines: Vec<LineInput>,
    pub(crate) shipping_address: AddressInput,
    /// The token of the customer's payment method at the payment gateway.
    pub(crate) payment_method: String,
}

/// Why an order was cancelled.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Cancellation {
    pub(crate) reason: CancellationReason,
    /// E.g. the payment failure code.
    pub(crate) detail: Option<String>,
}

/// Who carries the parcel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Shipment {
    pub(crate) carrier: String,
    pub(crate) tracking_number: String,
}

/// An order with its lines, totals and status history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0193b5f2-8a4e-7c3d-9a51-000000000001", "user_id": "0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e81", "status": "pending",
    "lines": [{"product_id": "0193b5f2-8a4e-7c3d-9a51-0000000000aa", "sku": "MUG-001", "name": "Enamel mug", "quantity": 2,
               "unit_price": {"amount": 1250, "currency": "EUR"}, "line_total": {"amount": 2500, "currency": "EUR"}}],
    "subtotal": {"amount": 2500, "currency": "EUR"}, "shipping": {"amount": 499, "currency": "EUR"},
    "total": {"amount": 2999, "currency": "EUR"}, "refunded": {"amount": 0, "currency": "EUR"},
    "shipping_address": {"name": "Ada Lovelace", "line1": "12 St James's Square", "line2": null, "city": "London", "region": null, "postal_code": "SW1Y 4JH", "country": "GB"},
    "pay_by": null, "cancellation": null, "rejected_lines": null, "shipment": null,
    "timeline": [{"at": "2026-11-21T09:30:00Z", "status": "pending", "cause_kind": "request", "cause_id": "0193b5f2-8a4e-7c3d-9a51-3f0c2b6d7e99", "reason": null}],
    "created_at": "2026-11-21T09:30:00Z", "updated_at": "2026-11-21T09:30:00Z"
}))]
pub(crate) struct OrderView {
    pub(crate) id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) status: OrderStatus,
    pub(crate) lines: Vec<OrderLine>,
    pub(crate) subtotal: Money,
    /// A flat 4.99, free from a 50.00 subtotal.
    pub(crate) shipping: Money,
    pub(crate) total: Money,
    /// Refunded so far.
    pub(crate) refunded: Money,
    pub(crate) shipping_address: ShippingAddress,
    /// When awaiting payment: the order is cancelled if not paid by then.
    pub(crate) pay_by: Option<DateTime<Utc>>,
    pub(crate) cancellation: Option<Cancellation>,
    /// When rejected: why each line could not be reserved.
    pub(crate) rejected_lines: Option<Vec<RejectedLine>>,
    pub(crate) shipment: Option<Shipment>,
    /// Every status the order took, oldest first.
    pub(crate) timeline: Vec<TimelineEntry>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl TryFrom<FullOrder> for OrderView {
    type Error = anyhow::Error;

    fn try_from(order: FullOrder) -> anyhow::Result<Self> {
        let FullOrder { row, lines, timeline, refunded } = order;
        let currency = Currency::parse(&row.currency)?;
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            status: row.status,
            lines,
            subtotal: Money::new(row.subtotal, currency),
            shipping: Money::new(row.shipping, currency),
            total: Money::new(row.total, currency),
            refunded: Money::new(refunded, currency),
            shipping_address: row.shipping_address.0,
            pay_by: row.pay_by,
            cancellation: row.cancel_reason.as_deref().and_then(|reason| {
                serde_json::from_value(serde_json::Value::String(reason.to_owned()))
                    .ok()
                    .map(|reason| Cancellation { reason, detail: row.cancel_detail.clone() })
            }),
            rejected_lines: row.rejected_lines.map(|l| l.0),
            shipment: row
                .carrier
                .zip(row.tracking_number)
                .map(|(carrier, tracking_number)| Shipment { carrier, tracking_number }),
            timeline,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// An order in a list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct OrderSummary {
    pub(crate) id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) status: OrderStatus,
    pub(crate) total: Money,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl TryFrom<OrderRow> for OrderSummary {
    type Error = anyhow::Error;

    fn try_from(row: OrderRow) -> anyhow::Result<Self> {
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            status: row.status,
            total: Money::new(row.total, Currency::parse(&row.currency)?),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"carrier": "DHL", "tracking_number": "JD014600006281234567"}))]
pub(crate) struct ShipRequest {
    /// 1 to 100 characters.
    pub(crate) carrier: String,
    /// 1 to 100 characters.
    pub(crate) tracking_number: String,
}

/// Filters, sort and page of the order listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListOrdersQuery {
    pub(crate) status: Option<OrderStatus>,
    /// Admins only: this customer's orders.
    pub(crate) user_id: Option<Uuid>,
    /// Created at or after (RFC 3339).
    pub(crate) created_from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub(crate) created_before: Option<DateTime<Utc>>,
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
    pub(crate) after: Option<String>,
    /// `created_at` or `total`, `-` for descending; default `-created_at`.
    pub(crate) sort: Option<String>,
}
