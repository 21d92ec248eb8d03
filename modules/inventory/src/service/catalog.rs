//! The catalogue: creating, changing, archiving and listing products.
//!
//! Stock levels change only through `StockLevel::apply`: a new product's opening stock is a
//! `receive` movement, and a changed low-stock threshold is applied as a change of nothing, so
//! the once-per-crossing `inventory.low_stock` logic stays in one place.

use anyhow::Context;
use inventory_contract::ProductId;
use platform::bus::Metadata;
use platform::http::{FieldError, Page, PageRequest};
use platform::money::{Currency, Money};

use super::{InventoryService, StockError, Why, apply_level};
use crate::domain::{LevelChange, MovementKind, ProductDraft, Sku};
use crate::store::is_unique_violation;
use crate::store::products::{self, ListFilter, ListKey, Listed, NewProduct, ProductFields, ProductRow};
use crate::store::stock;

/// A product to create, parsed at the edge.
#[derive(Debug, Clone)]
pub(crate) struct NewProductRequest {
    pub(crate) sku: Sku,
    pub(crate) draft: ProductDraft,
    pub(crate) active: bool,
    pub(crate) low_stock_threshold: i32,
    /// Received as the first movement (reason "initial stock").
    pub(crate) initial_stock: i32,
}

/// Changes to a product; `None` leaves a field as it is. The merged product is parsed again
/// before it is stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProductPatch {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) price: Option<Money>,
    pub(crate) active: Option<bool>,
    pub(crate) low_stock_threshold: Option<i32>,
}

impl ProductPatch {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.description.is_none()
            && self.price.is_none()
            && self.active.is_none()
            && self.low_stock_threshold.is_none()
    }
}

/// The versions an `If-Match` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IfMatch {
    /// `*`: any current version.
    Any,
    /// Only these (none when every tag sent was foreign or weak).
    Versions(Vec<i64>),
}

impl IfMatch {
    fn allows(&self, version: i64) -> bool {
        match self {
            Self::Any => true,
            Self::Versions(versions) => versions.contains(&version),
        }
    }
}

/// Failures of the catalogue use cases.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CatalogError {
    /// Unknown, or archived where only live products will do.
    #[error("no such product")]
    NotFound,
    #[error("a product with this SKU exists")]
    SkuTaken,
    #[error("the product is not valid")]
    Invalid(Vec<FieldError>),
    #[error("the product changed since the version the caller named")]
    PreconditionFailed,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl InventoryService {
    /// Creates a product and receives its initial stock (a `receive` movement by `actor`).
    ///
    /// # Errors
    /// [`CatalogError::SkuTaken`] when the SKU is in use, archived products included.
    #[tracing::instrument(skip_all, fields(sku = %request.sku.as_str()), err(level = "info"))]
    pub(crate) async fn create_product(
        &self,
        request: NewProductRequest,
        actor: &str,
        metadata: &Metadata,
    ) -> Result<ProductRow, CatalogError> {
        let id = ProductId::new();
        let now = self.now();
        let draft = &request.draft;
        let product = NewProduct {
            id,
            sku: request.sku.as_str(),
            name: &draft.name,
            description: &draft.description,
            price: draft.price.amount,
            currency: draft.price.currency.as_str(),
            active: request.active,
            low_stock_threshold: request.low_stock_threshold,
            at: now,
        };
        let mut tx = self.pool.begin().await.context("starting to create a product")?;
        match products::insert(&mut tx, &product).await {
            Err(error) if is_unique_violation(&error, "products_sku_key") => return Err(CatalogError::SkuTaken),
            other => other.context("creating a product")?,
        }
        // Applied even without stock: a product that starts at or below its threshold is low.
        let change = LevelChange::count(MovementKind::Receive, request.initial_stock);
        let why = Why { reason: "initial stock", order_id: None, actor: Some(actor) };
        apply_to(&mut tx, id, change, why, metadata, now).await?;
        let created = products::find(&mut tx, id).await?.context("the new product vanished")?;
        tx.commit().await.context("committing a new product")?;
        tracing::info!(product_id = %id, "product created");
        Ok(created)
    }

    /// A product, archived or not (callers decide who may see which).
    ///
    /// # Errors
    /// [`CatalogError::NotFound`].
    pub(crate) async fn product(&self, id: ProductId) -> Result<ProductRow, CatalogError> {
        let mut db = self.pool.acquire().await.context("reading a product")?;
        products::find(&mut db, id).await?.ok_or(CatalogError::NotFound)
    }

    /// Changes a live product's fields when `if_match` (if any) names its current version.
    /// Nothing changes, and the version stays, when the patch changes nothing.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] (also for archived products), [`CatalogError::PreconditionFailed`],
    /// [`CatalogError::Invalid`].
    #[tracing::instrument(skip_all, fields(product_id = %id), err(level = "info"))]
    pub(crate) async fn update_product(
        &self,
        id: ProductId,
        patch: ProductPatch,
        if_match: Option<&IfMatch>,
        actor: &str,
        metadata: &Metadata,
    ) -> Result<ProductRow, CatalogError> {
        let now = self.now();
        let mut tx = self.pool.begin().await.context("starting to change a product")?;
        let current = products::find_for_update(&mut tx, id)
            .await?
            .filter(|p| p.archived_at.is_none())
            .ok_or(CatalogError::NotFound)?;
        if if_match.is_some_and(|expected| !expected.allows(current.version)) {
            return Err(CatalogError::PreconditionFailed);
        }
        if patch.is_empty() {
            return Ok(current);
        }
        let currency = Currency::parse(&current.currency).context("a stored currency")?;
        let draft = ProductDraft::parse(
            patch.name.as_deref().unwrap_or(&current.name),
            patch.description.as_deref().unwrap_or(&current.description),
            patch.price.unwrap_or(Money::new(current.price, currency)),
        )
        .map_err(CatalogError::Invalid)?;
        let fields = ProductFields {
            name: &draft.name,
            description: &draft.description,
            price: draft.price.amount,
            currency: draft.price.currency.as_str(),
            active: patch.active.unwrap_or(current.active),
            low_stock_threshold: patch.low_stock_threshold.unwrap_or(current.low_stock_threshold),
        };
        if unchanged(&current, &fields) {
            return Ok(current);
        }
        products::update(&mut tx, id, &fields, now).await?;
        if fields.low_stock_threshold != current.low_stock_threshold {
            let why = Why { reason: "low-stock threshold changed", order_id: None, actor: Some(actor) };
            apply_to(&mut tx, id, LevelChange::recheck(), why, metadata, now).await?;
        }
        let updated = products::find(&mut tx, id).await?.context("the changed product vanished")?;
        tx.commit().await.context("committing a product change")?;
        Ok(updated)
    }

    /// Archives a product: no longer listed, shown or reservable; its SKU stays taken and its
    /// history stays. Archiving an archived product changes nothing and succeeds.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] for an unknown id.
    #[tracing::instrument(skip_all, fields(product_id = %id), err(level = "info"))]
    pub(crate) async fn archive_product(&self, id: ProductId) -> Result<(), CatalogError> {
        let mut db = self.pool.acquire().await.context("archiving a product")?;
        if products::archive(&mut db, id, self.now()).await? {
            tracing::info!("product archived");
            return Ok(());
        }
        match products::find(&mut db, id).await? {
            Some(_) => Ok(()),
            None => Err(CatalogError::NotFound),
        }
    }

    /// One page of the products for sale that match `filter`.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn list_products(
        &self,
        filter: &ListFilter,
        page: &PageRequest<ListKey>,
    ) -> Result<Page<Listed>, CatalogError> {
        let mut db = self.pool.acquire().await.context("listing products")?;
        let rows = products::list(&mut db, filter, page).await?;
        let (field, _) = products::sort_of(page);
        Ok(Page::from_overfetch(rows, page, |listed| products::list_key(listed, field)))
    }
}

fn unchanged(current: &ProductRow, fields: &ProductFields<'_>) -> bool {
    current.name == fields.name
        && current.description == fields.description
        && current.price == fields.price
        && current.currency == fields.currency
        && current.active == fields.active
        && current.low_stock_threshold == fields.low_stock_threshold
}

/// Applies `change` to the product's levels, locked in this transaction.
async fn apply_to(
    tx: &mut sqlx::PgConnection,
    id: ProductId,
    change: LevelChange,
    why: Why<'_>,
    metadata: &Metadata,
    at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let mut locked = stock::lock(tx, &[id]).await?;
    let level = locked.first_mut().context("the product's levels vanished")?;
    // Neither opening stock nor a threshold can take levels below zero: a refusal is a bug.
    apply_level(tx, level, change, why, metadata, at).await.map(|_| ()).map_err(StockError::into_unexpected)
}
