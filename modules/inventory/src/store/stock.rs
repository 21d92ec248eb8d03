//! Stock levels and movements: the rows every stock change locks and writes.

use anyhow::Context;
use chrono::{DateTime, Utc};
use inventory_contract::{ProductId, Quantity};
use orders_contract::OrderId;
use platform::http::PageRequest;
use sqlx::{PgConnection, QueryBuilder};
use uuid::Uuid;

use crate::domain::{MovementKind, StockLevel};

/// A product's stock row, as locked for a change.
#[derive(Debug, Clone, sqlx::FromRow)]
struct LevelRow {
    id: Uuid,
    sku: String,
    name: String,
    active: bool,
    archived: bool,
    on_hand: i32,
    reserved: i32,
    low_stock_threshold: i32,
    low_stock_alerted: bool,
}

impl From<LevelRow> for StockLevel {
    fn from(row: LevelRow) -> Self {
        let LevelRow { id, sku, name, active, archived, on_hand, reserved, low_stock_threshold, low_stock_alerted } =
            row;
        let id = ProductId::from(id);
        Self { id, sku, name, active, archived, on_hand, reserved, low_stock_threshold, low_stock_alerted }
    }
}

/// Locks the stock rows of `products` until the transaction ends, in id order so that
/// concurrent reservations of overlapping products cannot deadlock. Missing ids are absent.
pub(crate) async fn lock(db: &mut PgConnection, products: &[ProductId]) -> anyhow::Result<Vec<StockLevel>> {
    let mut ids: Vec<Uuid> = products.iter().map(|id| id.into_inner()).collect();
    ids.sort();
    ids.dedup();
    let rows: Vec<LevelRow> = sqlx::query_as(
        "SELECT id, sku, name, active, archived_at IS NOT NULL AS archived, on_hand, reserved, low_stock_threshold,
                low_stock_alerted
           FROM products WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(db)
    .await
    .context("locking stock")?;
    Ok(rows.into_iter().map(StockLevel::from).collect())
}

/// Writes new levels (and the low-stock flag), bumping the product's version.
pub(crate) async fn write(db: &mut PgConnection, levels: &StockLevel, at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE products SET on_hand = $2, reserved = $3, low_stock_alerted = $4, version = version + 1, updated_at = $5
          WHERE id = $1",
    )
    .bind(levels.id.into_inner())
    .bind(levels.on_hand)
    .bind(levels.reserved)
    .bind(levels.low_stock_alerted)
    .bind(at)
    .execute(db)
    .await
    .context("writing stock levels")?;
    Ok(())
}

/// One immutable change of on_hand.
#[derive(Debug, Clone)]
pub(crate) struct NewMovement<'a> {
    pub(crate) product_id: ProductId,
    pub(crate) kind: MovementKind,
    /// Signed change of on_hand (so not a `Quantity`).
    pub(crate) quantity: i32,
    pub(crate) on_hand_after: i32,
    pub(crate) reason: &'a str,
    pub(crate) order_id: Option<OrderId>,
    pub(crate) actor: Option<&'a str>,
    pub(crate) at: DateTime<Utc>,
}

pub(crate) async fn record_movement(db: &mut PgConnection, movement: &NewMovement<'_>) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO stock_movements (id, product_id, kind, quantity, on_hand_after, reason, order_id, actor, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(movement.product_id.into_inner())
    .bind(movement.kind)
    .bind(movement.quantity)
    .bind(movement.on_hand_after)
    .bind(movement.reason)
    .bind(movement.order_id.map(|id| id.0))
    .bind(movement.actor)
    .bind(movement.at)
    .execute(db)
    .await
    .context("recording a stock movement")?;
    Ok(id)
}

/// A movement as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct MovementRow {
    pub(crate) id: Uuid,
    pub(crate) kind: MovementKind,
    pub(crate) quantity: i32,
    pub(crate) on_hand_after: i32,
    pub(crate) reason: String,
    pub(crate) order_id: Option<Uuid>,
    pub(crate) actor: Option<String>,
    pub(crate) at: DateTime<Utc>,
}

macro_rules! select_movements {
    ($rest:literal) => {
        concat!("SELECT id, kind, quantity, on_hand_after, reason, order_id, actor, at FROM stock_movements ", $rest)
    };
}

/// One movement, by id.
pub(crate) async fn movement(db: &mut PgConnection, id: Uuid) -> anyhow::Result<MovementRow> {
    sqlx::query_as(select_movements!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
        .context("reading a movement")?
        .context("no such movement")
}

pub(crate) const MOVEMENTS_SORTABLE: &[&str] = &["at"];

/// The sort key of a listed movement: when, then the id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct MovementKey(pub(crate) DateTime<Utc>, pub(crate) Uuid);

/// One page of a product's movements (`limit + 1` rows fetched), by time then id.
pub(crate) async fn movements(
    db: &mut PgConnection,
    product: ProductId,
    kind: Option<MovementKind>,
    page: &PageRequest<MovementKey>,
) -> anyhow::Result<Vec<MovementRow>> {
    let descending = page.sort.keys().first().is_none_or(|key| key.descending);
    let mut query = QueryBuilder::new(select_movements!("WHERE product_id = "));
    query.push_bind(product.into_inner());
    if let Some(kind) = kind {
        query.push(" AND kind = ").push_bind(kind);
    }
    if let Some(MovementKey(at, id)) = &page.after {
        let op = if descending { "<" } else { ">" };
        query.push(format!(" AND (at, id) {op} (")).push_bind(*at).push(", ").push_bind(*id).push(")");
    }
    let direction = if descending { "DESC" } else { "ASC" };
    query.push(format!(" ORDER BY at {direction}, id {direction} LIMIT "));
    query.push_bind(i64::from(page.limit) + 1);
    query.build_query_as().fetch_all(db).await.context("listing stock movements")
}

/// Units each product's `commit` movements took for `order` (positive numbers).
pub(crate) async fn committed_for_order(
    db: &mut PgConnection,
    order: OrderId,
) -> anyhow::Result<Vec<(ProductId, Quantity)>> {
    let rows: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT product_id, (-sum(quantity))::int FROM stock_movements
          WHERE order_id = $1 AND kind = 'commit' GROUP BY product_id",
    )
    .bind(order.0)
    .fetch_all(db)
    .await
    .context("reading what an order's commit took")?;
    super::units_per_product(rows, "units committed")
}
