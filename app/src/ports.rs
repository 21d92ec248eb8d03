//! The ports hosted modules need, wired to whatever implements them in this process: the
//! module itself when it is hosted here. A port whose module is not hosted answers
//! `Unavailable` until its HTTP client lands with the split topology, so callers degrade
//! (503 with `Retry-After`) instead of failing to start.

/// The ports of modules hosted by this process, filled in as they are built.
#[derive(Debug, Default)]
pub(crate) struct Ports {
    #[cfg(feature = "orders")]
    pub(crate) inventory: Option<std::sync::Arc<dyn inventory_contract::InventoryApi>>,
    #[cfg(feature = "notifications")]
    pub(crate) users: Option<std::sync::Arc<dyn users_contract::UsersApi>>,
}

impl Ports {
    /// The inventory port: the hosted module, or a stand-in that answers `Unavailable`.
    #[cfg(feature = "orders")]
    pub(crate) fn inventory(&self) -> std::sync::Arc<dyn inventory_contract::InventoryApi> {
        self.inventory.clone().unwrap_or_else(|| std::sync::Arc::new(NotHosted("inventory")))
    }
}

impl Ports {
    /// The users port: the hosted module, or a stand-in that answers `Unavailable`.
    #[cfg(feature = "notifications")]
    pub(crate) fn users(&self) -> std::sync::Arc<dyn users_contract::UsersApi> {
        self.users.clone().unwrap_or_else(|| std::sync::Arc::new(NotHosted("users")))
    }
}

/// A port of a module that is not hosted by this process.
#[derive(Debug, Clone, Copy)]
#[cfg(any(feature = "orders", feature = "notifications"))]
struct NotHosted(&'static str);

#[cfg(any(feature = "orders", feature = "notifications"))]
impl NotHosted {
    fn reason(self) -> String {
        format!("the {} module is not hosted by this process", self.0)
    }
}

#[cfg(feature = "notifications")]
#[async_trait::async_trait]
impl users_contract::UsersApi for NotHosted {
    async fn contact(
        &self,
        _ctx: &platform::port::CallContext,
        _user: users_contract::UserId,
    ) -> Result<users_contract::Contact, users_contract::UsersError> {
        Err(users_contract::UsersError::Unavailable(self.reason()))
    }

    async fn admins(
        &self,
        _ctx: &platform::port::CallContext,
    ) -> Result<Vec<users_contract::Contact>, users_contract::UsersError> {
        Err(users_contract::UsersError::Unavailable(self.reason()))
    }

    async fn action_link(
        &self,
        _ctx: &platform::port::CallContext,
        _request: users_contract::ActionRequestId,
    ) -> Result<users_contract::ActionLink, users_contract::UsersError> {
        Err(users_contract::UsersError::Unavailable(self.reason()))
    }
}

#[cfg(feature = "orders")]
#[async_trait::async_trait]
impl inventory_contract::InventoryApi for NotHosted {
    async fn quote(
        &self,
        _ctx: &platform::port::CallContext,
        _lines: &[inventory_contract::QuoteLine],
    ) -> Result<inventory_contract::Quote, inventory_contract::InventoryError> {
        Err(inventory_contract::InventoryError::Unavailable(self.reason()))
    }
}
