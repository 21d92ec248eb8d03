//! The modules compiled into this binary, one `app` feature each (DESIGN §6). A module is
//! added here as a descriptor (its schema, known before it has a pool) and a constructor
//! (its instance, built from its pool and the ports it needs).

use platform::ModuleDescriptor;

/// Every module compiled in, in dependency order (a module's ports come from earlier ones).
pub fn compiled() -> Vec<ModuleDescriptor> {
    Vec::new()
}

/// The compiled modules this process hosts, as selected by `BULKHEAD_MODULES`.
///
/// # Errors
/// A name in `BULKHEAD_MODULES` that is not compiled in.
pub fn hosted(selection: &[String]) -> anyhow::Result<Vec<ModuleDescriptor>> {
    let compiled = compiled();
    if selection.is_empty() {
        return Ok(compiled);
    }
    let names: Vec<&str> = compiled.iter().map(|d| d.schema.name).collect();
    for wanted in selection {
        if !names.contains(&wanted.as_str()) {
            anyhow::bail!(
                "BULKHEAD_MODULES names `{wanted}`, which is not compiled into this binary (compiled: {})",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            );
        }
    }
    Ok(compiled.into_iter().filter(|d| selection.iter().any(|s| s == d.schema.name)).collect())
}
