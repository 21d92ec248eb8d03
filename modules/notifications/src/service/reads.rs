//! Reading notifications and webhook endpoints for the API, and the admins' plain changes to
//! an endpoint (delete, enable). Handlers reach the module's data only through here.

use anyhow::Context;
use platform::http::{Page, PageRequest};
use uuid::Uuid;

use super::NotificationsService;
use crate::store::endpoints::{self, EndpointRow};
use crate::store::notifications::{self, AttemptRow, ListFilter, ListKey, NotificationRow};

impl NotificationsService {
    /// One page of the notifications `filter` covers.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn list_notifications(
        &self,
        filter: &ListFilter,
        page: &PageRequest<ListKey>,
    ) -> anyhow::Result<Page<NotificationRow>> {
        let mut db = self.pool.acquire().await.context("listing notifications")?;
        let rows = notifications::list(&mut db, filter, page).await?;
        Ok(Page::from_overfetch(rows, page, notifications::list_key))
    }

    /// One notification and its delivery attempts.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn notification(&self, id: Uuid) -> anyhow::Result<Option<(NotificationRow, Vec<AttemptRow>)>> {
        let mut db = self.pool.acquire().await.context("reading a notification")?;
        let Some(row) = notifications::find(&mut db, id).await? else { return Ok(None) };
        let attempts = notifications::attempts(&mut db, id).await?;
        Ok(Some((row, attempts)))
    }

    /// One page of webhook endpoints.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn list_endpoints(
        &self,
        page: &PageRequest<endpoints::ListKey>,
    ) -> anyhow::Result<Page<EndpointRow>> {
        let mut db = self.pool.acquire().await.context("listing webhook endpoints")?;
        let rows = endpoints::list(&mut db, page).await?;
        Ok(Page::from_overfetch(rows, page, endpoints::list_key))
    }

    /// One webhook endpoint.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn endpoint(&self, id: Uuid) -> anyhow::Result<Option<EndpointRow>> {
        let mut db = self.pool.acquire().await.context("reading a webhook endpoint")?;
        endpoints::find(&mut db, id).await
    }

    /// Deletes an endpoint; `false` when there is none.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn delete_endpoint(&self, id: Uuid) -> anyhow::Result<bool> {
        let mut db = self.pool.acquire().await.context("deleting a webhook endpoint")?;
        endpoints::delete(&mut db, id, self.now()).await
    }

    /// Turns a disabled endpoint back on, its failures cleared; `false` when there is none.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn enable_endpoint(&self, id: Uuid) -> anyhow::Result<bool> {
        let mut db = self.pool.acquire().await.context("enabling a webhook endpoint")?;
        endpoints::enable(&mut db, id, self.now()).await
    }
}
