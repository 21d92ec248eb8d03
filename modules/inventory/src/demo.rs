//! Demo data: a small shop's catalogue with stock, so a fresh `cargo run` has something to
//! order. Only into an empty catalogue, under a lock, so replicas starting together seed once.

use inventory_contract::ProductId;
use platform::bus::Metadata;

use crate::domain::{LevelChange, MovementKind};
use crate::service::InventoryService;
use crate::service::{StockError, Why, apply_level};
use crate::store::products::{self, NewProduct};
use crate::store::stock;

/// (SKU, name, description, price in cents, units, low-stock threshold)
const CATALOGUE: [(&str, &str, &str, i64, i32, i32); 20] = [
    ("MUG-001", "Enamel mug", "A white enamel camping mug with a blue rim, 350 ml.", 1250, 120, 10),
    ("MUG-002", "Stoneware mug", "Hand-glazed stoneware mug in forest green, 300 ml.", 1890, 60, 8),
    ("TEE-001", "Organic cotton tee", "Heavyweight organic cotton t-shirt, unisex fit.", 2500, 200, 20),
    ("TEE-002", "Striped breton tee", "Navy and white striped long-sleeve breton top.", 3900, 80, 10),
    ("HOOD-001", "Merino hoodie", "Lightweight merino wool hoodie for cool evenings.", 8900, 40, 5),
    ("CAP-001", "Canvas cap", "Six-panel waxed canvas cap with a leather strap.", 2200, 90, 10),
    ("BAG-001", "Tote bag", "Sturdy natural canvas tote with an inner pocket.", 1500, 150, 15),
    ("BAG-002", "Roll-top backpack", "Waterproof 22 litre roll-top backpack.", 7900, 35, 5),
    (
        "BOT-001",
        "Steel water bottle",
        "Insulated stainless steel bottle, keeps drinks cold for 24 hours.",
        2900,
        110,
        10,
    ),
    ("NOTE-001", "Dot grid notebook", "A5 notebook with 160 pages of dot grid paper.", 1400, 300, 25),
    ("PEN-001", "Brass pen", "Solid brass ballpoint pen that ages beautifully.", 3400, 70, 8),
    ("SOCK-001", "Wool socks", "Warm hiking socks in merino blend, pair.", 1600, 180, 20),
    ("BEAN-001", "Coffee beans", "Single-origin Ethiopian coffee beans, 250 g.", 1150, 90, 15),
    ("TEA-001", "Loose leaf tea", "Smoky lapsang souchong loose leaf tea, 100 g.", 950, 75, 10),
    ("CAND-001", "Soy candle", "Cedar and sage scented soy wax candle.", 2100, 55, 6),
    ("PLANT-001", "Ceramic planter", "Matte white ceramic planter with a drainage tray.", 2700, 45, 5),
    ("BLNK-001", "Wool blanket", "Woven lambswool throw blanket in oatmeal.", 11900, 20, 3),
    ("KNIFE-001", "Pocket knife", "Folding pocket knife with an olive wood handle.", 4500, 30, 4),
    ("LAMP-001", "Desk lamp", "Adjustable steel desk lamp with a warm LED bulb.", 6400, 25, 3),
    ("PUZZ-001", "Jigsaw puzzle", "A 1000-piece jigsaw puzzle of a mountain lake.", 2400, 3, 5),
];

/// Seeds [`CATALOGUE`] when there are no products; returns how many were added.
///
/// # Errors
/// Database failures.
pub(crate) async fn seed(service: &InventoryService) -> anyhow::Result<usize> {
    let mut tx = service.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('inventory.demo_catalogue'))").execute(&mut *tx).await?;
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM products").fetch_one(&mut *tx).await?;
    if existing > 0 {
        return Ok(0);
    }
    let now = service.now();
    let metadata = Metadata::system("inventory.demo_catalogue");
    for (sku, name, description, price, units, threshold) in CATALOGUE {
        let id = ProductId::new();
        let product = NewProduct {
            id,
            sku,
            name,
            description,
            price,
            currency: "EUR",
            active: true,
            low_stock_threshold: threshold,
            at: now,
        };
        products::insert(&mut tx, &product).await?;
        let mut locked = stock::lock(&mut tx, &[id]).await?;
        if let Some(levels) = locked.first_mut() {
            let change = LevelChange::count(MovementKind::Receive, units);
            let why = Why { reason: "opening stock (demo data)", order_id: None, actor: Some("system:demo") };
            apply_level(&mut tx, levels, change, why, &metadata, now).await.map_err(StockError::into_unexpected)?;
        }
    }
    tx.commit().await?;
    tracing::info!(products = CATALOGUE.len(), "seeded the demo catalogue");
    Ok(CATALOGUE.len())
}
