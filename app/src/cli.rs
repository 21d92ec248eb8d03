//! Subcommands besides `serve`.

use std::sync::Arc;

use platform::db::{ModuleSchema, migrate};

use crate::config::{Config, MigrateAction};
use crate::database::Backing;
use crate::modules;

/// `bulkhead migrate up|down|status [--module m]`.
///
/// # Errors
/// Unknown module, unreachable database, or a failing migration.
pub async fn migrate(config: &Config, action: MigrateAction) -> anyhow::Result<()> {
    let hosted = modules::hosted(&config.modules)?;
    let schemas: Arc<[ModuleSchema]> = hosted.iter().map(|d| d.schema).collect();
    let selected = |module: Option<&str>| -> anyhow::Result<Vec<ModuleSchema>> {
        match module {
            None => Ok(schemas.to_vec()),
            Some(name) => schemas
                .iter()
                .find(|s| s.name == name)
                .map(|s| vec![*s])
                .ok_or_else(|| anyhow::anyhow!("no module `{name}` here (hosted: {})", names(&schemas))),
        }
    };
    let targets = match &action {
        MigrateAction::Up { module } | MigrateAction::Status { module } => selected(module.as_deref())?,
        MigrateAction::Down { module, .. } => selected(Some(module))?,
    };
    let backing = Backing::connect(config, &schemas).await?;
    let outcome = run(&backing, &targets, action).await;
    backing.close().await?;
    outcome
}

async fn run(backing: &Backing, targets: &[ModuleSchema], action: MigrateAction) -> anyhow::Result<()> {
    match action {
        MigrateAction::Up { .. } => {
            backing.databases.migrate(targets).await?;
            for schema in targets {
                println!("{}: up to date", schema.name);
            }
        }
        MigrateAction::Down { steps, .. } => {
            for schema in targets {
                let reverted = migrate::down(backing.databases.pool(schema.name)?, schema, steps).await?;
                if reverted.is_empty() {
                    println!("{}: nothing to revert", schema.name);
                }
                for migration in reverted {
                    println!(
                        "{}: reverted {} {:04} {}",
                        migration.module, migration.stream, migration.version, migration.description
                    );
                }
            }
        }
        MigrateAction::Status { .. } => {
            println!("{:<16} {:<9} {:>7}  {:<40} APPLIED", "MODULE", "STREAM", "VERSION", "NAME");
            for schema in targets {
                for m in migrate::status(backing.databases.pool(schema.name)?, schema).await? {
                    let applied = m.applied_at.map_or_else(|| "pending".to_owned(), |t| t.to_rfc3339());
                    println!(
                        "{:<16} {:<9} {:>7}  {:<40} {applied}",
                        m.module,
                        m.stream,
                        format!("{:04}", m.version),
                        m.description
                    );
                }
            }
            if targets.is_empty() {
                println!("(no modules compiled in or selected)");
            }
        }
    }
    Ok(())
}

fn names(schemas: &[ModuleSchema]) -> String {
    if schemas.is_empty() { "none".to_owned() } else { schemas.iter().map(|s| s.name).collect::<Vec<_>>().join(", ") }
}
