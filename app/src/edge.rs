//! The edge: whatever it hosts, any process can serve clients the whole public API at one
//! base URL. Routes of modules it hosts are its own; those of modules hosted elsewhere are
//! reverse-proxied to their processes (bodies and Server-Sent Events streamed, headers and the
//! request id kept), and a process that is down answers 503 with `Retry-After` in the error
//! envelope. `/api/openapi.json` merges the other processes' documents into one.
//!
//! Which routes belong to which module is [`PUBLIC_ROUTES`], known whatever modules are
//! compiled in, so a process can route to a module it was built without.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, OriginalUri, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use platform::http::ApiError;
use platform::http::request_id::TraceParent;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::RemoteArgs;

/// The public routes of each module, as path prefixes: a path belongs to a module when it is
/// one of these or lies under one. Checked against every module's routes by a test.
pub const PUBLIC_ROUTES: [(&str, &[&str]); 5] = [
    ("users", &["/api/v1/users", "/api/v1/auth", "/.well-known/jwks.json"]),
    ("inventory", &["/api/v1/products"]),
    ("orders", &["/api/v1/orders"]),
    ("payments", &["/api/v1/payments"]),
    ("notifications", &["/api/v1/notifications", "/api/v1/webhook-endpoints"]),
];

/// The module `path` belongs to, if any.
pub fn owner_of(path: &str) -> Option<&'static str> {
    PUBLIC_ROUTES.iter().find_map(|(module, prefixes)| {
        prefixes
            .iter()
            .any(|prefix| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
            .then_some(*module)
    })
}

/// Which routes an OpenAPI document covers: the whole API (the default), or only the
/// process's own (`?scope=process`, what edges ask each other for).
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SpecScope {
    #[default]
    Api,
    Process,
}

/// The query of `/api/openapi.json`.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct SpecQuery {
    #[serde(default)]
    pub(crate) scope: SpecScope,
}

/// How long another process's OpenAPI document is reused before it is asked again.
const SPEC_MAX_AGE: Duration = Duration::from_secs(60);

/// How long a proxied request may wait for the other process to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a client is told to wait before trying a module whose process is down.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A module hosted by another process, and where.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub(crate) module: &'static str,
    pub(crate) url: url::Url,
}

/// The modules this process proxies, and the documents it merges.
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    upstreams: Vec<Upstream>,
    client: reqwest::Client,
    specs: Arc<Mutex<HashMap<&'static str, (Instant, Value)>>>,
}

impl Edge {
    /// Proxies every module not in `hosted` whose process has a URL.
    ///
    /// # Errors
    /// The proxy's HTTP client cannot be built.
    pub(crate) fn new(hosted: &[&str], remote: &RemoteArgs) -> anyhow::Result<Self> {
        let upstreams = PUBLIC_ROUTES
            .iter()
            .map(|(module, _)| *module)
            .filter(|module| !hosted.contains(module))
            .filter_map(|module| remote.url(module).0.map(|url| Upstream { module, url: url.clone() }))
            .collect();
        // No overall timeout: event streams stay open. No redirects followed and no bodies
        // decoded: the client gets what the module answered.
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { upstreams, client, specs: Arc::default() })
    }

    pub(crate) fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// The proxying routes: those under `/api/v1` (relative to it) and those at the root.
    pub(crate) fn routes(&self) -> (Router, Router) {
        let (mut api, mut root) = (Router::new(), Router::new());
        for upstream in &self.upstreams {
            let prefixes = PUBLIC_ROUTES.iter().find(|(m, _)| *m == upstream.module).map_or(&[][..], |(_, p)| p);
            for prefix in prefixes {
                let target = Target { upstream: upstream.clone(), client: self.client.clone() };
                let handler = any(move |request: Request| proxy(target.clone(), request));
                match prefix.strip_prefix("/api/v1") {
                    Some(relative) => {
                        api = api.route(relative, handler.clone()).route(&format!("{relative}/{{*rest}}"), handler);
                    }
                    None => root = root.route(prefix, handler),
                }
            }
        }
        (api, root)
    }

    /// `local` with the paths and schemas of every proxied module added from its process's
    /// document (the last one read if the process does not answer now).
    pub(crate) async fn merged_openapi(&self, mut local: Value) -> Value {
        for upstream in &self.upstreams {
            if let Some(remote) = self.remote_spec(upstream).await {
                merge(&mut local, &remote, upstream.module);
            }
        }
        local
    }

    async fn remote_spec(&self, upstream: &Upstream) -> Option<Value> {
        let mut specs = self.specs.lock().await;
        if let Some((at, spec)) = specs.get(upstream.module)
            && at.elapsed() < SPEC_MAX_AGE
        {
            return Some(spec.clone());
        }
        // Its own routes only: its document merged with others' would come back here.
        let url = format!("{}/api/openapi.json?scope=process", upstream.url.as_str().trim_end_matches('/'));
        let fetched = async {
            let response = self.client.get(&url).timeout(Duration::from_secs(2)).send().await?;
            response.error_for_status()?.json::<Value>().await
        }
        .await;
        match fetched {
            Ok(spec) => {
                specs.insert(upstream.module, (Instant::now(), spec.clone()));
                Some(spec)
            }
            Err(error) => {
                tracing::warn!(module = upstream.module, error = ?error, "could not read the module's OpenAPI document");
                specs.get(upstream.module).map(|(_, spec)| spec.clone())
            }
        }
    }
}

/// Adds `module`'s paths from `remote` to `local`, with the components they refer to.
fn merge(local: &mut Value, remote: &Value, module: &str) {
    if let (Some(paths), Some(remote_paths)) = (local["paths"].as_object_mut(), remote["paths"].as_object()) {
        for (path, item) in remote_paths {
            if owner_of(path) == Some(module) {
                paths.entry(path.clone()).or_insert_with(|| item.clone());
            }
        }
    }
    let Some(remote_components) = remote["components"].as_object() else { return };
    let Some(components) =
        local.as_object_mut().map(|doc| doc.entry("components").or_insert_with(|| Value::Object(Default::default())))
    else {
        return;
    };
    for (kind, entries) in remote_components {
        let (Some(target), Some(entries)) = (
            components
                .as_object_mut()
                .map(|c| c.entry(kind.clone()).or_insert_with(|| Value::Object(Default::default()))),
            entries.as_object(),
        ) else {
            continue;
        };
        if let Some(target) = target.as_object_mut() {
            for (name, entry) in entries {
                target.entry(name.clone()).or_insert_with(|| entry.clone());
            }
        }
    }
}

/// Where one module's requests go.
#[derive(Debug, Clone)]
struct Target {
    upstream: Upstream,
    client: reqwest::Client,
}

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for name in &HOP_BY_HOP {
        kept.remove(name);
    }
    kept.remove(header::HOST);
    kept
}

async fn proxy(target: Target, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |original| &original.0);
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{path_and_query}", target.upstream.url.as_str().trim_end_matches('/'));
    let mut headers = forwardable(&parts.headers);
    // Who asked, for the module's rate limits and logs (it trusts this process's address).
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        let forwarded = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded) {
            headers.insert("x-forwarded-for", value);
        }
    }
    // The module's work continues this request's trace.
    if let Some(trace) = parts.extensions.get::<TraceParent>()
        && let Ok(value) = HeaderValue::from_str(trace.as_str())
    {
        headers.insert("traceparent", value);
    }
    let outgoing = target
        .client
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    match outgoing.send().await {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status());
            if let Some(headers) = response.headers_mut() {
                *headers = forwardable(answer.headers());
            }
            response.body(Body::from_stream(answer.bytes_stream())).unwrap_or_else(|error| {
                ApiError::internal(anyhow::anyhow!("building the proxied response: {error}")).into_response()
            })
        }
        Err(error) => {
            tracing::warn!(module = target.upstream.module, %error, "the module's process did not answer");
            ApiError::unavailable(
                "module_unavailable",
                format!("The {} module is not reachable right now; try again shortly.", target.upstream.module),
                RETRY_AFTER,
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_belong_to_the_module_whose_prefix_they_lie_under() {
        assert_eq!(owner_of("/api/v1/orders"), Some("orders"));
        assert_eq!(owner_of("/api/v1/orders/0190/events"), Some("orders"));
        assert_eq!(owner_of("/api/v1/ordersx"), None, "a prefix ends at a segment");
        assert_eq!(owner_of("/.well-known/jwks.json"), Some("users"));
        assert_eq!(owner_of("/api/v1/admin/bus/subscriptions"), None, "each process serves its own");
    }

    #[test]
    fn no_two_modules_claim_one_path() {
        for (module, prefixes) in PUBLIC_ROUTES {
            for prefix in prefixes {
                assert_eq!(owner_of(prefix), Some(module), "{prefix}");
            }
        }
    }
}
