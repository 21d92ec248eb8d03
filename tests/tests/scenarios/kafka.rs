//! What only the split over Kafka has: each module's process on a database of its own, its
//! events carried by the broker. Nothing crosses between databases; the broker stopped and
//! restarted mid-saga loses and duplicates nothing; a relay that sends a batch again, as one
//! killed between producing and moving its cursor does, duplicates nothing visible; and a
//! subscriber killed mid-saga resumes from its cursor when it is back.

use bulkhead_tests::{TestApp, Topology, eventually};
use platform::testing::kafka::TestBroker;
use serde_json::Value;

use crate::notifications::mailbox;
use crate::shop::{SAGA_PATIENCE, await_payment, await_status, customer, place, product, stock};

const MODULES: [&str; 5] = ["users", "inventory", "orders", "payments", "notifications"];

/// Every order confirmed, its payment captured once, one confirmation email each, and the
/// stock of `sku` down by exactly one per order.
async fn each_confirmed_and_charged_once(app: &TestApp, token: &str, orders: &[Value], on_hand_before: i64) {
    for order in orders {
        let id = order["id"].as_str().unwrap();
        let confirmed = await_status(app, token, id, "confirmed").await;
        let payment = await_payment(app, token, id, "captured").await;
        assert_eq!(payment["balances"]["captured"], confirmed["total"]["amount"]);
        let captures = payment["ledger"].as_array().unwrap().iter().filter(|e| e["kind"] == "capture").count();
        assert_eq!(captures, 1, "charged once: {payment}");
        let emails = eventually(SAGA_PATIENCE, || async {
            let about: usize = mailbox(app).iter().filter(|email| email.text.contains(id)).count();
            Ok((about >= 1).then_some(about))
        })
        .await
        .unwrap_or_else(|_| panic!("no confirmation email for {id}"));
        assert_eq!(emails, 1, "one confirmation email for {id}");
    }
    // Inventory takes the stock when it hears of the confirmation, a moment after it.
    let mug = product(app, "MUG-001").await;
    let ordered = i64::try_from(orders.len()).unwrap();
    let settled = eventually(SAGA_PATIENCE, || async {
        let (on_hand, reserved, _) = stock(app, mug["id"].as_str().unwrap()).await;
        Ok((reserved == 0).then_some(on_hand))
    })
    .await
    .expect("every reservation was taken or released");
    assert_eq!(settled, on_hand_before - ordered, "each order took its mug exactly once");
}

async fn mugs_on_hand(app: &TestApp) -> i64 {
    let mug = product(app, "MUG-001").await;
    stock(app, mug["id"].as_str().unwrap()).await.0
}

/// The count of a process's metric line that starts with `prefix`, if it has one.
async fn metric(app: &TestApp, module: &str, prefix: &str) -> Option<f64> {
    let address = app_address(app, module);
    let text = app.client.get(format!("http://{address}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix(prefix)).and_then(|v| v.trim().parse().ok())
}

fn app_address(app: &TestApp, module: &str) -> std::net::SocketAddr {
    app.process_address(module).unwrap_or_else(|| panic!("no process for {module}"))
}

#[tokio::test]
async fn over_kafka_each_process_keeps_to_its_own_database_and_events_cross_through_the_broker() {
    let app = TestApp::spawn_on(Topology::SplitOverKafka, &[]).await;
    let token = customer(&app, "apart@example.com").await;
    let before = mugs_on_hand(&app).await;
    let order = place(&app, &token, "apart-1", "MUG-001", 1, "pm_card_visa").await;
    each_confirmed_and_charged_once(&app, &token, &[order], before).await;

    for module in MODULES {
        // The module's database holds its own schema and no other module's.
        let url = app.database_of(module).url();
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(secrecy::ExposeSecret::expose_secret(&url))
            .await
            .unwrap();
        let schemas: Vec<String> = sqlx::query_scalar(
            "SELECT schema_name::text FROM information_schema.schemata WHERE schema_name = ANY($1) ORDER BY 1",
        )
        .bind(MODULES.to_vec())
        .fetch_all(&mut db)
        .await
        .unwrap();
        assert_eq!(schemas, [module], "{module}'s database");

        // Its readiness reports the broker, and its relay forwarded its events.
        let address = app_address(&app, module);
        let ready: Value =
            app.client.get(format!("http://{address}/health/ready")).send().await.unwrap().json().await.unwrap();
        assert_eq!(ready["data"]["checks"]["bus.broker"], "ok", "{module}: {ready}");
    }
    for module in ["users", "orders", "inventory", "payments"] {
        let relayed = metric(&app, module, &format!("bulkhead_bus_relayed_events_total{{module=\"{module}\"}} ")).await;
        assert!(relayed.is_some_and(|count| count >= 1.0), "{module}'s relay forwarded its events: {relayed:?}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_broker_stopped_and_restarted_mid_saga_loses_and_duplicates_nothing() {
    let broker = TestBroker::start().await.unwrap();
    let brokers = broker.brokers();
    let app = TestApp::spawn_with_env(Topology::SplitOverKafka, &[], &[("BULKHEAD_KAFKA_BROKERS", &brokers)]).await;
    let token = customer(&app, "steady@example.com").await;
    let before = mugs_on_hand(&app).await;
    let mut orders = Vec::new();
    for n in 0..3 {
        orders.push(place(&app, &token, &format!("before-{n}"), "MUG-001", 1, "pm_card_visa").await);
    }
    // Stopped mid-saga: some of those are between stages right now.
    broker.stop();
    for n in 0..3 {
        orders.push(place(&app, &token, &format!("during-{n}"), "MUG-001", 1, "pm_card_visa").await);
    }
    // Placing needs no broker; the saga waits for it, the events safe in the outboxes.
    let waiting = await_status(&app, &token, orders[5]["id"].as_str().unwrap(), "pending").await;
    assert!(waiting["cancellation"].is_null(), "{waiting}");
    let ready: Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(ready["data"]["status"], "ready", "a broker outage is reported, not an outage: {ready}");

    broker.restart().await.unwrap();
    each_confirmed_and_charged_once(&app, &token, &orders, before).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_relay_that_sends_everything_again_duplicates_nothing_visible() {
    let app = TestApp::spawn_on(Topology::SplitOverKafka, &[]).await;
    let token = customer(&app, "repeated@example.com").await;
    let before = mugs_on_hand(&app).await;
    let mut orders = Vec::new();
    for n in 0..3 {
        orders.push(place(&app, &token, &format!("first-{n}"), "MUG-001", 1, "pm_card_visa").await);
    }
    each_confirmed_and_charged_once(&app, &token, &orders, before).await;

    // A relay killed after the broker took a batch but before its cursor moved sends the
    // batch again when it restarts. Every module's relay does that here, for its whole log.
    for module in MODULES {
        let url = app.database_of(module).url();
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(secrecy::ExposeSecret::expose_secret(&url))
            .await
            .unwrap();
        let moved = sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {module}.bus_relay SET position = 0")))
            .execute(&mut db)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(moved, 1, "{module} has one relay cursor");
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT pg_notify('bulkhead_sequenced', '{module}')")))
            .execute(&mut db)
            .await
            .unwrap();
    }
    // Once every relay has sent its log twice, the next orders flow as usual.
    eventually(SAGA_PATIENCE, || async {
        let mut resent = true;
        for module in ["users", "orders", "inventory", "payments"] {
            let prefix = format!("bulkhead_bus_relayed_events_total{{module=\"{module}\"}} ");
            let appended =
                metric(&app, module, &format!("bulkhead_bus_appended_events_total{{module=\"{module}\"}} ")).await;
            let relayed = metric(&app, module, &prefix).await;
            resent &= matches!((appended, relayed), (Some(a), Some(r)) if r >= 2.0 * a);
        }
        Ok(resent.then_some(()))
    })
    .await
    .expect("every relay sent its log again");
    let more = vec![place(&app, &token, "after-0", "MUG-001", 1, "pm_card_visa").await];
    let everything: Vec<Value> = orders.into_iter().chain(more).collect();
    each_confirmed_and_charged_once(&app, &token, &everything, before).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_subscriber_killed_mid_saga_resumes_from_its_cursor_and_charges_once() {
    let mut app = TestApp::spawn_on(Topology::SplitOverKafka, &[]).await;
    let token = customer(&app, "resumed@example.com").await;
    let before = mugs_on_hand(&app).await;
    let mut orders = Vec::new();
    for n in 0..3 {
        orders.push(place(&app, &token, &format!("before-{n}"), "MUG-001", 1, "pm_card_visa").await);
    }
    app.processes().unwrap().kill("payments").await;
    app.processes().unwrap().kill("notifications").await;
    for n in 0..3 {
        orders.push(place(&app, &token, &format!("during-{n}"), "MUG-001", 1, "pm_card_visa").await);
    }
    app.processes().unwrap().restart("payments").await;
    app.processes().unwrap().restart("notifications").await;
    each_confirmed_and_charged_once(&app, &token, &orders, before).await;
    app.stop().await.unwrap();
}
