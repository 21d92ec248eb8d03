//! Products of the catalogue.

use anyhow::Context;
use chrono::{DateTime, Utc};
use inventory_contract::ProductId;
use platform::http::PageRequest;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

/// A product as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ProductRow {
    #[sqlx(try_from = "Uuid")]
    pub(crate) id: ProductId,
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) price: i64,
    pub(crate) currency: String,
    pub(crate) active: bool,
    pub(crate) archived_at: Option<DateTime<Utc>>,
    pub(crate) on_hand: i32,
    pub(crate) reserved: i32,
    pub(crate) low_stock_threshold: i32,
    pub(crate) version: i64,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl ProductRow {
    pub(crate) fn available(&self) -> i32 {
        self.on_hand - self.reserved
    }

    /// For sale: active and not archived.
    pub(crate) fn sellable(&self) -> bool {
        self.active && self.archived_at.is_none()
    }
}

/// `SELECT` of every product column, followed by the given clause.
macro_rules! select_products {
    ($rest:literal) => {
        concat!(
            "SELECT id, sku, name, description, price, currency, active, archived_at, on_hand, reserved,
                    low_stock_threshold, version, created_at, updated_at
               FROM products ",
            $rest
        )
    };
}
pub(crate) use select_products;

/// A new product (stock starts at zero; receive it as a movement).
#[derive(Debug, Clone)]
pub(crate) struct NewProduct<'a> {
    pub(crate) id: ProductId,
    pub(crate) sku: &'a str,
    pub(crate) name: &'a str,
    pub(crate) description: &'a str,
    pub(crate) price: i64,
    pub(crate) currency: &'a str,
    pub(crate) active: bool,
    pub(crate) low_stock_threshold: i32,
    pub(crate) at: DateTime<Utc>,
}

/// # Errors
/// The `products_sku_key` unique violation when the SKU is taken.
pub(crate) async fn insert(db: &mut PgConnection, product: &NewProduct<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO products (id, sku, name, description, price, currency, active, low_stock_threshold, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(product.id.into_inner())
    .bind(product.sku)
    .bind(product.name)
    .bind(product.description)
    .bind(product.price)
    .bind(product.currency)
    .bind(product.active)
    .bind(product.low_stock_threshold)
    .bind(product.at)
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn find(db: &mut PgConnection, id: ProductId) -> anyhow::Result<Option<ProductRow>> {
    sqlx::query_as(select_products!("WHERE id = $1"))
        .bind(id.into_inner())
        .fetch_optional(db)
        .await
        .context("reading a product")
}

/// Products named by id or by SKU (for quotes), archived ones included.
pub(crate) async fn by_ids_or_skus(
    db: &mut PgConnection,
    ids: &[ProductId],
    skus: &[String],
) -> anyhow::Result<Vec<ProductRow>> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.into_inner()).collect();
    sqlx::query_as(select_products!("WHERE id = ANY($1) OR sku = ANY($2)"))
        .bind(&ids)
        .bind(skus)
        .fetch_all(db)
        .await
        .context("reading products to quote")
}

/// The product, locked until the transaction ends (archived ones included).
pub(crate) async fn find_for_update(db: &mut PgConnection, id: ProductId) -> anyhow::Result<Option<ProductRow>> {
    sqlx::query_as(self::select_products!("WHERE id = $1 FOR UPDATE"))
        .bind(id.into_inner())
        .fetch_optional(db)
        .await
        .context("locking a product")
}

/// A product's editable fields, as they are to be stored.
#[derive(Debug, Clone)]
pub(crate) struct ProductFields<'a> {
    pub(crate) name: &'a str,
    pub(crate) description: &'a str,
    pub(crate) price: i64,
    pub(crate) currency: &'a str,
    pub(crate) active: bool,
    pub(crate) low_stock_threshold: i32,
}

/// Replaces a product's editable fields, bumping its version.
pub(crate) async fn update(
    db: &mut PgConnection,
    id: ProductId,
    fields: &ProductFields<'_>,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE products SET name = $2, description = $3, price = $4, currency = $5, active = $6, low_stock_threshold = $7,
                version = version + 1, updated_at = $8
          WHERE id = $1",
    )
    .bind(id.into_inner())
    .bind(fields.name)
    .bind(fields.description)
    .bind(fields.price)
    .bind(fields.currency)
    .bind(fields.active)
    .bind(fields.low_stock_threshold)
    .bind(at)
    .execute(db)
    .await
    .context("changing a product")?;
    Ok(())
}

/// Archives a product (a soft delete: no longer for sale, kept for history and order lines).
/// Returns false when it was already archived.
pub(crate) async fn archive(db: &mut PgConnection, id: ProductId, at: DateTime<Utc>) -> anyhow::Result<bool> {
    let archived = sqlx::query(
        "UPDATE products SET archived_at = $2, active = false, version = version + 1, updated_at = $2
          WHERE id = $1 AND archived_at IS NULL",
    )
    .bind(id.into_inner())
    .bind(at)
    .execute(db)
    .await
    .context("archiving a product")?;
    Ok(archived.rows_affected() == 1)
}

/// Which products a catalogue listing covers (always only those for sale).
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter {
    /// Words to find in the name or description (`websearch_to_tsquery` syntax: `"exact phrase"`,
    /// `or`, `-excluded`).
    pub(crate) q: Option<String>,
    pub(crate) min_price: Option<i64>,
    pub(crate) max_price: Option<i64>,
    pub(crate) currency: Option<String>,
    /// `Some(true)`: only with units available; `Some(false)`: only without.
    pub(crate) in_stock: Option<bool>,
}

pub(crate) const SORTABLE: &[&str] = &["name", "price", "created_at", "relevance"];

/// The sort key of a listed product: the sort field's value and the id as tie-breaker.
/// Tagged, so a cursor names the field it continues.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ListKey {
    Name(String, ProductId),
    Price(i64, ProductId),
    CreatedAt(DateTime<Utc>, ProductId),
    Relevance(f32, ProductId),
}

/// A listed product and how well it matches the search (0 without one).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Listed {
    #[sqlx(flatten)]
    pub(crate) product: ProductRow,
    pub(crate) rank: f32,
}

pub(crate) fn list_key(listed: &Listed, field: &str) -> ListKey {
    let product = &listed.product;
    match field {
        "price" => ListKey::Price(product.price, product.id),
        "created_at" => ListKey::CreatedAt(product.created_at, product.id),
        "relevance" => ListKey::Relevance(listed.rank, product.id),
        _ => ListKey::Name(product.name.clone(), product.id),
    }
}

/// One page of products for sale (`limit + 1` rows fetched), ordered by `field` then id, so
/// pages stay stable while products are added. Relevance lists best matches first.
pub(crate) async fn list(
    db: &mut PgConnection,
    filter: &ListFilter,
    page: &PageRequest<ListKey>,
) -> anyhow::Result<Vec<Listed>> {
    fn matching(query: &mut QueryBuilder<Postgres>, q: &str) {
        query.push("websearch_to_tsquery('simple', ").push_bind(q).push(")");
    }
    // The columns of `select_products!`, plus the rank of the search.
    let mut query = QueryBuilder::new(
        "SELECT id, sku, name, description, price, currency, active, archived_at, on_hand, reserved,
                low_stock_threshold, version, created_at, updated_at, ",
    );
    match filter.q.as_deref() {
        Some(q) => {
            query.push("ts_rank(search, ");
            matching(&mut query, q);
            query.push(")");
        }
        None => {
            query.push("0::real");
        }
    }
    query.push(" AS rank FROM products WHERE active AND archived_at IS NULL");
    if let Some(q) = filter.q.as_deref() {
        query.push(" AND search @@ ");
        matching(&mut query, q);
    }
    if let Some(min) = filter.min_price {
        query.push(" AND price >= ").push_bind(min);
    }
    if let Some(max) = filter.max_price {
        query.push(" AND price <= ").push_bind(max);
    }
    if let Some(currency) = &filter.currency {
        query.push(" AND currency = ").push_bind(currency.clone());
    }
    match filter.in_stock {
        Some(true) => query.push(" AND on_hand - reserved > 0"),
        Some(false) => query.push(" AND on_hand - reserved <= 0"),
        None => &mut query,
    };
    let (field, descending) = sort_of(page);
    let op = if descending { "<" } else { ">" };
    match (&page.after, field) {
        (None, _) => {}
        (Some(ListKey::Name(name, id)), "name") => {
            let id = id.into_inner();
            query.push(format!(" AND (name, id) {op} (")).push_bind(name.clone()).push(", ").push_bind(id).push(")");
        }
        (Some(ListKey::Price(price, id)), "price") => {
            let id = id.into_inner();
            query.push(format!(" AND (price, id) {op} (")).push_bind(*price).push(", ").push_bind(id).push(")");
        }
        (Some(ListKey::CreatedAt(at, id)), "created_at") => {
            let id = id.into_inner();
            query.push(format!(" AND (created_at, id) {op} (")).push_bind(*at).push(", ").push_bind(id).push(")");
        }
        (Some(ListKey::Relevance(rank, id)), "relevance") => {
            let q = filter.q.as_deref().context("a relevance cursor without a search")?;
            // Best first, then by id: (-rank, id) ascending.
            query.push(" AND (-ts_rank(search, ");
            matching(&mut query, q);
            query.push("), id) > (").push_bind(-rank).push(", ").push_bind(id.into_inner()).push(")");
        }
        (Some(_), _) => anyhow::bail!("a cursor of another sort reached the query"),
    }
    let direction = if descending { "DESC" } else { "ASC" };
    if field == "relevance" {
        query.push(" ORDER BY rank DESC, id ASC LIMIT ");
    } else {
        let column = match field {
            "price" => "price",
            "created_at" => "created_at",
            _ => "name",
        };
        query.push(format!(" ORDER BY {column} {direction}, id {direction} LIMIT "));
    }
    query.push_bind(i64::from(page.limit) + 1);
    query.build_query_as().fetch_all(db).await.context("listing products")
}

/// The field a listing sorts by (one at a time; `name` by default) and its direction.
pub(crate) fn sort_of<K>(page: &PageRequest<K>) -> (&'static str, bool) {
    page.sort.keys().first().map_or(("name", false), |key| (key.field, key.descending))
}
