//! [`RequestContext`]: what a use case needs to know about the request that asked for it —
//! its id and trace (for event metadata and port calls), the client's address and agent.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use super::client_address::ClientAddress;
use super::request_id::{RequestId, TraceParent};
use crate::bus::Metadata;
use crate::port::CallContext;

/// Extractor; never rejects.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: String,
    pub traceparent: Option<String>,
    /// The peer address, when the server runs with connect info.
    pub client_address: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// Metadata for events this request appends, acted by `actor`.
    pub fn metadata(&self, actor: Option<String>) -> Metadata {
        Metadata::for_request(self.request_id.clone(), actor, self.traceparent.as_deref())
    }

    /// Context for port calls made while serving this request.
    pub fn call(&self, actor: Option<String>) -> CallContext {
        CallContext::for_request(self.request_id.clone(), actor, self.traceparent.clone())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            request_id: parts.extensions.get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default(),
            traceparent: parts.extensions.get::<TraceParent>().map(|t| t.0.clone()),
            client_address: parts
                .extensions
                .get::<ClientAddress>()
                .map(|client| client.0)
                .or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())),
            user_agent: parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        })
    }
}
