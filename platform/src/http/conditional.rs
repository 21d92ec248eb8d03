//! Conditional requests (RFC 9110 §13): entity tags out, `If-None-Match` and `If-Match` in.
//! A resource decides what its tags mean (a version, a view of it); these helpers only read
//! and write the headers, the same way for every module.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use super::error::ApiError;

/// A strong entity tag, quoted: `"7"` for `opaque` `7`.
#[must_use]
pub fn strong(opaque: &str) -> String {
    format!("\"{opaque}\"")
}

/// An `ETag` header value.
///
/// # Errors
/// A tag that is not a valid header value (a bug of the caller): 500.
pub fn etag_value(etag: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(etag).map_err(ApiError::internal)
}

/// The entity tags of a conditional header, or `None` without one.
fn tags(headers: &HeaderMap, name: HeaderName) -> Option<Vec<String>> {
    let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!values.is_empty()).then(|| {
        values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
    })
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for GET), or `*`.
#[must_use]
pub fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    tags(headers, header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.iter().any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag))
}

/// What `If-Match` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current representation.
    Any,
    /// The opaque parts of the strong tags sent (weak tags never match, so they are left out;
    /// empty when every tag was weak or malformed).
    Opaque(Vec<String>),
}

/// `If-Match`, or `None` without one.
#[must_use]
pub fn if_match(headers: &HeaderMap) -> Option<IfMatch> {
    let tags = tags(headers, header::IF_MATCH)?;
    if tags.iter().any(|tag| tag == "*") {
        return Some(IfMatch::Any);
    }
    let opaque = tags.iter().filter_map(|tag| tag.strip_prefix('"')?.strip_suffix('"')).map(str::to_owned).collect();
    Some(IfMatch::Opaque(opaque))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn with(name: HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_stars() {
        assert!(none_match(&with(header::IF_NONE_MATCH, "\"7\""), "\"7\""));
        assert!(none_match(&with(header::IF_NONE_MATCH, "\"6\", W/\"7\""), "\"7\""));
        assert!(none_match(&with(header::IF_NONE_MATCH, "*"), "\"7\""));
        assert!(!none_match(&with(header::IF_NONE_MATCH, "\"7-public\""), "\"7\""));
        assert!(!none_match(&HeaderMap::new(), "\"7\""));
    }

    #[test]
    fn if_match_keeps_only_strong_tags() {
        assert_eq!(if_match(&HeaderMap::new()), None);
        assert_eq!(if_match(&with(header::IF_MATCH, "*")), Some(IfMatch::Any));
        let both = if_match(&with(header::IF_MATCH, "\"3\", \"4-public\""));
        assert_eq!(both, Some(IfMatch::Opaque(vec!["3".to_owned(), "4-public".to_owned()])));
        assert_eq!(if_match(&with(header::IF_MATCH, "W/\"3\", x")), Some(IfMatch::Opaque(vec![])));
    }
}
