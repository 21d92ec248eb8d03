//! Reservations driven by orders' events: all lines or none, never oversold under real
//! concurrency, committed, released, restocked and expired — each once, whatever is
//! delivered twice. And the quote port and the demo catalogue.

use std::time::Duration;

use chrono::Utc;
use inventory::InventoryConfig;
use inventory_contract::{LineProblemKind, ProductRef, QuoteLine, Sku};
use orders_contract::events::{CancellationReason, OrderCancelled, OrderConfirmed, OrderPlaced};
use orders_contract::{OrderId, OrderLine, OrderStatus, ShippingAddress};
use platform::money::{Currency, Money};
use platform::port::CallContext;
use serde_json::Value;
use uuid::Uuid;

use crate::support::{Harness, qty};

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

fn placed(order: Uuid, lines: &[(Uuid, u32)]) -> OrderPlaced {
    OrderPlaced {
        order_id: OrderId(order),
        user_id: Uuid::now_v7(),
        lines: lines
            .iter()
            .map(|(product, quantity)| OrderLine {
                product_id: (*product).into(),
                sku: "SKU".to_owned(),
                name: "Thing".to_owned(),
                quantity: qty(*quantity),
                unit_price: eur(100),
                line_total: eur(100 * i64::from(*quantity)),
            })
            .collect(),
        subtotal: eur(100),
        shipping: eur(0),
        total: eur(100),
        shipping_address: ShippingAddress {
            name: "A".to_owned(),
            line1: "1 Road".to_owned(),
            line2: None,
            city: "Town".to_owned(),
            region: None,
            postal_code: "1".to_owned(),
            country: "GB".to_owned(),
        },
        placed_at: Utc::now(),
    }
}

fn confirmed(order: Uuid) -> OrderConfirmed {
    OrderConfirmed {
        order_id: OrderId(order),
        user_id: Uuid::now_v7(),
        payment_id: Uuid::now_v7().into(),
        total: eur(100),
        confirmed_at: Utc::now(),
    }
}

fn cancelled(order: Uuid, from: OrderStatus) -> OrderCancelled {
    OrderCancelled {
        order_id: OrderId(order),
        user_id: Uuid::now_v7(),
        reason: CancellationReason::CustomerRequest,
        detail: None,
        cancelled_from: from,
        cancelled_at: Utc::now(),
    }
}

async fn movements_sum(app: &Harness, product: Uuid) -> i64 {
    let mut db = app.database.admin_connection().await.unwrap();
    sqlx::query_scalar("SELECT coalesce(sum(quantity), 0)::bigint FROM inventory.stock_movements WHERE product_id = $1")
        .bind(product)
        .fetch_one(&mut db)
        .await
        .unwrap()
}

#[tokio::test]
async fn many_concurrent_orders_for_the_last_units_reserve_exactly_what_is_available() {
    let app = Harness::start().await;
    let (a, b) = (app.product("LAST-A", 100, 10).await, app.product("LAST-B", 100, 4).await);
    // 30 single-line orders for A, and 10 two-line orders for A and B, all at once.
    let singles: Vec<Uuid> = (0..30).map(|_| Uuid::now_v7()).collect();
    let pairs: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    let publishing = singles
        .iter()
        .map(|order| placed(*order, &[(a, 1)]))
        .chain(pairs.iter().map(|order| placed(*order, &[(a, 1), (b, 1)])))
        .collect::<Vec<_>>();
    futures::future::join_all(publishing.iter().map(|event| app.publish(event))).await;
    app.settle().await;

    let reserved = app.events("inventory.stock_reserved").await;
    let rejected = app.events("inventory.stock_rejected").await;
    assert_eq!(reserved.len() + rejected.len(), 40, "every order answered once");
    let units_of = |events: &[Value], product: Uuid| -> i64 {
        events
            .iter()
            .flat_map(|e| e["lines"].as_array().unwrap().clone())
            .filter(|l| l["product_id"] == product.to_string())
            .map(|l| l["quantity"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(units_of(&reserved, a), 10, "exactly A's ten units were reserved");
    assert!(units_of(&reserved, b) <= 4, "never more of B than it had");
    assert_eq!(app.levels(a).await, (10, 10));
    let (b_on_hand, b_reserved) = app.levels(b).await;
    assert_eq!(b_on_hand, 4);
    assert_eq!(i64::from(b_reserved), units_of(&reserved, b));
    for event in &rejected {
        let line = &event["lines"][0];
        assert_eq!(line["code"], "insufficient_stock", "{event}");
    }
    // All or nothing: no pair order holds A without B.
    let mut db = app.database.admin_connection().await.unwrap();
    let half_held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM inventory.reservations r
          WHERE r.status = 'held' AND (SELECT count(*) FROM inventory.reservation_lines l WHERE l.reservation_id = r.id) = 1
            AND r.order_id = ANY($1)",
    )
    .bind(&pairs)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(half_held, 0);
    assert_eq!(movements_sum(&app, a).await, 10, "movements add up to on-hand");
}

#[tokio::test]
async fn a_rejection_names_each_line_and_holds_nothing() {
    let app = Harness::start().await;
    let (plenty, short, gone) =
        (app.product("PLENTY", 100, 50).await, app.product("SHORT", 100, 1).await, app.product("GONE", 100, 5).await);
    let mut db = app.database.admin_connection().await.unwrap();
    sqlx::query("UPDATE inventory.products SET active = false WHERE id = $1")
        .bind(gone)
        .execute(&mut db)
        .await
        .unwrap();
    let unknown = Uuid::now_v7();
    let order = Uuid::now_v7();
    app.publish(&placed(order, &[(plenty, 2), (short, 3), (gone, 1), (unknown, 1)])).await;
    let rejected = &app.await_events("inventory.stock_rejected", order, 1).await[0];
    let mut codes: Vec<(String, String, i64, i64)> = rejected["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["product_id"].as_str().unwrap().to_owned(),
                l["code"].as_str().unwrap().to_owned(),
                l["requested"].as_i64().unwrap(),
                l["available"].as_i64().unwrap(),
            )
        })
        .collect();
    codes.sort();
    let mut expected = vec![
        (short.to_string(), "insufficient_stock".to_owned(), 3, 1),
        (gone.to_string(), "inactive_product".to_owned(), 1, 5),
        (unknown.to_string(), "unknown_product".to_owned(), 1, 0),
    ];
    expected.sort();
    assert_eq!(codes, expected);
    assert_eq!(app.levels(plenty).await, (50, 0), "nothing held for the line that was fine");
}

#[tokio::test]
async fn the_same_order_event_twice_reserves_commits_and_releases_once() {
    let app = Harness::start().await;
    let product = app.product("TWICE", 100, 10).await;
    let order = Uuid::now_v7();
    let event = placed(order, &[(product, 3)]);
    app.publish(&event).await;
    app.publish(&event).await;
    app.settle().await;
    assert_eq!(app.events("inventory.stock_reserved").await.len(), 1);
    assert_eq!(app.levels(product).await, (10, 3));

    let confirmation = confirmed(order);
    app.publish(&confirmation).await;
    app.publish(&confirmation).await;
    app.settle().await;
    assert_eq!(app.levels(product).await, (7, 0), "committed once: on-hand down, reserved released");
    app.await_reservation(order, "committed").await;

    let cancellation = cancelled(order, OrderStatus::Confirmed);
    app.publish(&cancellation).await;
    app.publish(&cancellation).await;
    app.settle().await;
    assert_eq!(app.levels(product).await, (10, 0), "restocked once");
    app.await_reservation(order, "restocked").await;
    assert_eq!(movements_sum(&app, product).await, 10);
    let mut db = app.database.admin_connection().await.unwrap();
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM inventory.stock_movements WHERE product_id = $1 ORDER BY at, id")
            .bind(product)
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(kinds, ["receive", "commit", "restock"]);
}

#[tokio::test]
async fn cancelling_a_held_reservation_releases_it() {
    let app = Harness::start().await;
    let product = app.product("HELD", 100, 5).await;
    let order = Uuid::now_v7();
    app.publish(&placed(order, &[(product, 5)])).await;
    app.await_reservation(order, "held").await;
    assert_eq!(app.levels(product).await, (5, 5));
    app.publish(&cancelled(order, OrderStatus::AwaitingPayment)).await;
    app.await_reservation(order, "released").await;
    assert_eq!(app.levels(product).await, (5, 0));
    // A confirmation after the release changes nothing.
    app.publish(&confirmed(order)).await;
    app.settle().await;
    assert_eq!(app.levels(product).await, (5, 0));
}

#[tokio::test]
async fn a_reservation_expires_after_its_time_to_live_and_frees_its_units() {
    let app = Harness::start_with(InventoryConfig { reservation_ttl: Duration::from_secs(2) }).await;
    let product = app.product("TTL", 100, 4).await;
    let order = Uuid::now_v7();
    app.publish(&placed(order, &[(product, 4)])).await;
    let reserved = &app.await_events("inventory.stock_reserved", order, 1).await[0];
    let expired = &app.await_events("inventory.reservation_expired", order, 1).await[0];
    assert_eq!(expired["reservation_id"], reserved["reservation_id"]);
    assert_eq!(app.levels(product).await, (4, 0));
    app.await_reservation(order, "expired").await;
    // Paid after all (a lagging subscription): the units are taken from on-hand.
    app.publish(&confirmed(order)).await;
    app.await_reservation(order, "committed").await;
    assert_eq!(app.levels(product).await, (0, 0));
}

#[tokio::test]
async fn reserving_below_the_threshold_reports_low_stock_once() {
    let app = Harness::start().await;
    let product = app.product("LOW", 100, 6).await;
    let mut db = app.database.admin_connection().await.unwrap();
    sqlx::query("UPDATE inventory.products SET low_stock_threshold = 3 WHERE id = $1")
        .bind(product)
        .execute(&mut db)
        .await
        .unwrap();
    for quantity in [2, 1, 1] {
        app.publish(&placed(Uuid::now_v7(), &[(product, quantity)])).await;
    }
    app.settle().await;
    let low = app.events("inventory.low_stock").await;
    assert_eq!(low.len(), 1, "{low:?}");
    // The orders land on different partitions in any order: the crossing is at 3 or 2 left.
    assert!(matches!(low[0]["available"].as_i64(), Some(2 | 3)), "{low:?}");
    assert_eq!(low[0]["threshold"].as_i64(), Some(3));
}

#[tokio::test]
async fn the_quote_port_prices_lines_and_names_problems() {
    let app = Harness::start().await;
    let mug = app.product("MUG-9", 1250, 7).await;
    let off = app.product("OFF-9", 500, 7).await;
    let mut db = app.database.admin_connection().await.unwrap();
    sqlx::query("UPDATE inventory.products SET archived_at = now(), active = false WHERE id = $1")
        .bind(off)
        .execute(&mut db)
        .await
        .unwrap();
    let usd = Uuid::now_v7();
    sqlx::query("INSERT INTO inventory.products (id, sku, name, price, currency, created_at, updated_at) VALUES ($1, 'USD-9', 'Dollar thing', 100, 'USD', now(), now())")
        .bind(usd)
        .execute(&mut db)
        .await
        .unwrap();
    let lines = [
        QuoteLine { product: ProductRef::Sku(Sku::parse("mug-9").unwrap()), quantity: qty(9) },
        QuoteLine { product: ProductRef::Id(off.into()), quantity: qty(1) },
        QuoteLine { product: ProductRef::Sku(Sku::parse("NOPE").unwrap()), quantity: qty(1) },
        QuoteLine { product: ProductRef::Id(usd.into()), quantity: qty(1) },
    ];
    let quote = app.module.api().quote(&CallContext::system("test"), &lines).await.unwrap();
    assert_eq!(quote.currency.map(|c| c.to_string()), Some("EUR".to_owned()));
    assert_eq!(quote.lines.len(), 1);
    assert_eq!(
        (quote.lines[0].product_id.into_inner(), quote.lines[0].unit_price, quote.lines[0].available),
        (mug, eur(1250), 7)
    );
    let kinds: Vec<(usize, LineProblemKind)> = quote.problems.iter().map(|p| (p.line, p.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, LineProblemKind::InactiveProduct),
            (2, LineProblemKind::UnknownProduct),
            (3, LineProblemKind::CurrencyMismatch)
        ]
    );
}

#[tokio::test]
async fn the_demo_catalogue_fills_an_empty_database_once() {
    let app = Harness::start().await;
    assert_eq!(app.module.seed_demo_catalogue().await.unwrap(), 20);
    assert_eq!(app.module.seed_demo_catalogue().await.unwrap(), 0);
    let mut db = app.database.admin_connection().await.unwrap();
    let (products, stocked): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE on_hand > 0) FROM inventory.products")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!((products, stocked), (20, 20));
}

#[tokio::test]
async fn cancelling_after_a_late_commit_restocks_only_what_the_commit_took() {
    let app = Harness::start_with(InventoryConfig { reservation_ttl: Duration::from_secs(2) }).await;
    let product = app.product("SCARCE", 100, 3).await;
    let late = Uuid::now_v7();
    app.publish(&placed(late, &[(product, 3)])).await;
    app.await_events("inventory.reservation_expired", late, 1).await;
    // The freed units are sold to someone else before the late confirmation arrives.
    let other = Uuid::now_v7();
    app.publish(&placed(other, &[(product, 3)])).await;
    app.await_reservation(other, "held").await;
    app.publish(&confirmed(late)).await;
    app.await_reservation(late, "committed").await;
    assert_eq!(app.levels(product).await, (3, 3), "nothing could be taken for the late order");
    app.publish(&cancelled(late, OrderStatus::Confirmed)).await;
    app.await_reservation(late, "restocked").await;
    assert_eq!(app.levels(product).await, (3, 3), "nothing was put back that had not left");
    assert_eq!(movements_sum(&app, product).await, 3);
}
