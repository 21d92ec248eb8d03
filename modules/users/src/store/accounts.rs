//! Accounts.

use anyhow::Context;
use chrono::{DateTime, Utc};
use platform::auth::Role;
use platform::http::{PageRequest, Sort};
use sqlx::types::Json;
use sqlx::{PgConnection, QueryBuilder};
use users_contract::{Preferences, UserId};
use uuid::Uuid;

use crate::domain::{Account, Status, parse_role, role_name};

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    email: String,
    display_name: String,
    password_hash: String,
    roles: Vec<String>,
    status: String,
    email_verified_at: Option<DateTime<Utc>>,
    preferences: Json<Preferences>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Account {
    type Error = anyhow::Error;

    fn try_from(row: Row) -> anyhow::Result<Self> {
        Ok(Self {
            id: UserId(row.id),
            roles: row.roles.iter().filter_map(|r| parse_role(r)).collect(),
            status: Status::parse(&row.status).with_context(|| format!("unknown status {:?}", row.status))?,
            email: row.email,
            display_name: row.display_name,
            password_hash: row.password_hash,
            email_verified_at: row.email_verified_at,
            preferences: row.preferences.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

pub(crate) fn role_names(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|r| role_name(*r).to_owned()).collect()
}

/// Inserts a new account.
///
/// # Errors
/// `users_email_key` unique violation when the email is taken (see [`super::is_unique_violation`]).
pub(crate) async fn insert(db: &mut PgConnection, account: &Account) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, email, display_name, password_hash, roles, status, email_verified_at, preferences,
                            password_changed_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9)",
    )
    .bind(account.id.0)
    .bind(&account.email)
    .bind(&account.display_name)
    .bind(&account.password_hash)
    .bind(role_names(&account.roles))
    .bind(account.status.as_str())
    .bind(account.email_verified_at)
    .bind(Json(account.preferences))
    .bind(account.created_at)
    .execute(db)
    .await?;
    Ok(())
}

/// `SELECT` of every account column, followed by the given clause.
macro_rules! select_accounts {
    ($rest:literal) => {
        concat!(
            "SELECT id, email, display_name, password_hash, roles, status, email_verified_at, preferences, created_at, updated_at FROM users ",
            $rest
        )
    };
}

pub(crate) async fn find(db: &mut PgConnection, id: UserId) -> anyhow::Result<Option<Account>> {
    let row: Option<Row> = sqlx::query_as(select_accounts!("WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(db)
        .await
        .context("reading an account")?;
    row.map(Account::try_from).transpose()
}

/// The account, locked for update until the transaction ends.
pub(crate) async fn find_for_update(db: &mut PgConnection, id: UserId) -> anyhow::Result<Option<Account>> {
    let row: Option<Row> = sqlx::query_as(select_accounts!("WHERE id = $1 FOR UPDATE"))
        .bind(id.0)
        .fetch_optional(db)
        .await
        .context("locking an account")?;
    row.map(Account::try_from).transpose()
}

/// Active accounts with the admin role, oldest first.
pub(crate) async fn active_admins(db: &mut PgConnection) -> anyhow::Result<Vec<Account>> {
    let rows: Vec<Row> =
        sqlx::query_as(select_accounts!("WHERE 'admin' = ANY (roles) AND status = 'active' ORDER BY created_at, id"))
            .fetch_all(db)
            .await
            .context("reading the admins")?;
    rows.into_iter().map(Account::try_from).collect()
}

pub(crate) async fn find_by_email(db: &mut PgConnection, email: &str) -> anyhow::Result<Option<Account>> {
    let row: Option<Row> = sqlx::query_as(select_accounts!("WHERE email = $1"))
        .bind(email)
        .fetch_optional(db)
        .await
        .context("reading an account by email")?;
    row.map(Account::try_from).transpose()
}

pub(crate) async fn set_password(
    db: &mut PgConnection,
    id: UserId,
    hash: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = $3, updated_at = $3 WHERE id = $1")
        .bind(id.0)
        .bind(hash)
        .bind(at)
        .execute(db)
        .await
        .context("changing a password")?;
    Ok(())
}

pub(crate) async fn set_status(
    db: &mut PgConnection,
    id: UserId,
    status: Status,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE users SET status = $2, updated_at = $3,
                deactivated_at = CASE WHEN $2 = 'deactivated' THEN $3 END
          WHERE id = $1",
    )
    .bind(id.0)
    .bind(status.as_str())
    .bind(at)
    .execute(db)
    .await
    .context("changing an account's status")?;
    Ok(())
}

pub(crate) async fn mark_verified(db: &mut PgConnection, id: UserId, at: DateTime<Utc>) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE users SET email_verified_at = $2, updated_at = $2 WHERE id = $1 AND email_verified_at IS NULL",
    )
    .bind(id.0)
    .bind(at)
    .execute(db)
    .await
    .context("marking an email verified")?;
    Ok(updated.rows_affected() == 1)
}

pub(crate) async fn update_profile(
    db: &mut PgConnection,
    id: UserId,
    display_name: &str,
    preferences: &Preferences,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE users SET display_name = $2, preferences = $3, updated_at = $4 WHERE id = $1")
        .bind(id.0)
        .bind(display_name)
        .bind(Json(preferences))
        .bind(at)
        .execute(db)
        .await
        .context("updating a profile")?;
    Ok(())
}

pub(crate) async fn set_roles(
    db: &mut PgConnection,
    id: UserId,
    roles: &[Role],
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE users SET roles = $2, updated_at = $3 WHERE id = $1")
        .bind(id.0)
        .bind(role_names(roles))
        .bind(at)
        .execute(db)
        .await
        .context("changing roles")?;
    Ok(())
}

/// Active admins other than `except`, counted under a lock that serialises admin changes,
/// so two concurrent demotions cannot both see "one other admin left".
pub(crate) async fn other_active_admins(db: &mut PgConnection, except: UserId) -> anyhow::Result<i64> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('users.admin_set'))").execute(&mut *db).await?;
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE 'admin' = ANY (roles) AND status = 'active' AND id <> $1")
            .bind(except.0)
            .fetch_one(db)
            .await
            .context("counting admins")?;
    Ok(count)
}

/// Whether any admin exists, under the same lock (first-start bootstrap).
pub(crate) async fn any_admin(db: &mut PgConnection) -> anyhow::Result<bool> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('users.admin_set'))").execute(&mut *db).await?;
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE 'admin' = ANY (roles))").fetch_one(db).await?)
}

/// Filters of the admin listing.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter {
    pub(crate) role: Option<Role>,
    pub(crate) status: Option<Status>,
    pub(crate) email_prefix: Option<String>,
}

/// The sort key of a listed account: the sort field's value and the id as tie-breaker.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ListKey {
    pub(crate) value: String,
    pub(crate) id: Uuid,
}

pub(crate) const SORTABLE: &[&str] = &["created_at", "email"];

/// The key an account has under `sort` (first field only; the id breaks ties).
pub(crate) fn list_key(account: &Account, sort: &Sort) -> ListKey {
    let value = match sort.keys().first().map(|k| k.field) {
        Some("email") => account.email.clone(),
        _ => account.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    };
    ListKey { value, id: account.id.0 }
}

/// One page of accounts (fetches `limit + 1` to know whether another follows).
pub(crate) async fn list(
    db: &mut PgConnection,
    filter: &ListFilter,
    page: &PageRequest<ListKey>,
) -> anyhow::Result<Vec<Account>> {
    let key = page.sort.keys().first().copied();
    let (column, descending) = match key {
        Some(k) if k.field == "email" => ("email", k.descending),
        Some(k) => ("created_at", k.descending),
        None => ("created_at", true),
    };
    let mut query = QueryBuilder::new(select_accounts!("WHERE true"));
    if let Some(role) = filter.role {
        query.push(" AND ").push_bind(role_name(role)).push(" = ANY (roles)");
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(prefix) = &filter.email_prefix {
        let escaped = prefix.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        query.push(" AND email LIKE ").push_bind(format!("{escaped}%"));
    }
    if let Some(after) = &page.after {
        let op = if descending { "<" } else { ">" };
        query.push(format!(" AND ({column}, id) {op} ("));
        if column == "created_at" {
            let at: DateTime<Utc> = after.value.parse().context("cursor time")?;
            query.push_bind(at);
        } else {
            query.push_bind(after.value.clone());
        }
        query.push(", ").push_bind(after.id).push(")");
    }
    let direction = if descending { "DESC" } else { "ASC" };
    query.push(format!(" ORDER BY {column} {direction}, id {direction} LIMIT "));
    query.push_bind(i64::from(page.limit) + 1);
    let rows: Vec<Row> = query.build_query_as().fetch_all(db).await.context("listing accounts")?;
    rows.into_iter().map(Account::try_from).collect()
}
