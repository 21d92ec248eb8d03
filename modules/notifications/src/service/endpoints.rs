//! Registering webhook endpoints. The `Idempotency-Key` is kept with the endpoint rather than
//! by the platform middleware, whose stored response would be a second copy of the secret
//! (ADR 0013): a retry with the same key and body answers with the same endpoint and secret,
//! for 24 hours and while the endpoint is not deleted.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::NotificationsService;
use crate::domain::signature;
use crate::domain::targets::TargetError;
use crate::store::endpoints::{self, EndpointRow, NewEndpoint};

/// A validated registration.
#[derive(Debug)]
pub(crate) struct CreateEndpoint {
    pub(crate) url: String,
    pub(crate) description: Option<String>,
    pub(crate) event_types: Vec<String>,
    pub(crate) created_by: Uuid,
    pub(crate) idempotency_key: String,
}

/// What registering did.
#[derive(Debug)]
pub(crate) enum Created {
    New(EndpointRow),
    /// The same key and request came before: the endpoint then registered.
    Again(EndpointRow),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateEndpointError {
    #[error("the URL is refused: {0}")]
    Target(#[from] TargetError),
    #[error("the idempotency key was used for another request")]
    KeyReused,
    /// The key registered an endpoint that was deleted since: it is not brought back.
    #[error("the endpoint of this idempotency key was deleted")]
    Deleted,
    /// The key is older than [`REPLAY_WINDOW`]: its answer (with the secret) is not shown
    /// again.
    #[error("the idempotency key has expired")]
    KeyExpired,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// How long a retry with the same key is answered with the endpoint and its secret: as long
/// as the platform keeps other idempotency keys (a client retrying a lost answer does so
/// within minutes), not for as long as the endpoint lives.
pub(crate) const REPLAY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

impl CreateEndpoint {
    fn digest(&self) -> Vec<u8> {
        let mut hash = Sha256::new();
        hash.update(self.url.as_bytes());
        hash.update([0]);
        hash.update(self.description.as_deref().unwrap_or_default().as_bytes());
        hash.update([0]);
        for event_type in &self.event_types {
            hash.update(event_type.as_bytes());
            hash.update([0]);
        }
        hash.finalize().to_vec()
    }
}

impl NotificationsService {
    /// Registers an endpoint whose URL passes the target policy, with a new secret.
    ///
    /// # Errors
    /// A refused URL, a key reused for another request, or a database failure.
    #[tracing::instrument(skip_all, fields(created_by = %request.created_by), err(level = "info"))]
    pub(crate) async fn create_endpoint(&self, request: CreateEndpoint) -> Result<Created, CreateEndpointError> {
        let digest = request.digest();
        let mut db = self.pool.acquire().await.map_err(anyhow::Error::from)?;
        if let Some(found) = self.replay(&mut db, &request, &digest).await? {
            return Ok(found);
        }
        let url = self.webhooks.check(&request.url).await?;
        let secret: SecretString = signature::new_secret();
        let id = Uuid::now_v7();
        let new = NewEndpoint {
            id,
            url: url.as_str(),
            description: request.description.as_deref(),
            event_types: &request.event_types,
            secret: secret.expose_secret(),
            created_by: request.created_by,
            idempotency_key: Some(&request.idempotency_key),
            request_digest: &digest,
            at: self.now(),
        };
        if !endpoints::insert(&mut db, &new).await? {
            // A concurrent request with the same key won the insert.
            return self.replay(&mut db, &request, &digest).await?.ok_or_else(|| {
                CreateEndpointError::Unexpected(anyhow::anyhow!("the endpoint of an idempotency key vanished"))
            });
        }
        let endpoint = endpoints::find(&mut db, id).await?.ok_or_else(|| anyhow::anyhow!("endpoint {id} vanished"))?;
        tracing::info!(endpoint_id = %id, "webhook endpoint registered");
        Ok(Created::New(endpoint))
    }

    async fn replay(
        &self,
        db: &mut sqlx::PgConnection,
        request: &CreateEndpoint,
        digest: &[u8],
    ) -> Result<Option<Created>, CreateEndpointError> {
        let Some((endpoint, deleted)) =
            endpoints::find_by_key(db, request.created_by, &request.idempotency_key).await?
        else {
            return Ok(None);
        };
        if endpoint.request_digest.as_deref() != Some(digest) {
            return Err(CreateEndpointError::KeyReused);
        }
        if deleted {
            return Err(CreateEndpointError::Deleted);
        }
        if endpoint.created_at + REPLAY_WINDOW < self.now() {
            return Err(CreateEndpointError::KeyExpired);
        }
        Ok(Some(Created::Again(endpoint)))
    }
}
