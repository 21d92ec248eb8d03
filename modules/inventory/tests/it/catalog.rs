//! The catalogue over HTTP: who may read and write it, validation, SKUs, ETags and
//! conditional requests, archiving, search, filters, sorts and stable pages.

use inventory_contract::{LineProblemKind, ProductRef, QuoteLine};
use platform::port::CallContext;
use reqwest::header::{CACHE_CONTROL, ETAG, IF_MATCH, IF_NONE_MATCH, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Harness, code, qty, read};

/// A valid creation body.
pub fn product_body(sku: &str, name: &str, price: i64) -> Value {
    json!({"sku": sku, "name": name, "price": {"amount": price, "currency": "EUR"}})
}

/// Creates a product as the admin; returns its view.
pub async fn create(app: &Harness, body: Value) -> Value {
    let (status, answer) =
        read(app.call(Method::POST, "/api/v1/products", Some(&app.admin_token), Some(body)).await).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["data"].clone()
}

pub fn id_of(product: &Value) -> Uuid {
    product["id"].as_str().unwrap().parse().unwrap()
}

/// The product as `token` sees it.
async fn get(app: &Harness, id: Uuid, token: Option<&str>) -> (StatusCode, Value) {
    read(app.call(Method::GET, format!("/api/v1/products/{id}"), token, None).await).await
}

async fn patch(app: &Harness, id: Uuid, body: Value) -> (StatusCode, Value) {
    read(app.call(Method::PATCH, format!("/api/v1/products/{id}"), Some(&app.admin_token), Some(body)).await).await
}

/// The SKUs of one page of `GET /api/v1/products?{query}`, and the next cursor.
async fn list(app: &Harness, query: &str) -> (Vec<String>, Option<String>) {
    let (status, body) = read(app.call(Method::GET, format!("/api/v1/products?{query}"), None, None).await).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    let skus = body["data"].as_array().unwrap().iter().map(|p| p["sku"].as_str().unwrap().to_owned()).collect();
    (skus, body["meta"]["next_cursor"].as_str().map(str::to_owned))
}

async fn listed(app: &Harness, query: &str) -> Vec<String> {
    list(app, query).await.0
}

async fn list_status(app: &Harness, query: &str) -> (StatusCode, String) {
    let (status, body) = read(app.call(Method::GET, format!("/api/v1/products?{query}"), None, None).await).await;
    (status, code(&body).to_owned())
}

#[tokio::test]
async fn catalogue_writes_are_for_admins_and_reads_are_open_to_everyone() {
    let app = Harness::start().await;
    let product = id_of(&create(&app, product_body("MUG-001", "Enamel mug", 1250)).await);
    let writes = [
        (Method::POST, "/api/v1/products".to_owned(), Some(product_body("MUG-002", "Another mug", 900))),
        (Method::PATCH, format!("/api/v1/products/{product}"), Some(json!({"name": "Hijacked"}))),
        (Method::DELETE, format!("/api/v1/products/{product}"), None),
    ];
    let roleless = app.signer.token(&app.verifier, &Uuid::now_v7().to_string(), &[]);
    for (method, path, body) in writes {
        let (status, answer) = read(app.call(method.clone(), &path, None, body.clone()).await).await;
        assert_eq!((status, code(&answer)), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{method} {path}");
        for token in [&app.customer_token, &roleless] {
            let (status, answer) = read(app.call(method.clone(), &path, Some(token), body.clone()).await).await;
            assert_eq!((status, code(&answer)), (StatusCode::FORBIDDEN, "forbidden"), "{method} {path}");
        }
    }
    for (who, token) in [("anonymous", None), ("customer", Some(app.customer_token.as_str()))] {
        let (status, body) = get(&app, product, token).await;
        assert_eq!(status, StatusCode::OK, "{who}: {body}");
        assert_eq!(body["data"]["name"], "Enamel mug", "nothing changed");
        let (status, _) = read(app.call(Method::GET, "/api/v1/products", token, None).await).await;
        assert_eq!(status, StatusCode::OK, "{who} lists");
    }
    assert_eq!(listed(&app, "").await, ["MUG-001"], "the refused creation wrote nothing");
    let (status, body) = get(&app, product, Some("not-a-token")).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_token"), "a bad token is not ignored");
}

#[tokio::test]
async fn only_admins_see_on_hand_reserved_and_the_low_stock_threshold() {
    let app = Harness::start().await;
    let body = json!({"sku": "TEE-001", "name": "Tee", "price": {"amount": 2500, "currency": "EUR"},
                      "initial_stock": 7, "low_stock_threshold": 2});
    let product = id_of(&create(&app, body).await);
    let (_, public) = get(&app, product, None).await;
    assert_eq!(public["data"]["stock"], json!({"available": 7, "in_stock": true}));
    assert!(public["data"].get("low_stock_threshold").is_none(), "{public}");
    let (_, admin) = get(&app, product, Some(&app.admin_token)).await;
    assert_eq!(admin["data"]["stock"], json!({"on_hand": 7, "reserved": 0, "available": 7, "in_stock": true}));
    assert_eq!(admin["data"]["low_stock_threshold"], 2);
}

#[tokio::test]
async fn creating_a_product_answers_201_with_its_location_etag_and_opening_stock() {
    let app = Harness::start().await;
    let body = json!({
        "sku": " mug-100 ", "name": "  Travel mug ", "description": "Double-walled steel, 400 ml.",
        "price": {"amount": 2450, "currency": "eur"}, "active": true, "low_stock_threshold": 3, "initial_stock": 12
    });
    let response = app.call(Method::POST, "/api/v1/products", Some(&app.admin_token), Some(body)).await;
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let etag = response.headers()[ETAG].to_str().unwrap().to_owned();
    let (status, created) = read(response).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let product = &created["data"];
    assert_eq!(location, format!("/api/v1/products/{}", product["id"].as_str().unwrap()));
    assert_eq!(product["sku"], "MUG-100");
    assert_eq!(product["name"], "Travel mug");
    assert_eq!(product["price"], json!({"amount": 2450, "currency": "EUR"}));
    assert_eq!(product["stock"]["on_hand"], 12);
    assert_eq!(product["low_stock_threshold"], 3);

    let response = app.call(Method::GET, &location, Some(&app.admin_token), None).await;
    assert_eq!(response.headers()[ETAG].to_str().unwrap(), etag, "the ETag of creation is the current one");
    assert_eq!(read(response).await.1["data"], *product);

    let admin = app.verifier.verify(&app.admin_token).unwrap().subject;
    let mut db = app.database.admin_connection().await.unwrap();
    let movements: Vec<(String, i32, String, Option<String>)> =
        sqlx::query_as("SELECT kind, quantity, reason, actor FROM inventory.stock_movements WHERE product_id = $1")
            .bind(id_of(product))
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(movements, [("receive".to_owned(), 12, "initial stock".to_owned(), Some(admin))]);

    let minimal = create(&app, product_body("cap-1", "Cap", 0)).await;
    assert_eq!(minimal["description"], "");
    assert_eq!(minimal["active"], true);
    assert_eq!(minimal["low_stock_threshold"], 0);
    assert_eq!(minimal["stock"], json!({"on_hand": 0, "reserved": 0, "available": 0, "in_stock": false}));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM inventory.stock_movements WHERE product_id = $1")
        .bind(id_of(&minimal))
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(count, 0, "no stock, no movement");
}

fn failed_fields(body: &Value) -> Vec<&str> {
    body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn invalid_products_are_refused_field_by_field() {
    let app = Harness::start().await;
    let create_with = |body: Value| app.call(Method::POST, "/api/v1/products", Some(&app.admin_token), Some(body));
    let everything_wrong = json!({
        "sku": "bad sku", "name": "  ", "description": "x".repeat(5001),
        "price": {"amount": -1, "currency": "EURO"}, "low_stock_threshold": -1, "initial_stock": 2_147_483_648_i64
    });
    let (status, body) = read(create_with(everything_wrong).await).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(
        failed_fields(&body),
        ["description", "initial_stock", "low_stock_threshold", "name", "price.amount", "price.currency", "sku"]
    );
    for (case, body) in [
        ("unknown field", json!({"sku": "A", "name": "A", "price": {"amount": 1, "currency": "EUR"}, "colour": "red"})),
        ("missing price", json!({"sku": "A", "name": "A"})),
        ("price as a number", json!({"sku": "A", "name": "A", "price": 100})),
    ] {
        let (status, answer) = read(create_with(body).await).await;
        assert_eq!((status, code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"), "{case}: {answer}");
    }
    assert_eq!(listed(&app, "").await, Vec::<String>::new(), "nothing was created");

    let product = id_of(&create(&app, product_body("OK-1", "Fine", 100)).await);
    let (status, body) = patch(
        &app,
        product,
        json!({"name": "", "price": {"amount": -5, "currency": "EUR"}, "low_stock_threshold": -2}),
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(failed_fields(&body), ["low_stock_threshold", "name", "price.amount"]);
    let (status, body) = patch(&app, product, json!({"price": {"amount": 5, "currency": "€"}})).await;
    assert_eq!((status, failed_fields(&body)), (StatusCode::UNPROCESSABLE_ENTITY, vec!["price.currency"]));
    let (_, unchanged) = get(&app, product, None).await;
    assert_eq!((&unchanged["data"]["name"], &unchanged["data"]["price"]["amount"]), (&json!("Fine"), &json!(100)));
}

#[tokio::test]
async fn skus_are_unique_whatever_their_case_and_never_reused() {
    let app = Harness::start().await;
    let cup = id_of(&create(&app, product_body("CUP-1", "Cup", 800)).await);
    let create_with = |sku: &str| {
        app.call(Method::POST, "/api/v1/products", Some(&app.admin_token), Some(product_body(sku, "Other cup", 900)))
    };
    let (status, body) = read(create_with("cup-1").await).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "sku_taken"), "{body}");
    let (status, _) =
        read(app.call(Method::DELETE, format!("/api/v1/products/{cup}"), Some(&app.admin_token), None).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = read(create_with("CUP-1").await).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "sku_taken"), "an archived product keeps its SKU");
}

#[tokio::test]
async fn an_unchanged_etag_answers_304_and_a_stale_if_match_answers_412() {
    let app = Harness::start().await;
    let product = id_of(&create(&app, product_body("LAMP-1", "Desk lamp", 6400)).await);
    let url = app.url(&format!("/api/v1/products/{product}"));
    let conditional_get = |etag: &str| app.client.get(&url).header(IF_NONE_MATCH, etag).send();
    let conditional_patch = |etag: &str, body: Value| {
        app.client.patch(&url).bearer_auth(&app.admin_token).header(IF_MATCH, etag).json(&body).send()
    };

    let response = app.client.get(&url).send().await.unwrap();
    assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
    let public_tag = response.headers()[ETAG].to_str().unwrap().to_owned();
    let response = conditional_get(&public_tag).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()[ETAG].to_str().unwrap(), public_tag);
    assert!(response.text().await.unwrap().is_empty(), "a 304 has no body");
    let response = conditional_get(&format!("\"nope\", W/{public_tag}")).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "lists and weak tags match too");

    let response = app.client.get(&url).bearer_auth(&app.admin_token).send().await.unwrap();
    let admin_tag = response.headers()[ETAG].to_str().unwrap().to_owned();
    assert_ne!(admin_tag, public_tag, "the admin view is another representation");

    let response = conditional_patch(&admin_tag, json!({"name": "Steel desk lamp"})).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let new_tag = response.headers()[ETAG].to_str().unwrap().to_owned();
    assert_ne!(new_tag, admin_tag);
    assert_eq!(conditional_get(&public_tag).await.unwrap().status(), StatusCode::OK, "changed since");

    let (status, body) = read(conditional_patch(&admin_tag, json!({"name": "Lost update"})).await.unwrap()).await;
    assert_eq!((status, code(&body)), (StatusCode::PRECONDITION_FAILED, "precondition_failed"));
    let (status, body) = read(conditional_patch(&format!("W/{new_tag}"), json!({"name": "Weak"})).await.unwrap()).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "If-Match compares strongly: {body}");
    assert_eq!(get(&app, product, None).await.1["data"]["name"], "Steel desk lamp");

    let public_now = app.client.get(&url).send().await.unwrap().headers()[ETAG].to_str().unwrap().to_owned();
    let response = conditional_patch(&public_now, json!({"price": {"amount": 5900, "currency": "EUR"}})).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the public tag of the current version matches too");
    let response = conditional_patch("*", json!({"active": true})).await.unwrap();
    let unchanged_tag = response.headers()[ETAG].to_str().unwrap().to_owned();
    let response =
        app.client.patch(&url).bearer_auth(&app.admin_token).json(&json!({"active": true})).send().await.unwrap();
    assert_eq!(response.headers()[ETAG].to_str().unwrap(), unchanged_tag, "a change of nothing keeps the version");
}

#[tokio::test]
async fn updating_a_product_changes_only_the_given_fields() {
    let app = Harness::start().await;
    let body = json!({"sku": "BAG-1", "name": "Tote bag", "description": "Canvas tote.",
                      "price": {"amount": 1500, "currency": "EUR"}, "low_stock_threshold": 4});
    let product = id_of(&create(&app, body).await);
    app.clock.advance(chrono::TimeDelta::hours(1));
    let (status, body) = patch(
        &app,
        product,
        json!({"description": "Sturdy canvas tote.", "price": {"amount": 1700, "currency": "usd"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let view = &body["data"];
    assert_eq!(view["name"], "Tote bag");
    assert_eq!(view["description"], "Sturdy canvas tote.");
    assert_eq!(view["price"], json!({"amount": 1700, "currency": "USD"}));
    assert_eq!(view["low_stock_threshold"], 4);
    let time = |field: &str| view[field].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(time("updated_at") - time("created_at") >= chrono::TimeDelta::hours(1), "stamped by the module's clock");

    let (status, _) = patch(&app, Uuid::now_v7(), json!({"name": "Ghost"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn inactive_products_are_hidden_from_the_public_but_not_from_admins() {
    let app = Harness::start().await;
    let product = id_of(&create(&app, product_body("DRAFT-1", "Draft", 100)).await);
    let (status, _) = patch(&app, product, json!({"active": false})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get(&app, product, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, product, Some(&app.customer_token)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, product, Some(&app.admin_token)).await.1["data"]["active"], false);
    assert!(listed(&app, "").await.is_empty());
    patch(&app, product, json!({"active": true})).await;
    assert_eq!(listed(&app, "").await, ["DRAFT-1"]);
}

#[tokio::test]
async fn archiving_hides_a_product_and_stops_it_being_ordered() {
    let app = Harness::start().await;
    let product = id_of(&create(&app, json!({"sku": "OLD-1", "name": "Old thing", "price": {"amount": 100, "currency": "EUR"}, "initial_stock": 5})).await);
    let path = format!("/api/v1/products/{product}");
    let archive = || app.call(Method::DELETE, &path, Some(&app.admin_token), None);
    let (status, body) = read(archive().await).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));

    assert_eq!(get(&app, product, None).await.0, StatusCode::NOT_FOUND);
    assert!(listed(&app, "").await.is_empty());
    let (status, body) = patch(&app, product, json!({"name": "Revived"})).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (_, admin_view) = get(&app, product, Some(&app.admin_token)).await;
    assert_eq!(admin_view["data"]["active"], false);
    assert!(admin_view["data"]["archived_at"].is_string(), "{admin_view}");

    let line = QuoteLine { product: ProductRef::Id(product.into()), quantity: qty(1) };
    let quote = app.module.api().quote(&CallContext::system("test"), &[line]).await.unwrap();
    assert_eq!(quote.problems.iter().map(|p| p.kind).collect::<Vec<_>>(), [LineProblemKind::InactiveProduct]);

    let (status, _) = read(archive().await).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "archiving again is harmless");
    let (status, body) = read(
        app.call(Method::DELETE, format!("/api/v1/products/{}", Uuid::now_v7()), Some(&app.admin_token), None).await,
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) = read(app.call(Method::GET, "/api/v1/products/not-a-uuid", None, None).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn full_text_search_finds_words_in_names_and_descriptions() {
    let app = Harness::start().await;
    for (sku, name, description) in [
        ("MUG-1", "Enamel mug", "A white camping mug with a blue rim."),
        ("SOCK-1", "Wool socks", "Warm hiking socks in a merino blend."),
        ("STOVE-1", "Camping stove", "A small gas stove."),
        ("BOT-1", "Steel bottle", "Keeps drinks cold for a whole hike."),
    ] {
        create(
            &app,
            json!({"sku": sku, "name": name, "description": description, "price": {"amount": 1000, "currency": "EUR"}}),
        )
        .await;
    }
    assert_eq!(listed(&app, "q=mug").await, ["MUG-1"], "by a word of the name");
    assert_eq!(listed(&app, "q=MERINO").await, ["SOCK-1"], "by a word of the description, any case");
    assert_eq!(listed(&app, "q=hiking%20socks").await, ["SOCK-1"], "every word must match");
    assert_eq!(listed(&app, "q=camping").await, ["STOVE-1", "MUG-1"], "by name by default");
    assert_eq!(listed(&app, "q=%22gas%20stove%22").await, ["STOVE-1"], "a quoted phrase");
    assert_eq!(listed(&app, "q=camping%20-stove").await, ["MUG-1"], "a word excluded");
    assert_eq!(listed(&app, "q=mug%20or%20bottle").await, ["MUG-1", "BOT-1"]);
    assert!(listed(&app, "q=teapot").await.is_empty());
    assert_eq!(listed(&app, "q=%20%20").await.len(), 4, "a blank search is no search");

    // The name weighs more than the description: the stove is "camping" by name.
    assert_eq!(listed(&app, "q=camping&sort=relevance").await, ["STOVE-1", "MUG-1"]);
    let (first, cursor) = list(&app, "q=camping&sort=relevance&limit=1").await;
    let (second, last) = list(&app, &format!("q=camping&sort=relevance&limit=1&after={}", cursor.unwrap())).await;
    assert_eq!((first, second, last), (vec!["STOVE-1".to_owned()], vec!["MUG-1".to_owned()], None));
    assert_eq!(list_status(&app, "sort=relevance").await, (StatusCode::BAD_REQUEST, "invalid_sort".to_owned()));
    assert_eq!(list_status(&app, "q=mug&sort=-relevance").await, (StatusCode::BAD_REQUEST, "invalid_sort".to_owned()));
    assert_eq!(
        list_status(&app, &format!("q={}", "a".repeat(201))).await,
        (StatusCode::BAD_REQUEST, "invalid_query".to_owned())
    );
    assert_eq!(list_status(&app, "q=%00").await, (StatusCode::BAD_REQUEST, "invalid_query".to_owned()));
    assert_eq!(list_status(&app, "q=%22%20%26%20!%20:*").await.0, StatusCode::OK, "search syntax never fails");
}

#[tokio::test]
async fn price_range_currency_and_stock_filters_narrow_the_list() {
    let app = Harness::start().await;
    for (sku, amount, currency, stock) in
        [("A-500", 500, "EUR", 3), ("B-1500", 1500, "EUR", 0), ("C-2500", 2500, "EUR", 1), ("D-1000", 1000, "USD", 2)]
    {
        let body =
            json!({"sku": sku, "name": sku, "price": {"amount": amount, "currency": currency}, "initial_stock": stock});
        create(&app, body).await;
    }
    // Units held for orders are not available.
    let mut db = app.database.admin_connection().await.unwrap();
    sqlx::query("UPDATE inventory.products SET reserved = on_hand WHERE sku = 'C-2500'")
        .execute(&mut db)
        .await
        .unwrap();

    assert_eq!(listed(&app, "min_price=1000&max_price=2000").await, ["B-1500", "D-1000"]);
    assert_eq!(listed(&app, "min_price=1500").await, ["B-1500", "C-2500"]);
    assert_eq!(listed(&app, "max_price=1000").await, ["A-500", "D-1000"]);
    assert_eq!(listed(&app, "currency=usd").await, ["D-1000"]);
    assert_eq!(listed(&app, "in_stock=true").await, ["A-500", "D-1000"]);
    assert_eq!(listed(&app, "in_stock=false").await, ["B-1500", "C-2500"]);
    assert_eq!(listed(&app, "in_stock=true&currency=EUR&max_price=600").await, ["A-500"]);

    for query in ["min_price=-1", "min_price=20&max_price=10", "currency=EURO", "in_stock=maybe", "max_price=cheap"] {
        assert_eq!(list_status(&app, query).await, (StatusCode::BAD_REQUEST, "invalid_query".to_owned()), "{query}");
    }
}

#[tokio::test]
async fn every_sort_orders_the_catalogue() {
    let app = Harness::start().await;
    // Created in this order; names, prices and creation times each sort differently.
    for (sku, name, price) in
        [("S-1", "Charlie", 300), ("S-2", "Alpha", 100), ("S-3", "Delta", 400), ("S-4", "Bravo", 200)]
    {
        create(&app, product_body(sku, name, price)).await;
    }
    for (sort, expected) in [
        ("", ["S-2", "S-4", "S-1", "S-3"]),
        ("sort=name", ["S-2", "S-4", "S-1", "S-3"]),
        ("sort=-name", ["S-3", "S-1", "S-4", "S-2"]),
        ("sort=price", ["S-2", "S-4", "S-1", "S-3"]),
        ("sort=-price", ["S-3", "S-1", "S-4", "S-2"]),
        ("sort=created_at", ["S-1", "S-2", "S-3", "S-4"]),
        ("sort=-created_at", ["S-4", "S-3", "S-2", "S-1"]),
    ] {
        assert_eq!(listed(&app, sort).await, expected, "{sort}");
        // The same order page by page.
        let mut walked = Vec::new();
        let mut query = format!("{sort}&limit=3");
        loop {
            let (skus, cursor) = list(&app, &query).await;
            walked.extend(skus);
            let Some(cursor) = cursor else { break };
            query = format!("{sort}&limit=3&after={cursor}");
        }
        assert_eq!(walked, expected, "{sort}, paged");
    }
    // Equal prices fall back to the id, so pages neither repeat nor skip them.
    for sku in ["T-1", "T-2", "T-3"] {
        create(&app, product_body(sku, "Twin", 250)).await;
    }
    let mut walked = Vec::new();
    let mut query = "sort=price&limit=2".to_owned();
    loop {
        let (skus, cursor) = list(&app, &query).await;
        walked.extend(skus);
        let Some(cursor) = cursor else { break };
        query = format!("sort=price&limit=2&after={cursor}");
    }
    assert_eq!(walked, ["S-2", "S-4", "T-1", "T-2", "T-3", "S-1", "S-3"]);
}

/// Base64url without padding, as cursors are encoded.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0_u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[tokio::test]
async fn bad_sorts_limits_and_forged_cursors_are_refused_with_400() {
    let app = Harness::start().await;
    for sku in ["A-1", "A-2", "A-3"] {
        create(&app, product_body(sku, sku, 100)).await;
    }
    let (_, price_cursor) = list(&app, "sort=price&limit=1").await;
    let forged = |cursor: Value| base64url(cursor.to_string().as_bytes());
    let id = Uuid::now_v7();
    for (query, expected) in [
        ("sort=colour".to_owned(), "invalid_sort"),
        ("sort=name,price".to_owned(), "invalid_sort"),
        ("sort=".to_owned(), "invalid_sort"),
        ("limit=0".to_owned(), "invalid_limit"),
        ("limit=101".to_owned(), "invalid_limit"),
        ("limit=-1".to_owned(), "invalid_query"),
        ("after=garbage".to_owned(), "invalid_cursor"),
        (format!("sort=name&after={}", price_cursor.unwrap()), "invalid_cursor"),
        (format!("after={}", forged(json!({"s": "name", "k": {"price": [1, id]}}))), "invalid_cursor"),
        (format!("after={}", forged(json!({"s": "name", "k": {"name": ["\u{0}", id]}}))), "invalid_cursor"),
        (format!("after={}", forged(json!({"s": "name", "k": {"name": [1, 2]}}))), "invalid_cursor"),
        (
            format!(
                "sort=created_at&after={}",
                forged(json!({"s": "created_at", "k": {"created_at": ["+99999-01-01T00:00:00Z", id]}}))
            ),
            "invalid_cursor",
        ),
        (format!("sort=price&after={}", forged(json!({"s": "price", "k": {"price": [1e300, id]}}))), "invalid_cursor"),
    ] {
        assert_eq!(list_status(&app, &query).await, (StatusCode::BAD_REQUEST, expected.to_owned()), "{query}");
    }
    // A well-formed cursor continues, even past a product that no longer exists.
    let after = forged(json!({"s": "name", "k": {"name": ["A-1", id]}}));
    assert_eq!(listed(&app, &format!("after={after}")).await, ["A-2", "A-3"]);
}

#[tokio::test]
async fn pages_stay_stable_while_products_are_added_between_them() {
    let app = Harness::start().await;
    let mut original = Vec::new();
    for n in 0..7 {
        let sku = format!("P-{n}0");
        // Prices repeat, so ties are broken by the id.
        app.product(&sku, 1000 + (n % 3) * 100, 1).await;
        original.push(sku);
    }
    let mut newcomers = 0;
    for sort in ["name", "-name", "price", "-price", "created_at", "-created_at"] {
        let mut walked = Vec::new();
        let mut query = format!("sort={sort}&limit=2");
        let mut page = 0;
        loop {
            let (skus, cursor) = list(&app, &query).await;
            walked.extend(skus);
            let Some(cursor) = cursor else { break };
            // Newcomers before, between and after what has been seen, in every order, while the
            // original products are being walked (so that the walk ends).
            if page < 3 {
                for sku in [format!("A-{newcomers}"), format!("P-{page}5-{newcomers}"), format!("Z-{newcomers}")] {
                    app.product(&sku, 900 + (newcomers % 5) * 100, 1).await;
                    newcomers += 1;
                }
            }
            page += 1;
            query = format!("sort={sort}&limit=2&after={cursor}");
        }
        let mut seen: Vec<&String> = walked.iter().filter(|sku| original.contains(sku)).collect();
        assert_eq!(seen.len(), original.len(), "{sort}: every original product exactly once: {walked:?}");
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), original.len(), "{sort}: no original product twice: {walked:?}");
        let mut distinct = walked.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), walked.len(), "{sort}: nothing twice: {walked:?}");
    }
}
