//! The catalogue: anyone reads the products for sale; admins create, change and archive them.
//!
//! A product's `ETag` is its version, strong, and different for the admin view (`"7"`) and the
//! public one (`"7-public"`), whose bodies differ (admins also see on-hand, reserved and the
//! low-stock threshold). `If-None-Match` answers 304; `If-Match` on a change answers 412 when
//! the product moved on, and accepts either tag of the current version.

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use platform::auth::{AdminOnly, Authenticated, JwtVerifier, Principal};
use platform::http::pagination::PageMeta;
use platform::http::{
    ApiError, Created, Data, ErrorEnvelope, FieldError, Json, PageQuery, Path, Query, RequestContext,
};
use platform::money::{Currency, Money};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::InventoryState;
use crate::domain::{ProductDraft, Sku};
use crate::service::{CatalogError, IfMatch, NewProductRequest, ProductPatch};
use crate::store::products::{self, ListFilter, ListKey, ProductRow, SORTABLE};

const MAX_QUERY_CHARS: usize = 200;

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
    fn of(row: ProductRow, full: bool) -> anyhow::Result<Self> {
        Ok(Self {
            id: row.id,
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

/// Who is reading: anyone, or the holder of a valid bearer token. A token that does not
/// verify is refused (401) rather than ignored, so a client learns that it expired.
#[derive(Debug, Clone)]
pub(crate) struct Viewer(Option<Principal>);

impl Viewer {
    fn is_admin(&self) -> bool {
        self.0.as_ref().is_some_and(Principal::is_admin)
    }

    /// Admins see every product; everyone else those for sale.
    fn may_see(&self, product: &ProductRow) -> bool {
        self.is_admin() || product.sellable()
    }
}

impl<S> FromRequestParts<S> for Viewer
where
    S: Send + Sync,
    JwtVerifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(Self(None));
        }
        let Authenticated(principal) = Authenticated::from_request_parts(parts, state).await?;
        Ok(Self(Some(principal)))
    }
}

/// Creates a product, with its initial stock as a `receive` movement (admins). With an
/// `Idempotency-Key`, a retry gets the first answer.
#[utoipa::path(post, path = "/products", tag = "catalog",
    request_body = CreateProductRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry replay the first answer")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created. `Location` is the product, `ETag` its version", body = inline(platform::http::Envelope<ProductView>),
            headers(
                ("Location" = String, description = "/api/v1/products/{id}"),
                ("ETag" = String, description = "The product's version, for `If-Match`"),
            )),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 409, description = "`sku_taken` (SKUs compare upper-cased and are never reused), or the same Idempotency-Key still in flight", body = ErrorEnvelope),
        (status = 422, description = "`validation_failed` with one entry per field, a body of the wrong shape (`invalid_body`), or the Idempotency-Key reused with another body", body = ErrorEnvelope),
    ))]
pub(crate) async fn create_product(
    AdminOnly(admin): AdminOnly,
    State(state): State<InventoryState>,
    ctx: RequestContext,
    Json(body): Json<CreateProductRequest>,
) -> Result<Response, ApiError> {
    let request = creation(body)?;
    let metadata = ctx.metadata(Some(admin.subject.clone()));
    let product = state.service.create_product(request, &admin.subject, &metadata).await?;
    let etag = entity_tag(product.version, true);
    let location = format!("/api/v1/products/{}", product.id);
    let mut response = Created::new(location, ProductView::of(product, true)?).into_response();
    response.headers_mut().insert(header::ETAG, header_value(&etag)?);
    Ok(response)
}

/// Lists the products for sale, by name by default; search by words, filter by price,
/// currency and stock. Pages stay stable while products are added.
#[utoipa::path(get, path = "/products", tag = "catalog",
    params(ListProductsQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of products", body = ProductPage,
            headers(("Vary" = String, description = "`Authorization`: admins see more"))),
        (status = 400, description = "Bad limit, sort, cursor or filter (`invalid_limit`, `invalid_sort`, `invalid_cursor`, `invalid_query`)", body = ErrorEnvelope),
        (status = 401, description = "A bearer token that does not verify (none is needed)", body = ErrorEnvelope),
    ))]
pub(crate) async fn list_products(
    viewer: Viewer,
    State(state): State<InventoryState>,
    Query(query): Query<ListProductsQuery>,
) -> Result<Response, ApiError> {
    let page = PageQuery { limit: query.limit, after: query.after.clone(), sort: query.sort.clone() }
        .parse::<ListKey>(SORTABLE, "name")?;
    if page.sort.keys().len() > 1 {
        return Err(ApiError::bad_request("invalid_sort", "Products sort by one field at a time.")
            .with_details(serde_json::json!({ "allowed": SORTABLE })));
    }
    let filter = list_filter(&query)?;
    let (field, descending) = products::sort_of(&page);
    if field == "relevance" && (descending || filter.q.is_none()) {
        return Err(ApiError::bad_request(
            "invalid_sort",
            "`relevance` needs a search (`q`) and always lists the best matches first.",
        ));
    }
    let cursor_fits = match &page.after {
        None => true,
        Some(ListKey::Name(name, _)) => field == "name" && !name.contains('\0'),
        Some(ListKey::Price(..)) => field == "price",
        Some(ListKey::CreatedAt(at, _)) => field == "created_at" && (1..=9999).contains(&chrono::Datelike::year(at)),
        Some(ListKey::Relevance(rank, _)) => field == "relevance" && rank.is_finite(),
    };
    if !cursor_fits {
        return Err(ApiError::bad_request("invalid_cursor", "The cursor is not one this endpoint issued."));
    }
    let full = viewer.is_admin();
    let page = state.service.list_products(&filter, &page).await?.try_map(|l| ProductView::of(l.product, full))?;
    Ok(([(header::VARY, HeaderValue::from_static("authorization"))], page).into_response())
}

fn list_filter(query: &ListProductsQuery) -> Result<ListFilter, ApiError> {
    let invalid = |message: &str| ApiError::bad_request("invalid_query", message.to_owned());
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS || q.contains('\0')) {
        return Err(invalid("`q` must be at most 200 characters of text."));
    }
    if query.min_price.is_some_and(|p| p < 0) || query.max_price.is_some_and(|p| p < 0) {
        return Err(invalid("`min_price` and `max_price` must not be negative."));
    }
    if let (Some(min), Some(max)) = (query.min_price, query.max_price)
        && min > max
    {
        return Err(invalid("`min_price` must not exceed `max_price`."));
    }
    let currency = query
        .currency
        .as_deref()
        .map(Currency::parse)
        .transpose()
        .map_err(|_| invalid("`currency` must be an ISO 4217 code, e.g. EUR."))?;
    Ok(ListFilter {
        q: q.map(str::to_owned),
        min_price: query.min_price,
        max_price: query.max_price,
        currency: currency.map(|c| c.as_str().to_owned()),
        in_stock: query.in_stock,
    })
}

/// One product: for sale for anyone; any, inactive and archived included, for admins.
/// `Cache-Control: no-cache` with an `ETag`: revalidate with `If-None-Match` for a 304.
#[utoipa::path(get, path = "/products/{id}", tag = "catalog",
    params(
        ("id" = Uuid, Path, description = "Product id"),
        ("If-None-Match" = Option<String>, Header, description = "`ETag`s you hold: 304 without a body if one is current"),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The product", body = inline(platform::http::Envelope<ProductView>),
            headers(
                ("ETag" = String, description = "The version of this view: `\"7\"` for admins, `\"7-public\"` otherwise"),
                ("Cache-Control" = String, description = "`no-cache`: revalidate before reuse"),
                ("Vary" = String, description = "`Authorization`: admins see more"),
            )),
        (status = 304, description = "Not modified: an `If-None-Match` tag is current",
            headers(("ETag" = String, description = "The current version"))),
        (status = 401, description = "A bearer token that does not verify (none is needed)", body = ErrorEnvelope),
        (status = 404, description = "No such product, or not for sale", body = ErrorEnvelope),
    ))]
pub(crate) async fn get_product(
    viewer: Viewer,
    State(state): State<InventoryState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let product = state.service.product(id).await?;
    if !viewer.may_see(&product) {
        return Err(ApiError::not_found("The product"));
    }
    let full = viewer.is_admin();
    let etag = entity_tag(product.version, full);
    let mut response = if none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Data(ProductView::of(product, full)?).into_response()
    };
    let response_headers = response.headers_mut();
    response_headers.insert(header::ETAG, header_value(&etag)?);
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response_headers.insert(header::VARY, HeaderValue::from_static("authorization"));
    Ok(response)
}

/// Changes a product's name, description, price, availability for sale or low-stock
/// threshold (admins). With `If-Match`, only if the product is still at that version.
#[utoipa::path(patch, path = "/products/{id}", tag = "catalog",
    params(
        ("id" = Uuid, Path, description = "Product id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` you changed: 412 if the product has moved on"),
    ),
    request_body = UpdateProductRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product as changed (unchanged, with the same `ETag`, when nothing differed)", body = inline(platform::http::Envelope<ProductView>),
            headers(("ETag" = String, description = "The new version"))),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such product, or archived", body = ErrorEnvelope),
        (status = 412, description = "`precondition_failed`: the `If-Match` version is not current", body = ErrorEnvelope),
        (status = 422, description = "`validation_failed` with one entry per field, or a body of the wrong shape (`invalid_body`)", body = ErrorEnvelope),
    ))]
pub(crate) async fn update_product(
    AdminOnly(admin): AdminOnly,
    State(state): State<InventoryState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<UpdateProductRequest>,
) -> Result<Response, ApiError> {
    let patch = patch(body)?;
    let expected = if_match(&headers);
    let metadata = ctx.metadata(Some(admin.subject.clone()));
    let product = state.service.update_product(id, patch, expected.as_ref(), &admin.subject, &metadata).await?;
    let etag = entity_tag(product.version, true);
    let mut response = Data(ProductView::of(product, true)?).into_response();
    response.headers_mut().insert(header::ETAG, header_value(&etag)?);
    Ok(response)
}

/// Archives a product (admins): a soft delete. It leaves the catalogue and cannot be ordered
/// or reserved; its SKU stays taken and its stock history stays. Archiving it again is a 204
/// too, so a retry is harmless.
#[utoipa::path(delete, path = "/products/{id}", tag = "catalog",
    params(("id" = Uuid, Path, description = "Product id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Archived (now or before)"),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such product", body = ErrorEnvelope),
    ))]
pub(crate) async fn archive_product(
    AdminOnly(_admin): AdminOnly,
    State(state): State<InventoryState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    state.service.archive_product(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::NotFound => ApiError::not_found("The product"),
            CatalogError::SkuTaken => ApiError::conflict(
                "sku_taken",
                "A product with this SKU exists; SKUs compare upper-cased and are never reused.",
            ),
            CatalogError::Invalid(fields) => ApiError::validation(fields),
            CatalogError::PreconditionFailed => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "The product has changed since the version in If-Match; read it again and retry with its new ETag.",
            ),
            CatalogError::Unexpected(error) => ApiError::internal(error),
        }
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

/// The strong entity tag of the view a caller gets.
fn entity_tag(version: i64, full: bool) -> String {
    if full { format!("\"{version}\"") } else { format!("\"{version}-public\"") }
}

fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value).map_err(ApiError::internal)
}

/// The entity tags of a conditional header, or `None` without one.
fn tags(headers: &HeaderMap, name: header::HeaderName) -> Option<Vec<String>> {
    let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!values.is_empty()).then(|| {
        values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
    })
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for GET).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    tags(headers, header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.iter().any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag))
}

/// The versions `If-Match` accepts (strong comparison: weak tags never match).
fn if_match(headers: &HeaderMap) -> Option<IfMatch> {
    let tags = tags(headers, header::IF_MATCH)?;
    if tags.iter().any(|tag| tag == "*") {
        return Some(IfMatch::Any);
    }
    let versions = tags
        .iter()
        .filter_map(|tag| tag.strip_prefix('"')?.strip_suffix('"'))
        .filter_map(|opaque| opaque.strip_suffix("-public").unwrap_or(opaque).parse().ok())
        .collect();
    Some(IfMatch::Versions(versions))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_stars() {
        assert!(none_match(&with(header::IF_NONE_MATCH, "\"7\""), "\"7\""));
        assert!(none_match(&with(header::IF_NONE_MATCH, "\"6\", W/\"7\""), "\"7\""));
        assert!(none_match(&with(header::IF_NONE_MATCH, "*"), "\"7\""));
        assert!(!none_match(&with(header::IF_NONE_MATCH, "\"7-public\""), "\"7\""));
        assert!(!none_match(&HeaderMap::new(), "\"7\""));
    }

    #[test]
    fn if_match_takes_strong_tags_of_either_view() {
        assert_eq!(if_match(&HeaderMap::new()), None);
        assert_eq!(if_match(&with(header::IF_MATCH, "*")), Some(IfMatch::Any));
        assert_eq!(if_match(&with(header::IF_MATCH, "\"3\", \"4-public\"")), Some(IfMatch::Versions(vec![3, 4])));
        assert_eq!(if_match(&with(header::IF_MATCH, "W/\"3\", \"x\"")), Some(IfMatch::Versions(vec![])));
    }
}
