//! The ports hosted modules need, wired to whatever implements them for this process: the
//! module itself when it is hosted here, else its contract's HTTP client talking to the
//! process at `BULKHEAD_<M>_URL` (a missing URL stops the start, naming the variable). Either
//! way callers get the same trait and the same errors, and every call is counted in the same
//! metrics, labelled `in_process` or `http`, so both topologies can be compared.

use std::sync::Arc;

use anyhow::Context;
use platform::remote::{HttpTransport, PortMetrics, ServiceKeys};
use shared_kernel::port::remote::Transport;

use crate::config::RemoteArgs;

/// How this process reaches modules it does not host.
#[derive(Debug, Clone)]
pub(crate) struct Remotes {
    pub(crate) args: RemoteArgs,
    pub(crate) keys: ServiceKeys,
    pub(crate) client: reqwest::Client,
    pub(crate) metrics: PortMetrics,
}

impl Remotes {
    /// The transport of calls from `caller` (hosted here) to `callee` (hosted elsewhere).
    ///
    /// # Errors
    /// No URL for the callee's process, or no service key the caller can sign with.
    #[cfg_attr(
        not(any(feature = "orders", feature = "notifications")),
        expect(dead_code, reason = "only modules that call ports need it")
    )]
    pub(crate) fn transport(&self, caller: &'static str, callee: &'static str) -> anyhow::Result<Arc<dyn Transport>> {
        let (url, variable) = self.args.url(callee);
        let url = url.with_context(|| {
            format!(
                "the {caller} module calls the {callee} module, which this process does not host: \
                 set {variable} to the URL of the process that hosts it"
            )
        })?;
        self.keys.sign_for(caller).with_context(|| format!("signing the {caller} module's calls to {callee}"))?;
        Ok(Arc::new(HttpTransport::new(
            self.client.clone(),
            url,
            caller,
            callee,
            self.keys.clone(),
            self.args.transport(),
            self.metrics.clone(),
        )))
    }
}

/// The ports of modules hosted by this process, filled in as they are built, and the way to
/// the others.
#[derive(Debug)]
pub(crate) struct Ports<'a> {
    #[cfg_attr(
        not(any(feature = "orders", feature = "notifications")),
        expect(dead_code, reason = "only modules that call ports need it")
    )]
    pub(crate) remotes: &'a Remotes,
    #[cfg(feature = "orders")]
    pub(crate) inventory: Option<Arc<dyn inventory_contract::InventoryApi>>,
    #[cfg(feature = "notifications")]
    pub(crate) users: Option<Arc<dyn users_contract::UsersApi>>,
}

impl<'a> Ports<'a> {
    pub(crate) fn new(remotes: &'a Remotes) -> Self {
        Self {
            remotes,
            #[cfg(feature = "orders")]
            inventory: None,
            #[cfg(feature = "notifications")]
            users: None,
        }
    }

    /// The inventory port as `caller` sees it: in process, or over HTTP.
    ///
    /// # Errors
    /// Inventory is not hosted and its process is not configured.
    #[cfg(feature = "orders")]
    pub(crate) fn inventory(&self, caller: &'static str) -> anyhow::Result<Arc<dyn inventory_contract::InventoryApi>> {
        Ok(match &self.inventory {
            Some(api) => {
                Arc::new(InProcess { inner: api.clone(), callee: "inventory", metrics: self.remotes.metrics.clone() })
            }
            None => {
                Arc::new(inventory_contract::client::InventoryClient::new(self.remotes.transport(caller, "inventory")?))
            }
        })
    }

    /// The users port as `caller` sees it: in process, or over HTTP.
    ///
    /// # Errors
    /// Users is not hosted and its process is not configured.
    #[cfg(feature = "notifications")]
    pub(crate) fn users(&self, caller: &'static str) -> anyhow::Result<Arc<dyn users_contract::UsersApi>> {
        Ok(match &self.users {
            Some(api) => {
                Arc::new(InProcess { inner: api.clone(), callee: "users", metrics: self.remotes.metrics.clone() })
            }
            None => Arc::new(users_contract::client::UsersClient::new(self.remotes.transport(caller, "users")?)),
        })
    }
}

/// A hosted module's port, measured like its HTTP client is.
#[derive(Debug)]
#[cfg(any(feature = "orders", feature = "notifications"))]
struct InProcess<T: ?Sized> {
    inner: Arc<T>,
    callee: &'static str,
    metrics: PortMetrics,
}

#[cfg(any(feature = "orders", feature = "notifications"))]
impl<T: ?Sized> InProcess<T> {
    async fn measure<R, E>(&self, operation: &str, call: impl Future<Output = Result<R, E>>) -> Result<R, E> {
        let started = std::time::Instant::now();
        let outcome = call.await;
        let label = if outcome.is_ok() { "ok" } else { "error" };
        self.metrics.observe(self.callee, operation, "in_process", label, started.elapsed());
        outcome
    }
}

#[cfg(feature = "orders")]
#[async_trait::async_trait]
impl inventory_contract::InventoryApi for InProcess<dyn inventory_contract::InventoryApi> {
    async fn quote(
        &self,
        ctx: &platform::port::CallContext,
        lines: &[inventory_contract::QuoteLine],
    ) -> Result<inventory_contract::Quote, inventory_contract::InventoryError> {
        self.measure("quote", self.inner.quote(ctx, lines)).await
    }
}

#[cfg(feature = "notifications")]
#[async_trait::async_trait]
impl users_contract::UsersApi for InProcess<dyn users_contract::UsersApi> {
    async fn contact(
        &self,
        ctx: &platform::port::CallContext,
        user: users_contract::UserId,
    ) -> Result<users_contract::Contact, users_contract::UsersError> {
        self.measure("contact", self.inner.contact(ctx, user)).await
    }

    async fn admins(
        &self,
        ctx: &platform::port::CallContext,
    ) -> Result<Vec<users_contract::Contact>, users_contract::UsersError> {
        self.measure("admins", self.inner.admins(ctx)).await
    }

    async fn action_link(
        &self,
        ctx: &platform::port::CallContext,
        request: users_contract::ActionRequestId,
    ) -> Result<users_contract::ActionLink, users_contract::UsersError> {
        self.measure("action_link", self.inner.action_link(ctx, request)).await
    }
}
