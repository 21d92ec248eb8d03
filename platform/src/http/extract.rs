//! Extractors whose rejections are [`ApiError`]s, so malformed JSON, a wrong content type, an
//! oversized body, unknown fields, bad query strings and invalid input all answer with the
//! envelope instead of axum's plain-text defaults.
//!
//! They also refuse text PostgreSQL cannot store: the NUL character (U+0000), which `text`
//! and `jsonb` reject. Checked here, at the edge, for every body, query string and path
//! parameter, so no handler can forget it and no such value reaches a query (where it would
//! be a 500, or worse, a port failure reported as an outage).

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use super::error::{ApiError, FieldError};

/// `axum::Json` with envelope rejections. Use `#[serde(deny_unknown_fields)]` on request
/// DTOs so a misspelt field is an error rather than silently ignored. A string (value or
/// key) holding U+0000 is a 422 naming its field.
///
/// Request bodies are JSON objects: anything else at the top level is a 422. serde would
/// otherwise fill a struct from an array, field by field in declaration order, so
/// `[null, null]` would pass for `{}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(request.headers()) {
            return Err(ApiError::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| bytes_rejection(&rejection))?;
        if let Some(field) = nul_in_json(&bytes) {
            return Err(ApiError::validation(vec![nul_field_error(field)]));
        }
        if is_json_but_not_an_object(&bytes) {
            let field = FieldError {
                field: ".".to_owned(),
                code: "invalid_type".to_owned(),
                message: "the body must be a JSON object".to_owned(),
            };
            return Err(ApiError::unprocessable("invalid_body", "The JSON body does not match the expected shape.")
                .with_details([field]));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

/// `application/json` or any `application/*+json`, as axum's own `Json` accepts.
fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || essence.strip_prefix("application/").is_some_and(|sub| sub.ends_with("+json"))
}

fn bytes_rejection(rejection: &BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)
    } else {
        ApiError::bad_request("unreadable_body", "The request body could not be read.")
            .with_source(anyhow::anyhow!(rejection.body_text()))
    }
}

/// Whether the body is valid JSON whose top level is not an object (an array, a string, a
/// number…). Invalid JSON is left to the deserializer, which says what is wrong with it.
fn is_json_but_not_an_object(bytes: &[u8]) -> bool {
    let starts_an_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    !starts_an_object && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// The NUL character: valid in JSON and Rust strings, refused by PostgreSQL's `text` and
/// `jsonb`.
const NUL: char = '\0';

fn nul_field_error(field: String) -> FieldError {
    FieldError {
        field,
        code: "invalid_character".to_owned(),
        message: "must not contain the NUL character (U+0000)".to_owned(),
    }
}

/// The path (`lines[0].sku`) of the first string of a JSON body that holds U+0000, if any.
/// A raw NUL byte is not valid JSON at all, so only the `\u0000` escape can put one in a
/// string; the cheap scan of the bytes comes first, the parse only when it finds one.
fn nul_in_json(bytes: &[u8]) -> Option<String> {
    if !has_nul_escape(bytes) {
        return None;
    }
    // Unparseable bodies are left to the deserializer, which says what is wrong with them.
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    nul_path(&value, String::new())
}

/// Whether the JSON text holds a `\u0000` escape (escaped backslashes skipped, so the text
/// `\\u0000`, a backslash followed by `u0000`, is not one).
fn has_nul_escape(bytes: &[u8]) -> bool {
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\' {
            if bytes.get(index + 1) == Some(&b'u') && bytes.get(index + 2..index + 6) == Some(b"0000") {
                return true;
            }
            index += 2;
        } else {
            index += 1;
        }
    }
    false
}

fn nul_path(value: &serde_json::Value, path: String) -> Option<String> {
    let here = || if path.is_empty() { ".".to_owned() } else { path.clone() };
    match value {
        serde_json::Value::String(text) => text.contains(NUL).then(here),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(index, item)| nul_path(item, format!("{path}[{index}]")))
        }
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let inner = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            if key.contains(NUL) { Some(here()) } else { nul_path(item, inner) }
        }),
        _ => None,
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => {
            let field = shape_error(&data_error_reason(&error.body_text()));
            ApiError::unprocessable("invalid_body", "The JSON body does not match the expected shape.")
                .with_details([field])
        }
        JsonRejection::JsonSyntaxError(error) => {
            ApiError::bad_request("malformed_json", "The request body is not valid JSON.")
                .with_details(serde_json::json!({ "reason": data_error_reason(&error.body_text()) }))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE),
        other => ApiError::bad_request("unreadable_body", "The request body could not be read.")
            .with_source(anyhow::anyhow!(other.body_text())),
    }
}

/// axum prefixes serde's message with its own sentence; keep only serde's part, which names
/// the field and what was wrong with it.
fn data_error_reason(text: &str) -> String {
    text.split_once(": ").map_or(text, |(_, reason)| reason).to_owned()
}

/// Turns serde's `lines[0].quantity: invalid type: string "x", expected u32 at line 1 column 9`
/// into a field error like the validator's.
fn shape_error(reason: &str) -> FieldError {
    let reason = reason.rsplit_once(" at line ").map_or(reason, |(message, _)| message);
    let (field, message) = match reason.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => (path, message),
        _ => (".", reason),
    };
    let code = if message.starts_with("unknown field") {
        "unknown_field"
    } else if message.starts_with("missing field") {
        "missing_field"
    } else {
        "invalid_type"
    };
    FieldError { field: field.to_owned(), code: code.to_owned(), message: message.to_owned() }
}

/// A JSON body that must also pass its `validator` rules; failures are 422 with one entry per
/// field (`lines[0].quantity`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Validate> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        value.validate().map_err(|errors| ApiError::validation(field_errors(&errors)))?;
        Ok(Self(value))
    }
}

/// Flattens validator's nested errors into `path → failure` entries, sorted by path.
pub fn field_errors(errors: &ValidationErrors) -> Vec<FieldError> {
    let mut out = Vec::new();
    collect(errors, "", &mut out);
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

fn collect(errors: &ValidationErrors, prefix: &str, out: &mut Vec<FieldError>) {
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") };
        match kind {
            ValidationErrorsKind::Field(failures) => out.extend(failures.iter().map(|failure| FieldError {
                field: path.clone(),
                code: failure.code.to_string(),
                message: failure.message.as_ref().map_or_else(|| default_message(failure), ToString::to_string),
            })),
            ValidationErrorsKind::Struct(inner) => collect(inner, &path, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    collect(inner, &format!("{path}[{index}]"), out);
                }
            }
        }
    }
}

fn default_message(failure: &validator::ValidationError) -> String {
    let param = |name: &str| failure.params.get(name).map(ToString::to_string);
    match failure.code.as_ref() {
        "length" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max} characters long"),
            (Some(min), None) => format!("must be at least {min} characters long"),
            (None, Some(max)) => format!("must be at most {max} characters long"),
            _ => "has the wrong length".to_owned(),
        },
        "range" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max}"),
            (Some(min), None) => format!("must be at least {min}"),
            (None, Some(max)) => format!("must be at most {max}"),
            _ => "is out of range".to_owned(),
        },
        "email" => "must be an email address".to_owned(),
        "url" => "must be a URL".to_owned(),
        "required" => "is required".to_owned(),
        other => format!("is invalid ({other})"),
    }
}

/// `axum::extract::Query` with an envelope rejection (400 `invalid_query`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if let Some((name, _)) = url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, value)| name.contains(NUL) || value.contains(NUL))
        {
            return Err(ApiError::bad_request("invalid_query", "The query string is not valid.").with_details(
                serde_json::json!({ "parameter": name, "reason": "must not contain the NUL character (U+0000)" }),
            ));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", "The query string is not valid.")
        .with_details(serde_json::json!({ "reason": data_error_reason(&rejection.body_text()) }))
}

/// `axum::extract::Path` with an envelope rejection: a path segment that does not parse
/// (e.g. a malformed id), or that holds U+0000, names nothing that exists, so it is a 404.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await
            && let Some((name, _)) = raw.iter().find(|(_, value)| value.contains(NUL))
        {
            return Err(ApiError::not_found("The resource").with_details(
                serde_json::json!({ "parameter": name, "reason": "must not contain the NUL character (U+0000)" }),
            ));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

fn path_rejection(rejection: &PathRejection) -> ApiError {
    match rejection {
        PathRejection::FailedToDeserializePathParams(_) => {
            ApiError::not_found("The resource").with_details(serde_json::json!({ "reason": rejection.body_text() }))
        }
        other => ApiError::internal(anyhow::anyhow!(other.body_text())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_escape_is_found_with_the_path_of_its_field() {
        let body = br#"{"lines": [{"sku": "MUG"}, {"sku": "A\u0000B"}], "note": "fine"}"#;
        assert_eq!(nul_in_json(body).as_deref(), Some("lines[1].sku"));
        assert_eq!(nul_in_json(br#"{"a\u0000": 1}"#).as_deref(), Some("."));
        assert_eq!(nul_in_json(br#""\u0000""#).as_deref(), Some("."));
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_plain_text() {
        assert!(!has_nul_escape(br#"{"path": "C:\\u0000"}"#));
        assert_eq!(nul_in_json(br#"{"path": "C:\\u0000"}"#), None);
        assert!(has_nul_escape(br#"{"path": "C:\\\u0000"}"#));
        assert_eq!(nul_in_json(br#"{"ok": "\u0001"}"#), None);
    }

    #[test]
    fn only_an_object_is_a_request_body() {
        for body in [&b"[null, null]"[..], b"\"text\"", b"42", b"null", b" [] "] {
            assert!(is_json_but_not_an_object(body), "{}", String::from_utf8_lossy(body));
        }
        for body in [&b"{}"[..], b" \n {\"a\": 1}", b"[unclosed", b""] {
            assert!(!is_json_but_not_an_object(body), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn json_content_types_are_recognised_like_axum_does() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            has_json_content_type(&headers)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!has_json_content_type(&HeaderMap::new()));
    }
}
