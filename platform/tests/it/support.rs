//! Two fixture modules, `alpha` and `beta`, and a way to serve a router like the app does.

use std::net::SocketAddr;

use axum::Router;
use platform::db::ModuleSchema;
use platform::http::{HttpSettings, stack};
use platform::metrics::Metrics;
use sqlx::migrate::Migrator;

static ALPHA_MIGRATIONS: Migrator = sqlx::migrate!("tests/fixtures/alpha");
static BETA_MIGRATIONS: Migrator = sqlx::migrate!("tests/fixtures/beta");

pub const ALPHA: ModuleSchema = ModuleSchema { name: "alpha", migrations: &ALPHA_MIGRATIONS };
pub const BETA: ModuleSchema = ModuleSchema { name: "beta", migrations: &BETA_MIGRATIONS };
pub const SCHEMAS: [ModuleSchema; 2] = [ALPHA, BETA];

/// A router served on a free loopback port with the platform's middleware stack.
pub struct Served {
    pub base: String,
    pub client: reqwest::Client,
    pub metrics: Metrics,
}

impl Served {
    pub async fn start(router: Router, settings: HttpSettings) -> Self {
        let metrics = Metrics::new();
        let app = stack::apply(router, &settings, metrics.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
        });
        Self { base: format!("http://{address}"), client: reqwest::Client::new(), metrics }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}
