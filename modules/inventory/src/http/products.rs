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
use inventory_contract::ProductId;
use platform::auth::{AdminOnly, Authenticated, JwtVerifier, Principal};
use platform::http::pagination::storable_time;
use platform::http::{
    ApiError, Created, Data, ErrorEnvelope, Json, PageQuery, Path, Query, RequestContext, conditional,
};
use platform::money::Currency;

use super::InventoryState;
use super::dto::{CreateProductRequest, ListProductsQuery, ProductPage, ProductView, UpdateProductRequest};
use crate::service::{
    CatalogError, IfMatch, ListFilter, ListKey, NewProductRequest, ProductPatch, ProductRow, SORTABLE,
};

const MAX_QUERY_CHARS: usize = 200;

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
    let request = NewProductRequest::try_from(body)?;
    let metadata = ctx.metadata(Some(admin.subject.clone()));
    let product = state.service.create_product(request, &admin.subject, &metadata).await?;
    let etag = entity_tag(product.version, true);
    let location = format!("/api/v1/products/{}", product.id);
    let mut response = Created::new(location, ProductView::of(product, true)?).into_response();
    response.headers_mut().insert(header::ETAG, conditional::etag_value(&etag)?);
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
    let page = page.one_sort_field("Products", SORTABLE)?;
    let filter = list_filter(&query)?;
    let (field, descending) = crate::service::sort_of(&page);
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
        Some(ListKey::CreatedAt(at, _)) => field == "created_at" && storable_time(at),
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
    Path(id): Path<ProductId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let product = state.service.product(id).await?;
    if !viewer.may_see(&product) {
        return Err(ApiError::not_found("The product"));
    }
    let full = viewer.is_admin();
    let etag = entity_tag(product.version, full);
    let mut response = if conditional::none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Data(ProductView::of(product, full)?).into_response()
    };
    let response_headers = response.headers_mut();
    response_headers.insert(header::ETAG, conditional::etag_value(&etag)?);
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
    Path(id): Path<ProductId>,
    headers: HeaderMap,
    Json(body): Json<UpdateProductRequest>,
) -> Result<Response, ApiError> {
    let patch = ProductPatch::try_from(body)?;
    let expected = if_match(&headers);
    let metadata = ctx.metadata(Some(admin.subject.clone()));
    let product = state.service.update_product(id, patch, expected.as_ref(), &admin.subject, &metadata).await?;
    let etag = entity_tag(product.version, true);
    let mut response = Data(ProductView::of(product, true)?).into_response();
    response.headers_mut().insert(header::ETAG, conditional::etag_value(&etag)?);
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
    Path(id): Path<ProductId>,
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

/// The strong entity tag of the view a caller gets: its version, and `-public` for the view
/// without stock details.
fn entity_tag(version: i64, full: bool) -> String {
    if full { conditional::strong(&version.to_string()) } else { conditional::strong(&format!("{version}-public")) }
}

/// The versions `If-Match` accepts: either view's tag names its version.
fn if_match(headers: &HeaderMap) -> Option<IfMatch> {
    Some(match conditional::if_match(headers)? {
        conditional::IfMatch::Any => IfMatch::Any,
        conditional::IfMatch::Opaque(tags) => IfMatch::Versions(
            tags.iter().filter_map(|opaque| opaque.strip_suffix("-public").unwrap_or(opaque).parse().ok()).collect(),
        ),
    })
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
    fn if_match_takes_strong_tags_of_either_view() {
        assert_eq!(if_match(&HeaderMap::new()), None);
        assert_eq!(if_match(&with(header::IF_MATCH, "*")), Some(IfMatch::Any));
        assert_eq!(if_match(&with(header::IF_MATCH, "\"3\", \"4-public\"")), Some(IfMatch::Versions(vec![3, 4])));
        assert_eq!(if_match(&with(header::IF_MATCH, "W/\"3\", \"x\"")), Some(IfMatch::Versions(vec![])));
    }
}
