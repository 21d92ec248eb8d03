//! The one interface `app` composes (DESIGN §2): what a module is called, what it persists,
//! the routes it serves and what it declares about its seams.

use utoipa_axum::router::OpenApiRouter;

use crate::bus::Subscription;
use crate::bus::event::EventRef;
use crate::db::ModuleSchema;
use crate::jobs::JobQueue;

/// A module as the composition root sees it. Built by `app` from the module's own pool and
/// the ports it needs; it never reaches for globals.
pub trait Module: Send + Sync + 'static {
    /// The module's name: also its schema, its role's suffix and its feature name.
    fn name(&self) -> &'static str;

    /// Routes mounted under `/api/v1`, each documented with `#[utoipa::path]`.
    fn public_routes(&self) -> OpenApiRouter;

    /// Routes served at the root, outside the API and its rate limit (e.g. `/.well-known/…`),
    /// documented like the others.
    fn root_routes(&self) -> OpenApiRouter {
        OpenApiRouter::new()
    }

    /// The server side of the module's ports, mounted under `/internal/<name>/v1` behind
    /// service tokens (only the modules in [`Manifest::ports_served`] get in), called by
    /// processes that do not host this module. Documented like the public routes, in the
    /// internal OpenAPI document.
    fn internal_routes(&self) -> OpenApiRouter {
        OpenApiRouter::new()
    }

    /// The module's durable subscriptions to other modules' events; their cursors live in
    /// the module's schema.
    fn subscriptions(&self) -> Vec<Subscription> {
        Vec::new()
    }

    /// The module's background work: its job queues and their handlers. Jobs are enqueued
    /// with `platform::jobs::enqueue` in the module's own transactions; the app runs these
    /// queues in the jobs runtime of every process that hosts the module.
    fn jobs(&self) -> Vec<JobQueue> {
        Vec::new()
    }

    /// What the module uses and offers, for verification and the generated module map.
    fn manifest(&self) -> Manifest;
}

/// A module's declared seams.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Manifest {
    /// Port traits of other modules this module calls (e.g. `InventoryApi`).
    pub ports_used: Vec<&'static str>,
    /// Port traits this module serves, each with the modules allowed to call it from another
    /// process (its contract's `CALLERS`).
    pub ports_served: Vec<ServedPort>,
    /// Event types (with their payload versions) this module appends to its outbox.
    pub events_published: Vec<EventRef>,
    /// Event types of other modules this module handles, at the versions its contracts speak.
    pub events_subscribed: Vec<EventRef>,
    /// The queues of the module's background jobs (`<module>.<job>`), as [`Module::jobs`]
    /// runs them.
    pub jobs: Vec<&'static str>,
}

/// A port a module serves, and who may call it.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ServedPort {
    pub port: &'static str,
    pub callers: &'static [&'static str],
}

/// What `app` needs to know about a module before it can build one: its schema (to provision
/// and migrate) and its manifest (for verification and the module map). Lives as a `const`
/// in the module's crate.
#[derive(Debug, Clone, Copy)]
pub struct ModuleDescriptor {
    pub schema: ModuleSchema,
    pub manifest: fn() -> Manifest,
}
