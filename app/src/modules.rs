//! The modules compiled into this binary, one `app` feature each (DESIGN §6). A module is
//! added here as a descriptor (its schema, known before it has a pool) and a constructor
//! (its instance, built from its pool and the ports it needs).

use std::sync::Arc;

#[cfg_attr(not(feature = "inventory"), expect(unused_imports, reason = "only inventory's start needs it"))]
use anyhow::Context;

use std::net::SocketAddr;

use platform::auth::JwtVerifier;
use platform::metrics::Metrics;
use platform::{Module, ModuleDescriptor};

use crate::config::Config;
use crate::database::Backing;

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
        not(any(feature = "payments", feature = "notifications")),
        expect(dead_code, reason = "only payments and notifications register metrics of their own")
    )]
    pub(crate) metrics: &'a Metrics,
}

/// Builds the hosted modules from their pools, in dependency order, and runs their
/// first-start work (the users module's first admin).
///
/// # Errors
/// A module that cannot start, with the reason.
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
    #[cfg_attr(
        not(any(feature = "payments", feature = "notifications")),
        expect(unused_variables, reason = "only payments and notifications need the process")
    )]
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
        expect(unused_mut, reason = "no port to wire")
    )]
    let mut ports = crate::ports::Ports::default();
    #[cfg(feature = "users")]
    if hosts("users") {
        let module = users_module(config, backing, verifier).await?;
        #[cfg(feature = "notifications")]
        {
            ports.users = Some(module.api());
        }
        built.push(Arc::new(module));
    }
    #[cfg(feature = "inventory")]
    if hosts("inventory") {
        let settings = inventory::InventoryConfig { reservation_ttl: config.inventory_reservation_ttl };
        let pool = backing.databases.pool("inventory")?.clone();
        let module = inventory::InventoryModule::new(pool, verifier.clone(), settings);
        if config.demo_data {
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
        let settings =
            orders::OrdersConfig { payment_timeout: config.orders_payment_timeout, ..orders::OrdersConfig::default() };
        let pool = backing.databases.pool("orders")?.clone();
        built.push(Arc::new(orders::OrdersModule::new(pool, ports.inventory(), verifier.clone(), settings)));
    }
    #[cfg(feature = "payments")]
    if hosts("payments") {
        built.push(Arc::new(payments_module(config, backing, verifier, process).await?));
    }
    #[cfg(feature = "notifications")]
    if hosts("notifications") {
        built.push(Arc::new(notifications_module(config, backing, verifier, process, ports.users())?));
    }
    tracing::debug!(?ports, "ports wired");
    Ok(built)
}

/// Notifications with the configured mail transport and webhook settings.
#[cfg(feature = "notifications")]
fn notifications_module(
    config: &Config,
    backing: &Backing,
    verifier: &JwtVerifier,
    process: &Process<'_>,
    users: Arc<dyn users_contract::UsersApi>,
) -> anyhow::Result<notifications::NotificationsModule> {
    use crate::config::{MailTransportKind, SmtpTlsMode};
    use notifications::{MailTransport, SmtpConfig, SmtpTls};
    let mut settings = notifications::NotificationsConfig { shop_name: config.shop_name.clone(), ..Default::default() };
    settings.email.from.clone_from(&config.mail_from);
    settings.email.transport = match config.mail_transport {
        MailTransportKind::Mailbox => MailTransport::Mailbox {
            dir: config.mailbox_dir.clone().unwrap_or_else(|| config.data_dir.join("mailbox")),
        },
        MailTransportKind::Smtp => {
            let (Some(host), Some(port)) = (config.smtp_host.clone(), config.smtp_port) else {
                anyhow::bail!("BULKHEAD_MAIL_TRANSPORT=smtp needs BULKHEAD_SMTP_HOST and BULKHEAD_SMTP_PORT");
            };
            let tls = match config.smtp_tls {
                SmtpTlsMode::None => SmtpTls::None,
                SmtpTlsMode::Starttls => SmtpTls::StartTls,
                SmtpTlsMode::Tls => SmtpTls::Tls,
            };
            let mut smtp = SmtpConfig::new(host, port, tls);
            match (&config.smtp_username, &config.smtp_password) {
                (Some(_), Some(_)) | (None, None) => {}
                _ => anyhow::bail!("set both BULKHEAD_SMTP_USERNAME and BULKHEAD_SMTP_PASSWORD, or neither"),
            }
            smtp.username.clone_from(&config.smtp_username);
            smtp.password.clone_from(&config.smtp_password);
            smtp.timeout = config.smtp_timeout;
            MailTransport::Smtp(smtp)
        }
    };
    settings.webhooks.allow_private_targets = config.webhooks_allow_private_targets;
    settings.webhooks.timeout = config.webhook_timeout;
    settings.webhooks.disable_after_failures = config.webhook_disable_after;
    let pool = backing.databases.pool("notifications")?.clone();
    let module = notifications::NotificationsModule::new(pool, users, verifier.clone(), settings)?;
    Ok(module.with_metrics(process.metrics))
}

/// Payments with the configured gateway. The sandbox delivers its webhooks back to this
/// process unless `BULKHEAD_PAYMENTS_WEBHOOK_URL` says otherwise.
#[cfg(feature = "payments")]
async fn payments_module(
    config: &Config,
    backing: &Backing,
    verifier: &JwtVerifier,
    process: &Process<'_>,
) -> anyhow::Result<payments::PaymentsModule> {
    use crate::config::PaymentsGateway;
    let secret = config.payments_webhook_secret.clone().unwrap_or_else(|| {
        let generated = format!("whsec_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        secrecy::SecretString::from(generated)
    });
    let gateway: Arc<dyn payments::PaymentGateway> = match config.payments_gateway {
        PaymentsGateway::Sandbox => {
            // The sandbox's books outlive restarts, in a schema of their own (ADR 0021).
            backing.databases.ensure_schema_for("payments", payments::SANDBOX_SCHEMA).await?;
            let pool = backing.databases.pool("payments")?.clone();
            let sandbox = payments::SandboxGateway::new(
                pool,
                payments::SandboxConfig {
                    latency: config.payments_sandbox_latency,
                    ..payments::SandboxConfig::default()
                },
            );
            let url = config.payments_webhook_url.clone().unwrap_or_else(|| {
                let mut addr = process.addr;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}{}", payments::SANDBOX_WEBHOOK_PATH)
            });
            sandbox.set_webhook_target(payments::WebhookTarget { url, secret: secret.clone() });
            Arc::new(sandbox)
        }
    };
    let mut settings = payments::PaymentsConfig::new(secret);
    settings.gateway_timeout = config.payments_gateway_timeout;
    settings.reconcile_after = config.payments_reconcile_after;
    let pool = backing.databases.pool("payments")?.clone();
    Ok(payments::PaymentsModule::new(pool, gateway, verifier.clone(), settings, process.metrics))
}

#[cfg(feature = "users")]
async fn users_module(
    config: &Config,
    backing: &Backing,
    verifier: &JwtVerifier,
) -> anyhow::Result<users::UsersModule> {
    use anyhow::Context;
    let mut settings = users::UsersConfig::new(config.jwt_keys_dir(), config.public_url.clone());
    if let Some(email) = &config.admin_email {
        settings.first_admin.email.clone_from(email);
    }
    settings.first_admin.password.clone_from(&config.admin_password);
    let pool = backing.databases.pool("users")?.clone();
    let module = users::UsersModule::new(pool, verifier.clone(), settings).context("starting the users module")?;
    if let Some(admin) = module.ensure_first_admin().await.context("creating the first admin")? {
        announce_first_admin(&admin);
    }
    Ok(module)
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
