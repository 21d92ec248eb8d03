//! The notifications domain: what a notification is and how it moves, the messages and
//! their templates, which addresses a webhook may reach, and how payloads are signed. Pure;
//! the service loads, applies and stores.

mod endpoint;
pub(crate) mod notification;
pub(crate) mod signature;
pub(crate) mod targets;
pub(crate) mod templates;

pub(crate) use endpoint::EndpointStatus;
pub(crate) use notification::{Channel, Status};
pub(crate) use templates::{Rendered, Template, Templates};
