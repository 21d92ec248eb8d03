//! The composition root: builds every hosted module from its pool and ports, mounts their
//! routes, and runs the HTTP server until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use platform::Module;
use platform::auth::JwtVerifier;
use platform::auth::revocation::RevocationFeed;
use platform::bus::admin::{self, AdminState};
use platform::bus::listener::Wakeups;
use platform::bus::{Bus, BusBuilder};
use platform::db::ModuleSchema;
use platform::http::rate_limit::{ClientRateLimit, limit_by_client};
use platform::http::{ApiError, HttpSettings, Query, stack};
use platform::jobs::JobsRuntime;
use platform::jobs::admin::{self as jobs_admin, JobsAdminState};
use platform::metrics::Metrics;
use platform::remote::{PortMetrics, ServiceKeys, internal_api};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::config::Config;
use crate::database::Backing;
use crate::edge::{Edge, SpecQuery, SpecScope};
use crate::health::{self, HealthState};
use crate::modules;
use crate::ports::Remotes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bulkhead",
        description = "A commerce backend built as a modular monolith with extractable modules.\n\n\
            Successful responses are `{\"data\": …, \"meta\": …}`; failures are \
            `{\"error\": {\"code\", \"message\", \"details\", \"request_id\"}}`.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(platform::http::ErrorEnvelope, platform::http::ErrorBody, platform::http::FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "bus", description = "Event bus administration: subscriptions, dead letters, replay, rewind (admins)"),
        (name = "jobs", description = "Background jobs administration: failed jobs (admins)"),
        (name = "auth", description = "Registration, sign-in, tokens, email verification, password reset, signing keys"),
        (name = "users", description = "Accounts: your own profile and preferences; listing and administering users (admins)"),
        (name = "orders", description = "Placing orders and following them through the order saga (docs/saga.md)"),
        (name = "catalog", description = "Products and prices: public reads, admin writes"),
        (name = "stock", description = "Stock levels, adjustments and movements (admins)"),
        (name = "payments", description = "Payments of orders, their ledger and refunds; the gateway's webhook and circuit breaker"),
        (name = "notifications", description = "Messages sent to people: your history; listing and retrying deliveries (admins)"),
        (name = "webhooks", description = "Webhook endpoints that receive signed events, and their deliveries (admins)")
    )
)]
struct ApiDoc;

/// The internal API: the server side of every hosted module's ports, for the processes of
/// other modules (ADR 0017). Served at `/internal/openapi.json`, apart from the public API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bulkhead internal API",
        description = "The ports of the modules this process hosts, called by the processes of other modules. \
            Every call carries a service token (an EdDSA JWT whose `sub` is the calling module and `aud` \
            the called one); a module may call only the ports its manifest declares.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(platform::http::ErrorEnvelope, platform::http::ErrorBody, platform::http::FieldError)),
    modifiers(&BearerAuth)
)]
struct InternalDoc;

/// The `bearer` security scheme handlers refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// A built application, bound to its port and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    backing: Backing,
    config: Config,
    verifier: JwtVerifier,
    bus: Bus,
    jobs: JobsRuntime,
}

impl Application {
    /// Connects (starting the embedded database when needed), migrates, builds the modules
    /// and binds the listener.
    ///
    /// # Errors
    /// Anything that prevents serving, with what to do about it.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let hosted = modules::hosted(&config.modules)?;
        let schemas: Arc<[ModuleSchema]> = hosted.iter().map(|d| d.schema).collect();
        let backing = Backing::connect(&config, &schemas).await?;
        let built = async {
            if config.migrate_on_start {
                backing.databases.migrate(&schemas).await?;
            }
            // Bound before the modules are built: they may need the address (the sandbox
            // gateway's webhooks come back to it). Connections wait until serving starts.
            let listener = TcpListener::bind(config.addr)
                .await
                .with_context(|| format!("listening on {} (BULKHEAD_ADDR)", config.addr))?;
            if !config.migrate_on_start {
                wait_for_migrations(&listener, &backing, &schemas, &config).await?;
            }
            let metrics = Metrics::new();
            let client = reqwest::Client::builder().build().context("building the HTTP client for other processes")?;
            let hosted_names: Vec<&str> = hosted.iter().map(|d| d.schema.name).collect();
            let verifier = token_verifier(&config, &hosted_names, &client).await?;
            let keys = ServiceKeys::open(&config.service_keys_dir())?;
            let remotes = Remotes {
                args: config.remote.clone(),
                keys: keys.clone(),
                client: client.clone(),
                metrics: PortMetrics::register(&metrics),
            };
            // What the bus hears, which parts built before it (order streams) follow too.
            let wakeups = Wakeups::default();
            let process = modules::Process {
                addr: listener.local_addr()?,
                metrics: &metrics,
                remotes: &remotes,
                wakeups: &wakeups,
            };
            let modules = modules::build(&hosted, &config, &backing, &verifier, &process).await?;
            let bus = assemble_bus(&config, &backing, &schemas, &modules, &metrics, &wakeups)?;
            let jobs = assemble_jobs(&config, &backing, &modules, &bus, &metrics)?;
            let edge = Edge::new(&hosted_names, &config.remote)?;
            let parts = RouterParts {
                schemas: schemas.clone(),
                modules: &modules,
                metrics,
                verifier: verifier.clone(),
                bus: bus.clone(),
                keys,
                edge,
                client,
            };
            let router = router(&config, &backing, parts)?;
            anyhow::Ok((router, listener, verifier, bus, jobs))
        }
        .await;
        match built {
            Ok((router, listener, verifier, bus, jobs)) => {
                Ok(Self { listener, router, backing, config, verifier, bus, jobs })
            }
            Err(error) => {
                backing.close().await.ok();
                Err(error)
            }
        }
    }

    /// The address actually bound (useful with port 0).
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The verifier of access tokens; clones share its keys, so adding a key here is seen by
    /// every route (tests use this to trust a key of their own).
    pub fn jwt_verifier(&self) -> JwtVerifier {
        self.verifier.clone()
    }

    /// Serves until `shutdown` fires, then stops accepting, drains in-flight requests (up to
    /// the shutdown timeout), stops the bus and lets running jobs finish (each up to the
    /// shutdown timeout), closes the pools and stops the embedded database.
    ///
    /// # Errors
    /// A server failure, or a database that does not stop cleanly.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self { listener, router, backing, config, bus, jobs, verifier } = self;
        let background = CancellationToken::new();
        let started = async {
            let bus_tasks = bus.start(background.clone()).await.context("starting the event bus")?;
            let jobs = jobs.start(background.clone()).await.context("starting the jobs runtime")?;
            start_revocation_feed(&config, &backing, &verifier, &bus, &background).await?;
            anyhow::Ok((bus_tasks, jobs))
        }
        .await;
        let (bus_tasks, jobs) = match started {
            Ok(started) => started,
            Err(error) => {
                background.cancel();
                backing.close().await.ok();
                return Err(error);
            }
        };
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let stopping = shutdown.clone();
        // hyper's own answers to requests it cannot parse get the envelope too.
        let listener = platform::http::listener::envelope_parse_errors(listener);
        let server = axum::serve(listener, service).with_graceful_shutdown(stopping.cancelled_owned());
        let drain_limit = async {
            shutdown.cancelled().await;
            tokio::time::sleep(config.shutdown_timeout).await;
        };
        let served = tokio::select! {
            served = server => served.context("serving HTTP"),
            () = drain_limit => {
                tracing::warn!(timeout = ?config.shutdown_timeout, "requests still running after the shutdown timeout; closing anyway");
                Ok(())
            }
        };
        // In-flight handlers finish their batch (or roll back), running jobs finish (or run
        // again elsewhere later); nothing is lost either way.
        tracing::info!("HTTP server stopped; stopping the event bus and the jobs runtime");
        background.cancel();
        let bus_stopped = async {
            if tokio::time::timeout(config.shutdown_timeout, bus_tasks.join()).await.is_err() {
                tracing::warn!("event bus tasks still running after the shutdown timeout");
            }
        };
        tokio::join!(bus_stopped, jobs.join());
        tracing::info!("closing databases");
        let closed = backing.close().await;
        served.and(closed)
    }
}

/// With `BULKHEAD_MIGRATE_ON_START=false`, waits until `bulkhead migrate up` has applied every
/// hosted module's migrations and the jobs storage's, answering `/health` (alive) and
/// `/health/ready` (503, `migrations pending`) on the server's own socket meanwhile, so an
/// orchestrator keeps the process out of rotation without restarting it.
async fn wait_for_migrations(
    listener: &TcpListener,
    backing: &Backing,
    schemas: &Arc<[ModuleSchema]>,
    config: &Config,
) -> anyhow::Result<()> {
    let state = health::WaitingState {
        databases: backing.databases.clone(),
        schemas: schemas.clone(),
        jobs: backing.databases.jobs_pool()?.clone(),
    };
    if state.migrated().await {
        return Ok(());
    }
    tracing::info!("migrations pending; waiting for `bulkhead migrate up` (BULKHEAD_MIGRATE_ON_START=false)");
    // A second handle on the same socket serves the health routes while waiting; the real
    // router takes over the socket afterwards, with no moment where connections are refused.
    let socket = std::os::fd::AsFd::as_fd(listener).try_clone_to_owned().context("sharing the listening socket")?;
    let waiting = std::net::TcpListener::from(socket);
    waiting.set_nonblocking(true).context("sharing the listening socket")?;
    let waiting = TcpListener::from_std(waiting).context("sharing the listening socket")?;
    let settings = HttpSettings { request_timeout: config.request_timeout, ..HttpSettings::default() };
    let routes = stack::apply(health::waiting_routes(state.clone()), &settings, Metrics::new());
    let migrated = CancellationToken::new();
    let server = tokio::spawn(
        axum::serve(waiting, routes).with_graceful_shutdown(migrated.clone().cancelled_owned()).into_future(),
    );
    while !state.migrated().await {
        tokio::time::sleep(MIGRATIONS_POLL).await;
    }
    migrated.cancel();
    match server.await {
        Ok(served) => served.context("answering health checks while waiting for migrations")?,
        Err(error) => tracing::warn!("the health server used while waiting for migrations failed: {error}"),
    }
    tracing::info!("migrations applied; starting");
    Ok(())
}

/// How often a server waiting for `bulkhead migrate up` looks again.
const MIGRATIONS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The bus of this process: every hosted module publishes (its outbox is sequenced here) and
/// brings its subscriptions.
pub(crate) fn assemble_bus(
    config: &Config,
    backing: &Backing,
    schemas: &[ModuleSchema],
    modules: &[Arc<dyn Module>],
    metrics: &Metrics,
    wakeups: &Wakeups,
) -> anyhow::Result<Bus> {
    let mut builder = BusBuilder::with_wakeups(config.bus(), metrics, wakeups.clone());
    #[cfg(feature = "kafka")]
    if let Some(kafka) = config.kafka()? {
        tracing::info!(brokers = kafka.brokers, prefix = kafka.topic_prefix, "events travel through Kafka");
        builder = builder.with_kafka(kafka)?;
    }
    // Without the feature, this refuses `BULKHEAD_KAFKA_BROKERS` rather than ignore it.
    #[cfg(not(feature = "kafka"))]
    config.kafka()?;
    for schema in schemas {
        builder = builder.publisher(schema.name, backing.databases.pool(schema.name)?.clone());
    }
    for module in modules {
        for subscription in module.subscriptions() {
            builder =
                builder.subscription(module.name(), backing.databases.pool(module.name())?.clone(), subscription)?;
        }
    }
    Ok(builder.build())
}

/// Revocations made by any process reach this one's verifier (ADR 0020): read from users'
/// outbox in the shared database, or from users' topic when this process has a database of
/// its own and events travel through Kafka.
async fn start_revocation_feed(
    config: &Config,
    backing: &Backing,
    verifier: &JwtVerifier,
    bus: &Bus,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    #[cfg(feature = "kafka")]
    if let Some(kafka) = config.kafka()?
        && !backing.databases.modules().any(|(name, _)| name == "users")
    {
        return RevocationFeed::start_over_kafka(verifier.revocations().clone(), &kafka, cancel.clone())
            .await
            .context("reading recent access changes from Kafka");
    }
    #[cfg(not(feature = "kafka"))]
    let _ = config; // only the Kafka transport changes where the feed reads from
    if let Some((_, pool)) = backing.databases.modules().next() {
        RevocationFeed::new(pool.clone(), verifier.revocations().clone())
            .woken_by(bus)
            .start(Some(bus.sequenced_wakeups("users")), cancel.clone())
            .await
            .context("reading recent access changes")?;
    }
    Ok(())
}

/// The jobs runtime of this process: the queues of every hosted module, and the bus's
/// retention sweeps of the modules it publishes for. Started with the bus.
pub(crate) fn assemble_jobs(
    config: &Config,
    backing: &Backing,
    modules: &[Arc<dyn Module>],
    bus: &Bus,
    metrics: &Metrics,
) -> anyhow::Result<JobsRuntime> {
    let pool = backing.databases.jobs_pool()?.clone();
    // The pod's name in Kubernetes, which makes worker names easy to trace to a replica.
    let instance = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "bulkhead".to_owned());
    Ok(JobsRuntime::new(pool, metrics)
        .instance(&instance)
        .config(config.jobs())
        .queues(modules.iter().flat_map(|module| module.jobs()))
        .queues(bus.retention_jobs()))
}

/// The verifier of access tokens: with the users module's keys when it is hosted here (it
/// adds them as it starts), else with its JWKS, read from its process.
async fn token_verifier(config: &Config, hosted: &[&str], client: &reqwest::Client) -> anyhow::Result<JwtVerifier> {
    let verifier = JwtVerifier::new(&config.jwt_issuer, &config.jwt_audience);
    if hosted.contains(&"users") {
        return Ok(verifier);
    }
    let (url, variable) = config.remote.url("users");
    let url = url.with_context(|| {
        format!(
            "this process does not host the users module, whose keys verify access tokens: \
             set {variable} to the URL of the process that hosts it"
        )
    })?;
    let jwks = format!("{}/.well-known/jwks.json", url.as_str().trim_end_matches('/'))
        .parse()
        .with_context(|| format!("{variable} does not make a JWKS URL"))?;
    let verifier = verifier.with_jwks_url(jwks, client.clone());
    // Processes may start in any order: tokens are refused until users answers, no longer.
    if let Err(error) = verifier.refresh().await {
        tracing::warn!("{error:#}; access tokens are refused until the users module answers");
    }
    Ok(verifier)
}

/// What the router is made of.
struct RouterParts<'a> {
    schemas: Arc<[ModuleSchema]>,
    modules: &'a [Arc<dyn Module>],
    metrics: Metrics,
    verifier: JwtVerifier,
    bus: Bus,
    keys: ServiceKeys,
    edge: Edge,
    client: reqwest::Client,
}

fn router(config: &Config, backing: &Backing, parts: RouterParts<'_>) -> anyhow::Result<Router> {
    let RouterParts { schemas, modules, metrics, verifier, bus, keys, edge, client } = parts;
    // The public API of every hosted module, under /api/v1. Module routes are merged here,
    // before the layers below, which wrap only routes already present. The API's own fallback
    // keeps unknown API paths inside its middleware (rate limiting) too.
    let jobs = backing.databases.jobs_pool()?.clone();
    let mut api = OpenApiRouter::<()>::new()
        .merge(admin::router(AdminState { bus: bus.clone(), verifier: verifier.clone() }))
        .merge(jobs_admin::router(JobsAdminState { pool: jobs.clone(), verifier: verifier.clone() }));
    let mut root = OpenApiRouter::new();
    let mut internal = OpenApiRouter::with_openapi(InternalDoc::openapi());
    for module in modules {
        api = api.merge(stack::tag_module_routes(module.name(), module.public_routes()));
        root = root.merge(stack::tag_module_routes(module.name(), module.root_routes()));
        // The server side of the module's ports: only its declared callers get in.
        if let Some(routes) = internal_api(module.as_ref(), &keys) {
            internal = internal.merge(routes);
        }
    }
    let (api, api_spec) = api.split_for_parts();
    // Routes of modules hosted elsewhere go to their processes.
    let (proxied_api, proxied_root) = edge.routes();
    let mut api = api.merge(proxied_api).fallback(|| async { ApiError::for_status(StatusCode::NOT_FOUND) });
    if let Some((per_second, burst)) = config.rate_limit() {
        api = api.layer(from_fn_with_state(ClientRateLimit::new(per_second, burst), limit_by_client));
    }

    let upstreams = edge.upstreams().to_vec();
    let readiness = health::ReadinessMetrics::register(&metrics);
    let health_state = HealthState {
        databases: backing.databases.clone(),
        schemas,
        bus,
        jobs,
        verifier,
        upstreams,
        client,
        readiness,
    };
    let (operations, spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .with_state(health_state)
        .merge(OpenApiRouter::new().routes(routes!(health::metrics)).with_state(metrics.clone()))
        .merge(root)
        .split_for_parts();
    let mut spec = spec.nest("/api/v1", api_spec);
    platform::http::openapi::document_platform_answers(&mut spec, "/api/v1/");
    let spec = serde_json::to_value(spec).context("writing the OpenAPI document")?;
    let (internal, internal_spec) = internal.split_for_parts();
    let router = operations
        .merge(proxied_root)
        .nest("/api/v1", api)
        .merge(internal)
        .route("/api/openapi.json", get(move |query| openapi(edge.clone(), spec.clone(), query)))
        .route("/internal/openapi.json", get(move || std::future::ready(Json(internal_spec.clone()))))
        .merge(SwaggerUi::new("/api/docs").config(SwaggerConfig::from("/api/openapi.json")));
    let settings = HttpSettings {
        body_limit_bytes: config.body_limit,
        request_timeout: config.request_timeout,
        cors_origins: config.cors_origins.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
    };
    Ok(stack::apply(router, &settings, metrics))
}

/// The OpenAPI document of the whole API: this process's routes, and those of the modules it
/// proxies, from their processes.
async fn openapi(edge: Edge, local: serde_json::Value, Query(query): Query<SpecQuery>) -> Json<serde_json::Value> {
    match query.scope {
        SpecScope::Api => Json(edge.merged_openapi(local).await),
        SpecScope::Process => Json(local),
    }
}
