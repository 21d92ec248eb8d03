//! `Idempotency-Key` for mutating requests (the IETF draft's semantics, as Stripe does it):
//! the first request with a key runs and its response is stored in the module's
//! `idempotency_keys` table; the same key with the same request replays that response; the
//! same key with a different request is 422; the same key while the first is still running
//! is 409. Keys are scoped to the caller (token subject), so two clients cannot collide; on
//! routes scoped so, a caller without a valid token has no scope, and the handler answers
//! (401) before any key is looked at.
//!
//! A running request holds its key with a short lease that it renews while it runs, so a
//! request cut off by a crash blocks its key for one lease (10 s), not for the longest time a
//! request may take.
//!
//! Apply it to a module's routes with `route_layer(from_fn_with_state(config, middleware))`. 5xx outcomes are not stored,
//! so a retry after a server failure runs again.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::error::ApiError;
use crate::auth::JwtVerifier;

pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Response headers worth replaying; the rest (dates, request ids) belong to each response.
const REPLAYED_HEADERS: [HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::ETAG];
const MAX_BODY: usize = 1024 * 1024;

/// Idempotency for one module's routes; records live in that module's schema.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pool: PgPool,
    verifier: Option<JwtVerifier>,
    required: bool,
    retention: Duration,
    lease: Duration,
}

impl Idempotency {
    /// Keys optional; records kept 24 hours; an in-flight request renews its lease every
    /// few seconds and is presumed abandoned (its process gone) 10 seconds after the last
    /// renewal.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            verifier: None,
            required: false,
            retention: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(10),
        }
    }

    /// Requests without a key are refused (400 `idempotency_key_required`).
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Scope keys to the verified token subject instead of one shared anonymous scope. A
    /// request without a valid token then passes untouched: the handler refuses it (401)
    /// before anything about its key, which belongs to nobody.
    pub fn scoped_by(mut self, verifier: JwtVerifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long a key stays held after its request stopped renewing it (its process died);
    /// the request renews it every third of that while it runs.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The caller's scope: `user:<sub>` when scoped by a verifier (`None` without a valid
    /// token), else the one shared `anonymous` scope.
    fn scope(&self, headers: &HeaderMap) -> Option<String> {
        let Some(verifier) = &self.verifier else { return Some("anonymous".to_owned()) };
        let principal = verifier.verify(crate::auth::bearer_token(headers)?).ok()?;
        Some(format!("user:{}", principal.subject))
    }
}

/// Renews the in-flight record while the request runs, and deletes it if the request is
/// dropped before it finishes (client gone, panic, timeout), so a retry need not wait for
/// the lease to run out.
struct Lease {
    pool: PgPool,
    scope: String,
    key: String,
    settled: bool,
    renewal: tokio::task::AbortHandle,
}

impl Lease {
    fn hold(config: &Idempotency, scope: &str, key: &str) -> Self {
        let (pool, lease) = (config.pool.clone(), config.lease);
        let (held_scope, held_key) = (scope.to_owned(), key.to_owned());
        let renewal = tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                if let Err(error) = renew(&pool, &held_scope, &held_key, lease).await {
                    tracing::warn!("could not renew an idempotency key's lease: {error:#}");
                }
            }
        })
        .abort_handle();
        Self { pool: config.pool.clone(), scope: scope.to_owned(), key: key.to_owned(), settled: false, renewal }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
        if self.settled {
            return;
        }
        let (pool, scope, key) = (self.pool.clone(), std::mem::take(&mut self.scope), std::mem::take(&mut self.key));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { release(&pool, &scope, &key).await.ok() });
        }
    }
}

/// The request's `Idempotency-Key`, checked (1 to 255 visible ASCII characters), for handlers
/// that pass it on to their use case. Behind the middleware the checks have already passed;
/// without it, a missing key is 400 `idempotency_key_required`, so a handler never reads the
/// header by hand or falls back to an empty key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    #[must_use]
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, ApiError> {
        parts.headers.get(&IDEMPOTENCY_KEY).map_or_else(|| Err(key_required()), parse_key)
    }
}

fn key_required() -> ApiError {
    ApiError::bad_request(
        "idempotency_key_required",
        "This endpoint needs an Idempotency-Key header (a unique value per operation, e.g. a UUID).",
    )
}

fn parse_key(value: &HeaderValue) -> Result<IdempotencyKey, ApiError> {
    value
        .to_str()
        .ok()
        .filter(|key| (1..=255).contains(&key.len()))
        .map(|key| IdempotencyKey(key.to_owned()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters.",
            )
        })
}

/// The middleware: `router.route_layer(from_fn_with_state(idempotency, idempotency::middleware))`.
pub async fn middleware(State(config): State<Idempotency>, request: Request, next: Next) -> Response {
    match run(config, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run(config: Idempotency, request: Request, next: Next) -> Result<Response, Response> {
    // Who is asking comes first: on a route scoped to callers, a request without a valid
    // token is the handler's to refuse (401), whatever its key looks like.
    let Some(scope) = config.scope(request.headers()) else { return Ok(next.run(request).await) };
    let key = match request.headers().get(&IDEMPOTENCY_KEY) {
        None if config.required => return Err(key_required().into_response()),
        None => return Ok(next.run(request).await),
        Some(value) => parse_key(value).map_err(IntoResponse::into_response)?.0,
    };
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE).into_response())?;
    let fingerprint = {
        let mut hash = Sha256::new();
        hash.update(parts.method.as_str());
        hash.update(b" ");
        hash.update(parts.uri.path_and_query().map_or("", |p| p.as_str()));
        hash.update(b"\n");
        hash.update(&bytes);
        hash.finalize().to_vec()
    };

    match begin(&config, &scope, &key, &fingerprint).await.map_err(|e| ApiError::internal(e).into_response())? {
        Begin::Proceed => {}
        Begin::Replay(response) => return Ok(response),
        Begin::Mismatch => {
            return Err(ApiError::unprocessable(
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request.",
            )
            .into_response());
        }
        Begin::InFlight => {
            return Err(ApiError::conflict(
                "idempotency_request_in_progress",
                "A request with this Idempotency-Key is still being processed.",
            )
            .with_retry_after(Duration::from_secs(1))
            .into_response());
        }
    }

    let mut lease = Lease::hold(&config, &scope, &key);
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if parts.status.is_server_error() {
        release(&config.pool, &scope, &key).await.ok();
    } else {
        let headers: serde_json::Map<String, serde_json::Value> = REPLAYED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some((name.as_str().to_owned(), value.into()))
            })
            .collect();
        complete(&config.pool, &scope, &key, parts.status, &headers, &body)
            .await
            .map_err(|e| ApiError::internal(e).into_response())?;
    }
    lease.settled = true;
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// fingerprint, status (NULL while in flight), replayed headers, body.
type StoredOutcome = (Vec<u8>, Option<i16>, Option<serde_json::Value>, Option<Vec<u8>>);

enum Begin {
    Proceed,
    Replay(Response),
    Mismatch,
    InFlight,
}

async fn begin(config: &Idempotency, scope: &str, key: &str, fingerprint: &[u8]) -> anyhow::Result<Begin> {
    // Claim the key: a new key, an expired record, or an abandoned attempt at the same request.
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, locked_until, expires_at)
         VALUES ($1, $2, $3, now() + $4, now() + $5)
         ON CONFLICT (scope, key) DO UPDATE
            SET fingerprint = EXCLUDED.fingerprint, locked_until = EXCLUDED.locked_until,
                expires_at = EXCLUDED.expires_at, status = NULL, headers = NULL, body = NULL, created_at = now()
          WHERE idempotency_keys.expires_at < now()
             OR (idempotency_keys.status IS NULL AND idempotency_keys.locked_until < now()
                 AND idempotency_keys.fingerprint = EXCLUDED.fingerprint)",
    )
    .bind(scope)
    .bind(key)
    .bind(fingerprint)
    .bind(config.lease)
    .bind(config.retention)
    .execute(&config.pool)
    .await?;
    if claimed.rows_affected() == 1 {
        return Ok(Begin::Proceed);
    }
    let existing: Option<StoredOutcome> =
        sqlx::query_as("SELECT fingerprint, status, headers, body FROM idempotency_keys WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .fetch_optional(&config.pool)
            .await?;
    let Some((stored_fingerprint, status, headers, body)) = existing else {
        // Deleted between the two statements (a 5xx released it): treat as in flight; the
        // client's retry will claim it.
        return Ok(Begin::InFlight);
    };
    if stored_fingerprint != fingerprint {
        return Ok(Begin::Mismatch);
    }
    let Some(status) = status else {
        return Ok(Begin::InFlight);
    };
    let mut response = Response::new(Body::from(body.unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(u16::try_from(status)?)?;
    if let Some(serde_json::Value::Object(headers)) = headers {
        for (name, value) in headers {
            if let (Ok(name), Some(Ok(value))) = (HeaderName::try_from(name), value.as_str().map(HeaderValue::from_str))
            {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response.headers_mut().insert(IDEMPOTENT_REPLAYED.clone(), HeaderValue::from_static("true"));
    Ok(Begin::Replay(response))
}

async fn complete(
    pool: &PgPool,
    scope: &str,
    key: &str,
    status: StatusCode,
    headers: &serde_json::Map<String, serde_json::Value>,
    body: &[u8],
) -> anyhow::Result<()> {
    sqlx::query("UPDATE idempotency_keys SET status = $3, headers = $4, body = $5 WHERE scope = $1 AND key = $2")
        .bind(scope)
        .bind(key)
        .bind(i16::try_from(status.as_u16())?)
        .bind(serde_json::Value::Object(headers.clone()))
        .bind(body)
        .execute(pool)
        .await?;
    Ok(())
}

async fn renew(pool: &PgPool, scope: &str, key: &str, lease: Duration) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET locked_until = now() + $3 WHERE scope = $1 AND key = $2 AND status IS NULL",
    )
    .bind(scope)
    .bind(key)
    .bind(lease)
    .execute(pool)
    .await?;
    Ok(())
}

async fn release(pool: &PgPool, scope: &str, key: &str) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL")
        .bind(scope)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes expired records; the module's retention job calls this.
///
/// # Errors
/// Database failures.
pub async fn purge_expired(pool: &PgPool) -> anyhow::Result<u64> {
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < now()").execute(pool).await?;
    Ok(done.rows_affected())
}
