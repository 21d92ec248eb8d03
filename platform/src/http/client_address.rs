//! Who the client is when proxies stand in between: an ingress in front of the app, or the
//! edge in front of a module's process. A proxy's `X-Forwarded-For` is believed only when the
//! proxy is trusted (`BULKHEAD_TRUSTED_PROXIES`); then the client is the last address in it
//! that is not a trusted proxy, so a client cannot pass for someone else by sending the
//! header itself. Rate limits, sign-in throttling and session records all use this address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The client's address, in the request's extensions (absent for in-process calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The client behind `peer`, given the `X-Forwarded-For` it sent and the trusted proxies.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(chain) = forwarded_for else { return peer };
    let hops: Vec<IpAddr> = chain.split(',').filter_map(|hop| hop.trim().parse().ok()).collect();
    // Right to left: each trusted proxy vouches for the hop before it.
    hops.iter().rev().find(|hop| !is_trusted(hop)).or(hops.first()).copied().unwrap_or(peer)
}

/// Middleware: records [`ClientAddress`] before anything reads it.
pub async fn resolve(State(trusted): State<Arc<[IpNet]>>, mut request: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let forwarded = request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let client = client_address(peer.ip(), forwarded, &trusted);
        request.extensions_mut().insert(ClientAddress(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_proxy_is_believed() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_address(ip("203.0.113.9"), Some("1.2.3.4"), &trusted),
            ip("203.0.113.9"),
            "a client's own header"
        );
        assert_eq!(client_address(ip("10.0.0.2"), Some("198.51.100.7"), &trusted), ip("198.51.100.7"));
        assert_eq!(client_address(ip("10.0.0.2"), None, &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn a_forged_hop_before_the_real_client_is_ignored() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // The client claims to be 1.1.1.1; the ingress (10.0.0.3) appended its real address.
        let chain = "1.1.1.1, 198.51.100.7, 10.0.0.3";
        assert_eq!(client_address(ip("10.0.0.2"), Some(chain), &trusted), ip("198.51.100.7"));
    }
}
