//! The inventory port, one set of cases run twice: against the service in process (how orders
//! calls it in the monolith) and against the contract's HTTP client talking to the module's
//! internal API (how orders calls it from another process). Both must answer alike.

use std::sync::Arc;

use inventory_contract::client::InventoryClient;
use inventory_contract::{InventoryApi, LineProblem, LineProblemKind, ProductRef, QuoteLine, Sku};
use platform::port::CallContext;
use platform::remote::TransportSettings;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::support::{Harness, qty};

/// The port as orders sees it in each topology.
enum Reached {
    InProcess,
    OverHttp,
}

fn port(app: &Harness, reached: &Reached) -> Arc<dyn InventoryApi> {
    match reached {
        Reached::InProcess => app.module.api(),
        Reached::OverHttp => {
            Arc::new(InventoryClient::new(app.port_transport("orders", TransportSettings::default()).unwrap()))
        }
    }
}

async fn prices_lines_by_id_and_by_sku_in_request_order(reached: Reached) {
    let app = Harness::start().await;
    let mug = app.product("MUG-1", 1250, 7).await;
    app.product("TEE-1", 2000, 3).await;
    let lines = [
        QuoteLine { product: ProductRef::Sku(Sku::parse("TEE-1").unwrap()), quantity: qty(2) },
        QuoteLine { product: ProductRef::Id(mug.into()), quantity: qty(1) },
    ];
    let quote = port(&app, &reached).quote(&CallContext::system("test"), &lines).await.unwrap();
    assert!(quote.problems.is_empty(), "{quote:?}");
    assert_eq!(quote.currency.map(|c| c.to_string()).as_deref(), Some("EUR"));
    let priced: Vec<(&str, u32, i64, u32)> =
        quote.lines.iter().map(|l| (l.sku.as_str(), l.quantity.get(), l.unit_price.amount, l.available)).collect();
    assert_eq!(priced, [("TEE-1", 2, 2000, 3), ("MUG-1", 1, 1250, 7)]);
    assert_eq!(quote.lines[1].product_id.into_inner(), mug);
}

async fn says_per_line_what_stands_in_the_way(reached: Reached) {
    let app = Harness::start().await;
    app.product("MUG-1", 1250, 7).await;
    let archived = app.product("OLD-1", 100, 1).await;
    let mut db = app.database.admin_connection().await.unwrap();
    sqlx::query("UPDATE inventory.products SET active = false, archived_at = now() WHERE id = $1")
        .bind(archived)
        .execute(&mut db)
        .await
        .unwrap();
    let lines = [
        QuoteLine { product: ProductRef::Sku(Sku::parse("MUG-1").unwrap()), quantity: qty(1) },
        QuoteLine { product: ProductRef::Sku(Sku::parse("NOPE-1").unwrap()), quantity: qty(1) },
        QuoteLine { product: ProductRef::Id(archived.into()), quantity: qty(1) },
        QuoteLine { product: ProductRef::Id(Uuid::now_v7().into()), quantity: qty(1) },
    ];
    let quote = port(&app, &reached).quote(&CallContext::system("test"), &lines).await.unwrap();
    assert_eq!(
        quote.problems,
        [
            LineProblem { line: 1, kind: LineProblemKind::UnknownProduct },
            LineProblem { line: 2, kind: LineProblemKind::InactiveProduct },
            LineProblem { line: 3, kind: LineProblemKind::UnknownProduct },
        ]
    );
    assert_eq!(quote.lines.len(), 1);
}

#[tokio::test]
async fn in_process_the_port_prices_lines_by_id_and_by_sku_in_request_order() {
    prices_lines_by_id_and_by_sku_in_request_order(Reached::InProcess).await;
}

#[tokio::test]
async fn over_http_the_port_prices_lines_by_id_and_by_sku_in_request_order() {
    prices_lines_by_id_and_by_sku_in_request_order(Reached::OverHttp).await;
}

#[tokio::test]
async fn in_process_the_port_says_per_line_what_stands_in_the_way() {
    says_per_line_what_stands_in_the_way(Reached::InProcess).await;
}

#[tokio::test]
async fn over_http_the_port_says_per_line_what_stands_in_the_way() {
    says_per_line_what_stands_in_the_way(Reached::OverHttp).await;
}

#[tokio::test]
async fn the_internal_api_admits_only_service_tokens_of_declared_callers_and_the_public_api_refuses_them() {
    let app = Harness::start().await;
    let app = &app;
    let quote = |token: Option<String>| async move {
        let mut request = app.client.post(app.url("/internal/inventory/v1/quote")).json(&json!({"lines": []}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status()
    };
    assert_eq!(quote(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(quote(Some(app.admin_token.clone())).await, StatusCode::UNAUTHORIZED, "a user's token");
    app.service_keys.sign_for("notifications").unwrap();
    let undeclared = app.service_keys.mint("notifications", "inventory").unwrap();
    assert_eq!(quote(Some(undeclared)).await, StatusCode::FORBIDDEN, "notifications does not declare InventoryApi");
    app.service_keys.sign_for("orders").unwrap();
    let orders = app.service_keys.mint("orders", "inventory").unwrap();
    assert_eq!(quote(Some(orders.clone())).await, StatusCode::OK);

    // A service token opens nothing on the public API.
    let response = app.call(Method::GET, "/api/v1/products?include_archived=true", Some(&orders), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
