//! Cursor pagination (`limit` 1..=100, opaque `after`, `meta.next_cursor`) and `sort` parsing
//! (`sort=price,-created_at` against an allow-list, with a default order).

use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// The query parameters every list endpoint accepts.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `meta.next_cursor` of the previous page.
    pub after: Option<String>,
    /// Comma-separated fields, `-` for descending, e.g. `-created_at,name`.
    pub sort: Option<String>,
}

/// A validated page request: `after` is the sort key of the last item already seen.
#[derive(Debug, Clone)]
pub struct PageRequest<K> {
    pub limit: u32,
    pub after: Option<K>,
    pub sort: Sort,
}

impl PageQuery {
    /// Validates limit, sort and cursor. A cursor only continues the sort it was made for.
    ///
    /// # Errors
    /// 400 `invalid_limit`, `invalid_sort` or `invalid_cursor`.
    pub fn parse<K: DeserializeOwned>(
        &self,
        sortable: &[&'static str],
        default_sort: &str,
    ) -> Result<PageRequest<K>, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}."))
                .with_details(serde_json::json!({ "limit": limit })));
        }
        let sort = Sort::parse(self.sort.as_deref().unwrap_or(default_sort), sortable)?;
        let after = self.after.as_deref().map(|cursor| decode_cursor(cursor, &sort)).transpose()?;
        Ok(PageRequest { limit, after, sort })
    }
}

impl<K> PageRequest<K> {
    /// Refuses a sort by more than one field, for lists whose cursor holds one sort key:
    /// 400 `invalid_sort` ("`things` sort by one field at a time.") naming the allowed fields.
    ///
    /// # Errors
    /// 400 `invalid_sort`.
    pub fn one_sort_field(self, things: &str, sortable: &[&'static str]) -> Result<Self, ApiError> {
        if self.sort.keys().len() > 1 {
            return Err(ApiError::bad_request("invalid_sort", format!("{things} sort by one field at a time."))
                .with_details(serde_json::json!({ "allowed": sortable })));
        }
        Ok(self)
    }
}

/// Whether a time from a cursor or a filter is one the database and RFC 3339 both hold (years
/// 1 to 9999); list endpoints refuse others as a bad cursor or query, not a 500.
#[must_use]
pub fn storable_time(at: &chrono::DateTime<chrono::Utc>) -> bool {
    (1..=9999).contains(&chrono::Datelike::year(at))
}

#[derive(Serialize, Deserialize)]
struct CursorBody<K> {
    /// The sort the cursor was issued for.
    s: String,
    /// Sort key of the last item on the page.
    k: K,
}

fn encode_cursor<K: Serialize>(key: &K, sort: &Sort) -> String {
    let body = CursorBody { s: sort.spec(), k: key };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap_or_default())
}

fn decode_cursor<K: DeserializeOwned>(cursor: &str, sort: &Sort) -> Result<K, ApiError> {
    let invalid = || ApiError::bad_request("invalid_cursor", "The cursor is not one this endpoint issued.");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let body: CursorBody<K> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if body.s != sort.spec() {
        return Err(ApiError::bad_request("invalid_cursor", "The cursor was issued for a different sort order."));
    }
    Ok(body.k)
}

/// One page of a list. Build it from `limit + 1` fetched rows: the extra row only tells
/// whether another page follows.
#[derive(Debug)]
pub struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
    limit: u32,
}

impl<T> Page<T> {
    pub fn from_overfetch<K: Serialize, R>(
        mut rows: Vec<T>,
        request: &PageRequest<R>,
        key_of: impl Fn(&T) -> K,
    ) -> Self {
        let limit = request.limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| encode_cursor(&key_of(last), &request.sort))
        } else {
            None
        };
        Self { items: rows, next_cursor, limit: request.limit }
    }

    pub fn items(&self) -> &[T] {
        &self.items
    }

    pub fn next_cursor(&self) -> Option<&str> {
        self.next_cursor.as_deref()
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor, limit: self.limit }
    }

    /// [`Page::map`] with a conversion that can fail.
    ///
    /// # Errors
    /// The first item that does not convert.
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        let items = self.items.into_iter().map(f).collect::<Result<Vec<_>, E>>()?;
        Ok(Page { items, next_cursor: self.next_cursor, limit: self.limit })
    }
}

/// The `meta` of a list response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PageMeta {
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
    pub limit: u32,
}

/// The body of a list response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PageEnvelope<T> {
    pub data: Vec<T>,
    pub meta: PageMeta,
}

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        axum::Json(PageEnvelope {
            data: self.items,
            meta: PageMeta { next_cursor: self.next_cursor, limit: self.limit },
        })
        .into_response()
    }
}

/// A parsed `sort` parameter: fields from an allow-list, each ascending or descending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    keys: Vec<SortKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    /// One of the allowed names, so safe to map to a column.
    pub field: &'static str,
    pub descending: bool,
}

impl Sort {
    /// Parses `price,-created_at`.
    ///
    /// # Errors
    /// 400 `invalid_sort` for an empty, unknown or repeated field, naming the allowed ones.
    pub fn parse(spec: &str, allowed: &[&'static str]) -> Result<Self, ApiError> {
        let invalid = |message: String| {
            ApiError::bad_request("invalid_sort", message).with_details(serde_json::json!({ "allowed": allowed }))
        };
        let mut keys: Vec<SortKey> = Vec::new();
        for part in spec.split(',').map(str::trim) {
            let (descending, name) = part.strip_prefix('-').map_or((false, part), |rest| (true, rest));
            let name = name.strip_prefix('+').unwrap_or(name);
            let Some(field) = allowed.iter().copied().find(|allowed| *allowed == name) else {
                return Err(invalid(format!("Cannot sort by `{part}`.")));
            };
            if keys.iter().any(|k| k.field == field) {
                return Err(invalid(format!("`{field}` appears twice in sort.")));
            }
            keys.push(SortKey { field, descending });
        }
        Ok(Self { keys })
    }

    pub fn keys(&self) -> &[SortKey] {
        &self.keys
    }

    /// The canonical form, e.g. `price,-created_at`.
    pub fn spec(&self) -> String {
        self.keys
            .iter()
            .map(|k| if k.descending { format!("-{}", k.field) } else { k.field.to_owned() })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SORTABLE: &[&str] = &["name", "price", "created_at"];

    #[test]
    fn sort_specs_parse_with_directions() {
        let sort = Sort::parse("price,-created_at", SORTABLE).unwrap();
        assert_eq!(
            sort.keys(),
            &[SortKey { field: "price", descending: false }, SortKey { field: "created_at", descending: true }]
        );
        assert_eq!(sort.spec(), "price,-created_at");
    }

    #[test]
    fn unknown_empty_and_repeated_sort_fields_are_refused() {
        for spec in ["colour", "", "price,", "price,-price"] {
            let error = Sort::parse(spec, SORTABLE).unwrap_err();
            assert_eq!(error.code(), "invalid_sort", "{spec}");
        }
    }

    #[test]
    fn limits_outside_one_to_a_hundred_are_refused() {
        for limit in [0, 101] {
            let query = PageQuery { limit: Some(limit), ..PageQuery::default() };
            assert_eq!(query.parse::<i64>(SORTABLE, "name").unwrap_err().code(), "invalid_limit");
        }
        let query = PageQuery::default();
        assert_eq!(query.parse::<i64>(SORTABLE, "name").unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn a_cursor_continues_only_the_sort_it_was_made_for() {
        let request = PageQuery { limit: Some(2), ..PageQuery::default() }.parse::<i64>(SORTABLE, "name").unwrap();
        let page = Page::from_overfetch(vec![1_i64, 2, 3], &request, |n| *n);
        assert_eq!(page.items(), &[1, 2]);
        let cursor = page.next_cursor().unwrap().to_owned();

        let same = PageQuery { after: Some(cursor.clone()), ..PageQuery::default() };
        assert_eq!(same.parse::<i64>(SORTABLE, "name").unwrap().after, Some(2));

        let other = PageQuery { after: Some(cursor), sort: Some("-price".into()), ..PageQuery::default() };
        assert_eq!(other.parse::<i64>(SORTABLE, "name").unwrap_err().code(), "invalid_cursor");

        let forged = PageQuery { after: Some("not-a-cursor".into()), ..PageQuery::default() };
        assert_eq!(forged.parse::<i64>(SORTABLE, "name").unwrap_err().code(), "invalid_cursor");
    }

    #[test]
    fn the_last_page_has_no_cursor() {
        let request = PageQuery::default().parse::<i64>(SORTABLE, "name").unwrap();
        let page = Page::from_overfetch(vec![1_i64, 2], &request, |n| *n);
        assert_eq!(page.next_cursor(), None);
    }
}
