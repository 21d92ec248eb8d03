//! Admin routes over accounts.

use axum::extract::State;
use platform::auth::AdminOnly;
use platform::http::pagination::PageMeta;
use platform::http::{ApiError, Data, ErrorEnvelope, Json, Page, PageQuery, Path, Query, RequestContext};
use serde::Serialize;
use users_contract::{AccountStatus, UserId};
use utoipa::ToSchema;
use uuid::Uuid;

use super::dto::{ListUsersQuery, SetRolesRequest, UserView};
use super::{UsersState, acting_admin};
use crate::domain::Status;
use crate::service::{ListFilter, ListKey, SORTABLE};

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserPage {
    data: Vec<UserView>,
    meta: PageMeta,
}

/// What every admin route about one user (`/users/{id}…`) may answer besides its own
/// outcomes: documented once, listed in each route's `responses`.
#[derive(utoipa::IntoResponses)]
#[expect(dead_code, reason = "documentation only: the answers are ApiError envelopes")]
pub(crate) enum OneUserRefusals {
    /// No or invalid token
    #[response(status = 401)]
    Unauthenticated(ErrorEnvelope),
    /// Not an admin
    #[response(status = 403)]
    NotAnAdmin(ErrorEnvelope),
    /// No such user
    #[response(status = 404)]
    NoSuchUser(ErrorEnvelope),
}

/// Lists users, newest first by default; filter by role, status and email prefix.
#[utoipa::path(get, path = "/users", tag = "users",
    params(ListUsersQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 400, description = "Bad limit, sort or cursor, or an unknown filter value", body = ErrorEnvelope),
        (status = 401, description = "No or invalid token", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
    ))]
pub(crate) async fn list_users(
    AdminOnly(admin): AdminOnly,
    State(state): State<UsersState>,
    Query(query): Query<ListUsersQuery>,
) -> Result<Page<UserView>, ApiError> {
    acting_admin(&state, &admin).await?;
    let page = PageQuery { limit: query.limit, after: query.after, sort: query.sort }
        .parse::<ListKey>(SORTABLE, "-created_at")?;
    let by_time = page.sort.keys().first().is_none_or(|key| key.field == "created_at");
    if by_time && page.after.as_ref().is_some_and(|after| after.value.parse::<chrono::DateTime<chrono::Utc>>().is_err())
    {
        return Err(ApiError::bad_request("invalid_cursor", "The cursor is not one this endpoint issued."));
    }
    let page = page.one_sort_field("Users", SORTABLE)?;
    let filter = ListFilter {
        role: query.role,
        status: query.status.map(|s| match s {
            AccountStatus::Active => Status::Active,
            AccountStatus::Deactivated => Status::Deactivated,
        }),
        email_prefix: query.email_prefix.filter(|p| !p.trim().is_empty()).map(|p| p.trim().to_owned()),
    };
    Ok(state.service.list_users(&filter, &page).await?.map(UserView::from))
}

/// One user.
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = inline(platform::http::Envelope<UserView>)),
        OneUserRefusals,
    ))]
pub(crate) async fn get_user(
    AdminOnly(admin): AdminOnly,
    State(state): State<UsersState>,
    Path(id): Path<Uuid>,
) -> Result<Data<UserView>, ApiError> {
    acting_admin(&state, &admin).await?;
    Ok(Data(state.service.user(UserId(id)).await?.into()))
}

/// Replaces a user's roles (effective at their next token refresh). The last active admin
/// cannot lose the role.
#[utoipa::path(put, path = "/users/{id}/roles", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    request_body = SetRolesRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user with the new roles", body = inline(platform::http::Envelope<UserView>)),
        OneUserRefusals,
        (status = 409, description = "`last_admin`", body = ErrorEnvelope),
        (status = 422, description = "No role, or an unknown one", body = ErrorEnvelope),
    ))]
pub(crate) async fn set_roles(
    AdminOnly(admin): AdminOnly,
    State(state): State<UsersState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
    Json(body): Json<SetRolesRequest>,
) -> Result<Data<UserView>, ApiError> {
    let admin = acting_admin(&state, &admin).await?;
    let account = state.service.set_roles(UserId(id), body.roles, admin, &ctx).await?;
    Ok(Data(account.into()))
}

/// Deactivates an account: it can no longer sign in and its sessions end.
#[utoipa::path(post, path = "/users/{id}/deactivate", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The deactivated user", body = inline(platform::http::Envelope<UserView>)),
        OneUserRefusals,
        (status = 409, description = "Already deactivated (`invalid_transition`), or `last_admin`", body = ErrorEnvelope),
    ))]
pub(crate) async fn deactivate_user(
    AdminOnly(admin): AdminOnly,
    State(state): State<UsersState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Data<UserView>, ApiError> {
    let admin = acting_admin(&state, &admin).await?;
    Ok(Data(state.service.deactivate_user(UserId(id), admin, &ctx).await?.into()))
}

/// Reopens a deactivated account.
#[utoipa::path(post, path = "/users/{id}/reactivate", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The reactivated user", body = inline(platform::http::Envelope<UserView>)),
        OneUserRefusals,
        (status = 409, description = "The account is active (`invalid_transition`)", body = ErrorEnvelope),
    ))]
pub(crate) async fn reactivate_user(
    AdminOnly(admin): AdminOnly,
    State(state): State<UsersState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Data<UserView>, ApiError> {
    let admin = acting_admin(&state, &admin).await?;
    Ok(Data(state.service.reactivate_user(UserId(id), admin, &ctx).await?.into()))
}
