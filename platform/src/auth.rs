//! Verifying access tokens: EdDSA-signed JWTs with `sub`, `roles`, `exp`, `iss`, `aud` and a
//! `kid` header. The users module signs them and publishes its public keys (JWKS); any
//! process — including an extracted service — verifies with those keys alone, and refuses
//! tokens whose access was revoked since they were issued ([`revocation`], ADR 0020).

pub mod revocation;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::http::ApiError;
use revocation::{Revocations, Revoked};

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
const LEEWAY_SECONDS: i64 = 5;

/// The claims of a Bulkhead access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub roles: Vec<Role>,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// Not valid before (Unix seconds); checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Token id, unique per issued token.
    #[serde(default)]
    pub jti: Option<String>,
    /// The session (refresh-token family) the token was issued for, when it came from a login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

pub use shared_kernel::Role;

/// Who is calling, as proven by a verified token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub roles: Vec<Role>,
    /// The login session the token belongs to (`sid`), if any.
    pub session: Option<String>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    /// Whose records a list shows, given the `user_id` filter asked for: admins see anyone's
    /// (or everyone's, with no filter); anyone else sees their own, and asking for someone
    /// else's is refused.
    ///
    /// # Errors
    /// 403 for another person's records, or a subject that is not a user id.
    pub fn list_scope(&self, asked: Option<uuid::Uuid>) -> Result<Option<uuid::Uuid>, crate::http::ApiError> {
        if self.is_admin() {
            return Ok(asked);
        }
        let me: uuid::Uuid = self.subject.parse().map_err(|_| crate::http::ApiError::forbidden())?;
        if asked.is_some_and(|asked| asked != me) {
            return Err(crate::http::ApiError::forbidden());
        }
        Ok(Some(me))
    }
}

/// Why a token was refused. Callers see one 401 whatever the reason; the reason is logged.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token header names algorithm {0:?}; only EdDSA is accepted")]
    WrongAlgorithm(Algorithm),
    #[error("the token has no key id (kid)")]
    MissingKeyId,
    #[error("the token header carries key material or a key URL (jwk, jku, x5u, x5c)")]
    KeyInHeader,
    #[error("no key with id {0:?} is known")]
    UnknownKey(String),
    #[error("the token is malformed or fails verification: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("the token says it was issued in the future (iat {0})")]
    IssuedInTheFuture(i64),
    #[error("access revoked: {0}")]
    Revoked(#[from] Revoked),
}

/// Verifies access tokens against a rotating set of public keys. Cheap to clone; all clones
/// share the key set, so the users module's rotation is seen everywhere at once. In a
/// process that does not host users, the keys come from users' JWKS ([`JwtVerifier::with_jwks_url`]).
#[derive(Clone)]
pub struct JwtVerifier {
    issuer: String,
    audience: String,
    keys: Arc<RwLock<HashMap<String, DecodingKey>>>,
    remote: Option<Arc<RemoteJwks>>,
    revocations: Revocations,
}

/// Where a process that does not host users gets the keys: users' JWKS, read at start, again
/// when a token names a key not seen yet (a rotation), and every few minutes (a retirement).
#[derive(Debug)]
struct RemoteJwks {
    url: url::Url,
    client: reqwest::Client,
    /// When the set was last asked for and whether it came; one fetch at a time.
    fetched: tokio::sync::Mutex<Option<Fetched>>,
}

/// The last fetch of a remote JWKS.
#[derive(Debug, Clone, Copy)]
struct Fetched {
    at: std::time::Instant,
    succeeded: bool,
}

impl Fetched {
    /// Whether it is too recent to fetch again on an unknown key id: a failed fetch is
    /// tried again sooner, so a process that started before users catches up at once.
    fn blocks_refetch(self) -> bool {
        let wait = if self.succeeded { JWKS_REFETCH_AT_MOST_EVERY } else { JWKS_RETRY_AFTER_FAILURE };
        self.at.elapsed() < wait
    }
}

/// After a failed fetch, an unknown key id may fetch again this soon.
const JWKS_RETRY_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_millis(200);

/// An unknown key id may make the JWKS be fetched again this often, no more: a stream of
/// forged key ids must not become a stream of requests to the users module.
const JWKS_REFETCH_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Keys are refreshed this often anyway, so a key users retired stops being trusted.
const JWKS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(300);

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> = self.keys.read().map(|k| k.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kids", &kids)
            .finish()
    }
}

impl JwtVerifier {
    /// A verifier with no keys yet: it refuses every token until keys are added.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            keys: Arc::default(),
            remote: None,
            revocations: Revocations::default(),
        }
    }

    /// The access changes this verifier refuses tokens by; clones share them. The users
    /// module applies its changes here at once; [`revocation::RevocationFeed`] brings every
    /// process the changes made anywhere.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// The same verifier, trusting the keys of the JWKS at `url` (the users module's
    /// `/.well-known/jwks.json` in another process). Call [`JwtVerifier::refresh`] to read it
    /// a first time.
    #[must_use]
    pub fn with_jwks_url(mut self, url: url::Url, client: reqwest::Client) -> Self {
        self.remote = Some(Arc::new(RemoteJwks { url, client, fetched: tokio::sync::Mutex::new(None) }));
        self
    }

    /// Reads the remote JWKS now (nothing to do without one); returns how many keys it holds.
    ///
    /// # Errors
    /// The JWKS cannot be fetched or read; the keys trusted so far stay.
    pub async fn refresh(&self) -> anyhow::Result<usize> {
        let Some(remote) = &self.remote else { return Ok(self.key_ids().len()) };
        let mut fetched = remote.fetched.lock().await;
        let outcome = self.fetch(remote).await;
        *fetched = Some(Fetched { at: std::time::Instant::now(), succeeded: outcome.is_ok() });
        outcome
    }

    async fn fetch(&self, remote: &RemoteJwks) -> anyhow::Result<usize> {
        use anyhow::Context;
        let response = remote
            .client
            .get(remote.url.clone())
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("fetching the signing keys from {}", remote.url))?;
        let jwks: JwkSet = response.json().await.with_context(|| format!("reading the JWKS of {}", remote.url))?;
        self.set_jwks(&jwks)?;
        Ok(jwks.keys.len())
    }

    /// Fetches the remote JWKS again if `due` says so of the last fetch, unless another call
    /// is at it already (which this one then waits for).
    async fn refresh_when(&self, due: impl Fn(Fetched) -> bool) {
        let Some(remote) = &self.remote else { return };
        let mut fetched = remote.fetched.lock().await;
        if fetched.is_some_and(|last| !due(last)) {
            return;
        }
        let outcome = self.fetch(remote).await;
        *fetched = Some(Fetched { at: std::time::Instant::now(), succeeded: outcome.is_ok() });
        if let Err(error) = outcome {
            tracing::warn!("{error:#}");
        }
    }

    /// [`JwtVerifier::verify`], reading the remote JWKS again first when the token names a
    /// key not seen yet, or when the keys are old.
    ///
    /// # Errors
    /// [`TokenError`] saying what was wrong.
    pub async fn verify_current(&self, token: &str) -> Result<Principal, TokenError> {
        if self.remote.is_none() {
            return self.verify(token);
        }
        // Old keys are refreshed beside the request, which need not wait for it.
        let stale = |last: Fetched| last.at.elapsed() >= JWKS_MAX_AGE;
        if self
            .remote
            .as_ref()
            .is_some_and(|remote| remote.fetched.try_lock().is_ok_and(|fetched| fetched.is_some_and(stale)))
        {
            let verifier = self.clone();
            tokio::spawn(async move { verifier.refresh_when(stale).await });
        }
        match self.verify(token) {
            Err(TokenError::UnknownKey(_)) => {
                self.refresh_when(|last| !last.blocks_refetch()).await;
                self.verify(token)
            }
            verified => verified,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Adds (or replaces) one Ed25519 public key, given as its 32 raw bytes.
    pub fn add_ed25519_key(&self, kid: impl Into<String>, public_key: &[u8]) {
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(kid.into(), DecodingKey::from_ed_der(public_key));
        }
    }

    /// Stops trusting the key `kid` (a retired signing key).
    pub fn remove_key(&self, kid: &str) {
        if let Ok(mut keys) = self.keys.write() {
            keys.remove(kid);
        }
    }

    /// The ids of the keys trusted now.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.read().map(|keys| keys.keys().cloned().collect()).unwrap_or_default()
    }

    /// Replaces the key set with the EdDSA keys of a JWKS (other key types are ignored).
    ///
    /// # Errors
    /// A JWK that claims to be an EdDSA key but cannot be read.
    pub fn set_jwks(&self, jwks: &JwkSet) -> Result<(), TokenError> {
        let mut fresh = HashMap::new();
        for jwk in &jwks.keys {
            if let (Some(kid), true) = (&jwk.common.key_id, is_ed25519(jwk)) {
                fresh.insert(kid.clone(), DecodingKey::from_jwk(jwk)?);
            }
        }
        if let Ok(mut keys) = self.keys.write() {
            *keys = fresh;
        }
        Ok(())
    }

    /// Verifies signature, algorithm, key id, the time claims (`exp`; `nbf` and `iat` not in
    /// the future), issuer and audience, then that the access it claims was not revoked.
    ///
    /// # Errors
    /// [`TokenError`] saying what was wrong.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let header = jsonwebtoken::decode_header(token)?;
        // Pinning the algorithm defeats `alg: none` and HS256-signed-with-the-public-key.
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::WrongAlgorithm(header.alg));
        }
        // Keys come from our own key set only, never from the token: a header that offers
        // one is an attack (or a confused client), whatever key it names.
        if header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() || header.x5c.is_some() {
            return Err(TokenError::KeyInHeader);
        }
        let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
        let key = self.keys.read().ok().and_then(|keys| keys.get(&kid).cloned()).ok_or(TokenError::UnknownKey(kid))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS.unsigned_abs();
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)?.claims;
        let now = chrono::Utc::now();
        // A token from the future was not made by our issuer's clock: refuse it like one not
        // yet valid, instead of letting it outlive a revocation that "predates" it.
        if claims.iat > now.timestamp() + LEEWAY_SECONDS {
            return Err(TokenError::IssuedInTheFuture(claims.iat));
        }
        if let Some(revoked) = self.revocations.refusal(&claims, now) {
            return Err(revoked.into());
        }
        Ok(Principal { subject: claims.sub, roles: claims.roles, session: claims.sid })
    }
}

fn is_ed25519(jwk: &Jwk) -> bool {
    matches!(&jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) if p.curve == jsonwebtoken::jwk::EllipticCurve::Ed25519)
}

/// The token of an `Authorization: Bearer …` header (the scheme is case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Extractor: a verified caller, or 401 in the envelope with `WWW-Authenticate`.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl<S> FromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    JwtVerifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
        let verifier = JwtVerifier::from_ref(state);
        match verifier.verify_current(token).await {
            Ok(principal) => Ok(Self(principal)),
            Err(reason) => {
                tracing::info!(%reason, "refused a bearer token");
                Err(ApiError::invalid_token())
            }
        }
    }
}

/// Extractor: a verified caller with the admin role; 401 anonymous, 403 otherwise.
#[derive(Debug, Clone)]
pub struct AdminOnly(pub Principal);

impl<S> FromRequestParts<S> for AdminOnly
where
    S: Send + Sync,
    JwtVerifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(principal) = Authenticated::from_request_parts(parts, state).await?;
        if principal.is_admin() { Ok(Self(principal)) } else { Err(ApiError::forbidden()) }
    }
}
