//! Per-client rate limiting with `governor` (GCRA): 429 with `Retry-After` in the envelope.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::client_address::ClientAddress;
use super::error::ApiError;

/// A keyed limiter shared by every request of one router.
#[derive(Debug, Clone)]
pub struct ClientRateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    seen: Arc<AtomicU64>,
}

impl ClientRateLimit {
    /// `per_second` sustained, `burst` at once, per client address.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self { limiter: Arc::new(RateLimiter::keyed(quota)), clock: DefaultClock::default(), seen: Arc::default() }
    }

    /// Checks one request from `client`.
    ///
    /// # Errors
    /// 429 with the time until the client may try again.
    pub fn check(&self, client: IpAddr) -> Result<(), ApiError> {
        // Forget idle clients now and then so the table does not grow without bound.
        if self.seen.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&client)
            .map_err(|not_until| ApiError::rate_limited(not_until.wait_time_from(self.clock.now())))
    }
}

/// Middleware: `router.layer(from_fn_with_state(limit, limit_by_client))`. Requests without
/// a peer address (in-process calls) are not limited.
pub async fn limit_by_client(State(limit): State<ClientRateLimit>, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ClientAddress>()
        .map(|client| client.0)
        .or_else(|| request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip()));
    if let Some(client) = client
        && let Err(error) = limit.check(client)
    {
        return error.into_response();
    }
    next.run(request).await
}
