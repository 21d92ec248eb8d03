//! The HTTP client webhooks are delivered with. It resolves names itself and connects only to
//! the addresses the policy allows (`domain::targets`), so the check holds at delivery time
//! and against DNS rebinding; it follows no redirects and uses no proxy, so neither can
//! carry a delivery somewhere the check did not see.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::domain::targets::{self, TargetError};

/// Delivers signed payloads.
#[derive(Debug, Clone)]
pub(crate) struct WebhookClient {
    client: reqwest::Client,
    allow_private: bool,
}

/// What the receiver answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) latency: Duration,
}

/// Why a delivery did not get an answer.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Another attempt may work (connection refused or reset, timeout).
    pub(crate) transient: bool,
    pub(crate) message: String,
    pub(crate) latency: Duration,
}

/// Resolves with the system resolver, then keeps only the addresses the policy allows.
#[derive(Debug)]
struct VettedResolver {
    allow_private: bool,
}

/// The name did not resolve at delivery: transient, unlike a refused address.
#[derive(Debug, thiserror::Error)]
#[error("the host does not resolve: {0}")]
struct Unresolved(String);

impl Resolve for VettedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // A resolver that fails or finds nothing is DNS trouble (a timeout, SERVFAIL, a
            // record being changed): another attempt may work, so it is not a `TargetError`.
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|error| Unresolved(format!("{host}: {error}")))?
                .collect();
            let vetted: Vec<SocketAddr> =
                found.iter().copied().filter(|address| targets::vet(address.ip(), allow_private).is_ok()).collect();
            match (vetted.is_empty(), found.first()) {
                (false, _) => Ok(Box::new(vetted.into_iter()) as Addrs),
                (true, Some(refused)) => Err(TargetError::NotPublic(refused.ip()).into()),
                (true, None) => Err(Unresolved(format!("{host}: no addresses")).into()),
            }
        })
    }
}

impl WebhookClient {
    /// # Errors
    /// When the TLS backend cannot be set up.
    pub(crate) fn new(allow_private: bool, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(VettedResolver { allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent("Bulkhead-Webhooks/1")
            .build()?;
        Ok(Self { client, allow_private })
    }

    /// Whether `url` may be registered: a valid http(s) URL whose host resolves only to
    /// allowed addresses.
    ///
    /// # Errors
    /// Why it is refused.
    pub(crate) async fn check(&self, raw: &str) -> Result<Url, TargetError> {
        let url = targets::parse_url(raw)?;
        if let Some(ip) = targets::literal_address(&url) {
            targets::vet(ip, self.allow_private)?;
            return Ok(url);
        }
        let host = url.host_str().ok_or(TargetError::NoHost)?.to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|error| TargetError::Unresolvable(format!("{host}: {error}")))?
            .collect();
        if found.is_empty() {
            return Err(TargetError::Unresolvable(host));
        }
        // At registration every address must pass: a name that also points inside is refused.
        for address in found {
            targets::vet(address.ip(), self.allow_private)?;
        }
        Ok(url)
    }

    /// Posts `body` to `url` with `headers`.
    ///
    /// # Errors
    /// No answer (a refused target is a permanent failure).
    pub(crate) async fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<Answer, Failure> {
        let started = Instant::now();
        let refused =
            |error: TargetError| Failure { transient: false, message: error.to_string(), latency: Duration::ZERO };
        let url = targets::parse_url(url).map_err(refused)?;
        if let Some(ip) = targets::literal_address(&url) {
            targets::vet(ip, self.allow_private).map_err(refused)?;
        }
        let mut request = self.client.post(url).header("content-type", "application/json").body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => Ok(Answer { status: response.status().as_u16(), latency: started.elapsed() }),
            Err(error) => {
                let latency = started.elapsed();
                if let Some(target) = target_error(&error) {
                    return Err(Failure { transient: false, message: target.to_string(), latency });
                }
                Err(Failure { transient: true, message: describe(&error), latency })
            }
        }
    }
}

/// The policy's refusal somewhere in the error's causes: at delivery only an address that is
/// not public is a `TargetError` (resolver failures are `Unresolved`, and transient).
fn target_error(error: &reqwest::Error) -> Option<TargetError> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(target) = current.downcast_ref::<TargetError>() {
            return Some(target.clone());
        }
        cause = current.source();
    }
    None
}

/// The error with its causes, without the URL (it may carry a token in its query).
fn describe(error: &reqwest::Error) -> String {
    let mut head = error.to_string();
    if let Some(url) = error.url() {
        head = head.replace(url.as_str(), "[url]");
    }
    let mut parts = vec![head];
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        parts.push(current.to_string());
        cause = current.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[tokio::test]
    async fn a_name_that_does_not_resolve_at_delivery_is_a_transient_failure() {
        let client = WebhookClient::new(false, Duration::from_secs(5)).unwrap();
        // `.invalid` never resolves (RFC 6761), like a DNS outage would look.
        let failure =
            client.post("https://hooks.example.invalid/bulkhead", Vec::new(), b"{}".to_vec()).await.unwrap_err();
        assert!(failure.transient, "{}", failure.message);
        assert!(failure.message.contains("does not resolve"), "{}", failure.message);
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_private_address_at_delivery_is_a_permanent_failure() {
        let client = WebhookClient::new(false, Duration::from_secs(5)).unwrap();
        let failure = client.post("http://localhost:9/bulkhead", Vec::new(), b"{}".to_vec()).await.unwrap_err();
        assert!(!failure.transient, "{}", failure.message);
        assert!(failure.message.contains("is not a public address"), "{}", failure.message);
    }
}
