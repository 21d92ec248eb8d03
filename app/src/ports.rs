//! The ports hosted modules need, wired to whatever implements them in this process: the
//! module itself when it is hosted here. A port whose module is not hosted answers
//! `Unavailable` until its HTTP client lands with the split topology, so callers degrade
//! (503 with `Retry-After`) instead of failing to start.

/// The ports of modules hosted by this process, filled in as they are built.
#[derive(Debug, Default)]
pub(crate) struct Ports {
    #[cfg(feature = "orders")]
    pub(crate) inventory: Option<std::sync::Arc<dyn inventory_contract::InventoryApi>>,
}

impl Ports {
    /// The inventory port: the hosted module, or a stand-in that answers `Unavailable`.
    #[cfg(feature = "orders")]
    pub(crate) fn inventory(&self) -> std::sync::Arc<dyn inventory_contract::InventoryApi> {
        self.inventory.clone().unwrap_or_else(|| std::sync::Arc::new(NotHosted("inventory")))
    }
}

/// A port of a module that is not hosted by this process.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "orders"), expect(dead_code, reason = "no module needs a port"))]
struct NotHosted(&'static str);

#[cfg(feature = "orders")]
#[async_trait::async_trait]
impl inventory_contract::InventoryApi for NotHosted {
    async fn quote(
        &self,
        _ctx: &platform::port::CallContext,
        _lines: &[inventory_contract::QuoteLine],
    ) -> Result<inventory_contract::Quote, inventory_contract::InventoryError> {
        Err(inventory_contract::InventoryError::Unavailable(format!(
            "the {} module is not hosted by this process",
            self.0
        )))
    }
}
