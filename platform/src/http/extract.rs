//! Extractors whose rejections are [`ApiError`]s, so malformed JSON, a wrong content type, an
//! oversized body, unknown fields, bad query strings and invalid input all answer with the
//! envelope instead of axum's plain-text defaults.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use super::error::{ApiError, FieldError};

/// `axum::Json` with envelope rejections. Use `#[serde(deny_unknown_fields)]` on request
/// DTOs so a misspelt field is an error rather than silently ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
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
/// (e.g. a malformed id) names nothing that exists, so it is a 404.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
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
