//! The modules compiled into this binary, one `app` feature each (DESIGN §6). A module is
//! added here as a descriptor (its schema, known before it has a pool) and a constructor
//! (its instance, built from its pool and the ports it needs).

use std::sync::Arc;

#[cfg_attr(
    not(any(feature = "users", feature = "inventory")),
    expect(unused_imports, reason = "only the starts of users and inventory need it")
)]
use anyhow::Context;

use std::net::SocketAddr;

use platform::auth::JwtVerifier;
use platform::bus::listener::Wakeups;
use platform::metrics::Metrics;
use platform::{Module, ModuleDescriptor};

use crate::config::Config;
use crate::database::Backing;
use crate::ports::{Ports, Remotes};

/// Every module of the system, compiled in or not: a process can reach (and provision a role
/// for) a module it was built without.
pub const ALL: [&str; 5] = ["users", "inventory", "orders", "payments", "notifications"];

/// Every module compiled in, in dependency order (a module's ports come from earlier ones).
pub fn compiled() -> Vec<ModuleDescriptor> {
    vec![
        #[cfg(feature = "users")]
        users::DESCRIPTOR,
        #[cfg(feature = "notifications")]
        notifications::DESCRIPTOR,
        #[cfg(feature = "inventory")]
        inventory::DESCRIPTOR,
        #[cfg(feature = "orders")]
        orders::DESCRIPTOR,
        #[cfg(feature = "payments")]
        payments::DESCRIPTOR,
    ]
}

/// What the process offers the modules it builds.
#[derive(Debug)]
pub(crate) struct Process<'a> {
    /// The address the process listens on.
    #[cfg_attr(not(feature = "payments"), expect(dead_code, reason = "only payments' sandbox webhooks need it"))]
    pub(crate) addr: SocketAddr,
    #[cfg_attr(
        not(any(feature = "orders", feature = "payments", feature = "notifications")),
        expect(dead_code, reason = "only orders, payments and notifications register metrics of their own")
    )]
    pub(crate) metrics: &'a Metrics,
    /// The way to modules hosted elsewhere.
    pub(crate) remotes: &'a Remotes,
    /// What the process's bus hears (order event streams follow it).
    #[cfg_attr(not(feature = "orders"), expect(dead_code, reason = "only orders' event streams follow it"))]
    pub(crate) wakeups: &'a Wakeups,
}

/// Builds the hosted modules from their pools, in dependency order, and runs their
/// first-start work (the users module's first admin).
///
/// # Errors
/// A module that cannot start, or a port of a module hosted elsewhere with no URL configured.
#[cfg_attr(
    not(any(
        feature = "users",
        feature = "inventory",
        feature = "orders",
        feature = "payments",
        feature = "notifications"
    )),
    expect(unused_variables, reason = "no module compiled in")
)]
pub(crate) async fn build(
    hosted: &[ModuleDescriptor],
    config: &Config,
    backing: &Backing,
    verifier: &JwtVerifier,
    process: &Process<'_>,
) -> anyhow::Result<Vec<Arc<dyn Module>>> {
    let hosts = |name: &str| hosted.iter().any(|d| d.schema.name == name);
    #[cfg_attr(
        not(any(
            feature = "users",
            feature = "inventory",
            feature = "orders",
            feature = "payments",
            feature = "notifications"
        )),
        expect(unused_mut, reason = "no module compiled in")
    )]
    let mut built: Vec<Arc<dyn Module>> = Vec::new();
    #[cfg_attr(
        not(any(all(feature = "inventory", feature = "orders"), all(feature = "users", feature = "notifications"))),
        expect(unused_mut, reason = "no port served in process")
    )]
    let mut ports = Ports::new(process.remotes);
    #[cfg(feature = "users")]
    if hosts("users") {
        let pool = backing.databases.pool("users")?.clone();
        let settings = config.users.config(&config.data_dir);
        let module = users::UsersModule::new(pool, verifier.clone(), settings).context("starting the users module")?;
        if let Some(admin) = module.ensure_first_admin().await.context("creating the first admin")? {
            announce_first_admin(&admin);
        }
        #[cfg(feature = "notifications")]
        {
            ports.users = Some(module.api());
        }
        built.push(Arc::new(module));
    }
    #[cfg(feature = "inventory")]
    if hosts("inventory") {
        let pool = backing.databases.pool("inventory")?.clone();
        let module = inventory::InventoryModule::new(pool, verifier.clone(), config.inventory.config());
        if config.inventory.demo_data {
            let seeded = module.seed_demo_catalogue().await.context("seeding the demo catalogue")?;
            if seeded > 0 {
                tracing::info!(
                    products = seeded,
                    "the catalogue was empty: added demo products (BULKHEAD_DEMO_DATA=false to skip)"
                );
            }
        }
        #[cfg(feature = "orders")]
        {
            ports.inventory = Some(module.api());
        }
        built.push(Arc::new(module));
    }
    #[cfg(feature = "orders")]
    if hosts("orders") {
        let pool = backing.databases.pool("orders")?.clone();
        let inventory = ports.inventory("orders")?;
        built.push(Arc::new(
            orders::OrdersModule::new(pool, inventory, verifier.clone(), config.orders.config())
                .with_metrics(process.metrics)
                .with_wakeups(process.wakeups),
        ));
    }
    #[cfg(feature = "payments")]
    if hosts("payments") {
        // The sandbox's books outlive restarts, in a schema of their own (ADR 0021).
        backing.databases.ensure_schema_for("payments", payments::SANDBOX_SCHEMA).await?;
        let pool = backing.databases.pool("payments")?.clone();
        let (gateway, settings) = config.payments.gateway_and_config(pool.clone(), process.addr);
        built.push(Arc::new(payments::PaymentsModule::new(pool, gateway, verifier.clone(), settings, process.metrics)));
    }
    #[cfg(feature = "notifications")]
    if hosts("notifications") {
        let pool = backing.databases.pool("notifications")?.clone();
        let settings = config.notifications.config(&config.data_dir)?;
        let users = ports.users("notifications")?;
        let module = notifications::NotificationsModule::new(pool, users, verifier.clone(), settings)?;
        built.push(Arc::new(module.with_metrics(process.metrics)));
    }
    tracing::debug!(?ports, "ports wired");
    Ok(built)
}

/// Shown once, on the terminal (not in the logs): the only place a generated password appears.
#[cfg(feature = "users")]
fn announce_first_admin(admin: &users::FirstAdmin) {
    use secrecy::ExposeSecret;
    match &admin.generated_password {
        Some(password) => println!(
            "\nCreated the first admin\n  email     {}\n  password  {}\n  (shown once; set BULKHEAD_ADMIN_PASSWORD to choose it)\n",
            admin.email,
            password.expose_secret()
        ),
        None => println!("\nCreated the first admin {} with the password from BULKHEAD_ADMIN_PASSWORD\n", admin.email),
    }
}

/// The compiled modules this process hosts, as selected by `BULKHEAD_MODULES`.
///
/// # Errors
/// A name in `BULKHEAD_MODULES` that is not compiled in.
pub fn hosted(selection: &[String]) -> anyhow::Result<Vec<ModuleDescriptor>> {
    let compiled = compiled();
    if selection.is_empty() {
        return Ok(compiled);
    }
    let names: Vec<&str> = compiled.iter().map(|d| d.schema.name).collect();
    for wanted in selection {
        if !names.contains(&wanted.as_str()) {
            anyhow::bail!(
                "BULKHEAD_MODULES names `{wanted}`, which is not compiled into this binary (compiled: {})",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            );
        }
    }
    Ok(compiled.into_iter().filter(|d| selection.iter().any(|s| s == d.schema.name)).collect())
}
