//! The catalogue's request and response bodies, and the one conversion of each request body
//! into what the use case takes.

use chrono::{DateTime, Utc};
use platform::http::pagination::PageMeta;
use platform::http::{ApiError, FieldError};
use platform::money::{Currency, Money};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{ProductDraft, Sku};
use crate::service::{NewProductRequest, ProductPatch, ProductRow};

/// A price in minor units of a currency.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": 2450, "currency": "EUR"}))]
pub(crate) struct PriceInput {
    /// Minor units, not negative: 2450 EUR is 24.50 EUR.
    #[schema(minimum = 0)]
    pub(crate) amount: i64,
    /// ISO 4217 code (`EUR`); lower case is upper-cased.
    #[schema(example = "EUR")]
    pub(crate) currency: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "sku": "MUG-003", "name": "Travel mug", "description": "Double-walled steel travel mug, 400 ml.",
    "price": {"amount": 2450, "currency": "EUR"}, "active": true, "low_stock_threshold": 10, "initial_stock": 50
}))]
pub(crate) struct CreateProductRequest {
    /// 1 to 64 of `A-Z 0-9 . _ -`, starting with a letter or digit; upper-cased. Unique and
    /// never reused (archived products keep theirs).
    #[schema(max_length = 64)]
    pub(crate) sku: String,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub(crate) name: String,
    /// At most 5000 characters; empty by default.
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub(crate) description: String,
    pub(crate) price: PriceInput,
    /// For sale right away (default `true`).
    pub(crate) active: Option<bool>,
    /// `inventory.low_stock` goes out when available units fall to this; 0 (default) never.
    #[schema(minimum = 0, maximum = 2_147_483_647)]
    pub(crate) low_stock_threshold: Option<i64>,
    /// Units on hand to start with (default 0), recorded as a `receive` movement.
    #[schema(minimum = 0, maximum = 2_147_483_647)]
    pub(crate) initial_stock: Option<i64>,
}

/// Fields to change; absent (or `null`) ones stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"price": {"amount": 2250, "currency": "EUR"}, "low_stock_threshold": 15}))]
pub(crate) struct UpdateProductRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub(crate) name: Option<String>,
    #[schema(max_length = 5000)]
    pub(crate) description: Option<String>,
    pub(crate) price: Option<PriceInput>,
    pub(crate) active: Option<bool>,
    /// Changing it re-checks the stock against it: falling to or below it sends `inventory.low_stock`.
    #[schema(minimum = 0, maximum = 2_147_483_647)]
    pub(crate) low_stock_threshold: Option<i64>,
}

/// A product's stock.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"on_hand": 50, "reserved": 2, "available": 48, "in_stock": true}))]
pub(crate) struct StockView {
    /// Units in the warehouse (admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) on_hand: Option<i32>,
    /// Units held for orders not yet paid (admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reserved: Option<i32>,
    /// On hand minus reserved: what can still be ordered.
    pub(crate) available: i32,
    pub(crate) in_stock: bool,
}

impl StockView {
    /// The full view for admins, `available` and `in_stock` for everyone else.
    pub(crate) fn new(on_hand: i32, reserved: i32, full: bool) -> Self {
        let available = on_hand - reserved;
        Self {
            on_hand: full.then_some(on_hand),
            reserved: full.then_some(reserved),
            available,
            in_stock: available > 0,
        }
    }
}

/// A product. Admins also see on-hand and reserved units, the low-stock threshold and, once
/// archived, when.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193b5f2-8a4e-7c3d-9a51-0000000000aa", "sku": "MUG-003", "name": "Travel mug",
    "description": "Double-walled steel travel mug, 400 ml.", "price": {"amount": 2450, "currency": "EUR"},
    "active": true, "stock": {"on_hand": 50, "reserved": 2, "available": 48, "in_stock": true},
    "low_stock_threshold": 10, "created_at": "2026-11-21T09:30:00Z", "updated_at": "2026-11-21T09:45:00Z"
}))]
pub(crate) struct ProductView {
    pub(crate) id: Uuid,
    /// Upper case, unique.
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) price: Money,
    /// For sale. Only admins see inactive products.
    pub(crate) active: bool,
    pub(crate) stock: StockView,
    /// Admins only: `inventory.low_stock` goes out when available units fall to this (0: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) low_stock_threshold: Option<i32>,
    /// Admins only, once archived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) archived_at: Option<DateTime<Utc>>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl ProductView {
    pub(crate) fn of(row: ProductRow, full: bool) -> anyhow::Result<Self> {
        Ok(Self {
            id: row.id.into_inner(),
            price: Money::new(row.price, Currency::parse(&row.currency)?),
            stock: StockView::new(row.on_hand, row.reserved, full),
            sku: row.sku,
            name: row.name,
            description: row.description,
            active: row.active,
            low_stock_threshold: full.then_some(row.low_stock_threshold),
            archived_at: row.archived_at.filter(|_| full),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A page of products.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProductPage {
    data: Vec<ProductView>,
    meta: PageMeta,
}

/// Search, filters, sort and page of the catalogue.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListProductsQuery {
    /// Words to find in the name or description, at most 200 characters (web-search syntax:
    /// `"exact phrase"`, `or`, `-without`).
    pub(crate) q: Option<String>,
    /// Lowest price in minor units, inclusive.
    #[param(minimum = 0)]
    pub(crate) min_price: Option<i64>,
    /// Highest price in minor units, inclusive.
    #[param(minimum = 0)]
    pub(crate) max_price: Option<i64>,
    /// Only prices in this currency (ISO 4217).
    pub(crate) currency: Option<String>,
    /// `true`: only products with units available; `false`: only those without.
    pub(crate) in_stock: Option<bool>,
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
    /// `meta.next_cursor` of the previous page.
    pub(crate) after: Option<String>,
    /// `name` (default), `price` or `created_at`, `-` for descending; with `q` also
    /// `relevance` (best matches first).
    pub(crate) sort: Option<String>,
}

impl TryFrom<CreateProductRequest> for NewProductRequest {
    type Error = ApiError;

    /// Every field checked, all failures reported at once (422, per field).
    fn try_from(body: CreateProductRequest) -> Result<Self, ApiError> {
        creation(body)
    }
}

impl TryFrom<UpdateProductRequest> for ProductPatch {
    type Error = ApiError;

    /// Every given field checked, all failures reported at once (422, per field).
    fn try_from(body: UpdateProductRequest) -> Result<Self, ApiError> {
        patch(body)
    }
}

fn creation(body: CreateProductRequest) -> Result<NewProductRequest, ApiError> {
    let mut errors = Vec::new();
    let sku = Sku::parse(&body.sku).map_err(|message| errors.push(field_error("sku", "invalid", message))).ok();
    let draft = draft(Some(&body.name), Some(&body.description), Some(&body.price), &mut errors);
    let low_stock_threshold = units("low_stock_threshold", body.low_stock_threshold.unwrap_or(0), &mut errors);
    let initial_stock = units("initial_stock", body.initial_stock.unwrap_or(0), &mut errors);
    match (sku, draft, low_stock_threshold, initial_stock) {
        (Some(sku), Some(draft), Some(low_stock_threshold), Some(initial_stock)) if errors.is_empty() => {
            Ok(NewProductRequest {
                sku,
                draft,
                active: body.active.unwrap_or(true),
                low_stock_threshold,
                initial_stock,
            })
        }
        _ => Err(invalid(errors)),
    }
}

fn patch(body: UpdateProductRequest) -> Result<ProductPatch, ApiError> {
    let mut errors = Vec::new();
    // Every given field is checked here, so all failures are reported at once; the service
    // parses the merged product again.
    let draft = draft(body.name.as_deref(), body.description.as_deref(), body.price.as_ref(), &mut errors);
    let low_stock_threshold = body.low_stock_threshold.map(|t| units("low_stock_threshold", t, &mut errors));
    match draft {
        Some(draft) if errors.is_empty() => Ok(ProductPatch {
            name: body.name.map(|_| draft.name),
            description: body.description.map(|_| draft.description),
            price: body.price.map(|_| draft.price),
            active: body.active,
            low_stock_threshold: low_stock_threshold.flatten(),
        }),
        _ => Err(invalid(errors)),
    }
}

/// The draft of the given fields, with valid stand-ins for the others; failures go to `errors`.
fn draft(
    name: Option<&str>,
    description: Option<&str>,
    price: Option<&PriceInput>,
    errors: &mut Vec<FieldError>,
) -> Option<ProductDraft> {
    let currency = match price {
        Some(price) => Currency::parse(&price.currency)
            .map_err(|_| {
                errors.push(field_error("price.currency", "invalid", "must be an ISO 4217 code, e.g. EUR"));
            })
            .ok(),
        None => None,
    };
    // An unknown currency still lets the other fields be checked, against a stand-in.
    let currency = currency.map_or_else(|| Currency::parse("XXX"), Ok).ok()?;
    let amount = price.map_or(0, |p| p.amount);
    ProductDraft::parse(name.unwrap_or("-"), description.unwrap_or_default(), Money::new(amount, currency))
        .map_err(|failures| errors.extend(failures))
        .ok()
}

/// A count of units: 0 to `i32::MAX`.
fn units(field: &str, value: i64, errors: &mut Vec<FieldError>) -> Option<i32> {
    let units = i32::try_from(value).ok().filter(|v| *v >= 0);
    if units.is_none() {
        errors.push(field_error(field, "range", &format!("must be between 0 and {}", i32::MAX)));
    }
    units
}

fn field_error(field: &str, code: &str, message: &str) -> FieldError {
    FieldError { field: field.to_owned(), code: code.to_owned(), message: message.to_owned() }
}

fn invalid(mut errors: Vec<FieldError>) -> ApiError {
    errors.sort_by(|a, b| a.field.cmp(&b.field));
    ApiError::validation(errors)
}
