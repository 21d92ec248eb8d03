//! Success responses: `{"data": …, "meta": …}`, with 201/202 + `Location` for creations and
//! accepted work.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The success envelope. `meta` is an object, empty unless the endpoint has something to add.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Envelope<T> {
    pub data: T,
    #[schema(value_type = Object)]
    pub meta: serde_json::Value,
}

/// 200 with `{"data": T, "meta": {}}`.
#[derive(Debug)]
pub struct Data<T>(pub T);

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        axum::Json(Envelope { data: self.0, meta: serde_json::json!({}) }).into_response()
    }
}

/// 201 Created, or 202 Accepted for work that continues asynchronously, with `Location`.
#[derive(Debug)]
pub struct Created<T> {
    status: StatusCode,
    location: String,
    data: T,
}

impl<T> Created<T> {
    pub fn new(location: impl Into<String>, data: T) -> Self {
        Self { status: StatusCode::CREATED, location: location.into(), data }
    }

    pub fn accepted(location: impl Into<String>, data: T) -> Self {
        Self { status: StatusCode::ACCEPTED, location: location.into(), data }
    }
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(Envelope { data: self.data, meta: serde_json::json!({}) })).into_response();
        if let Ok(location) = HeaderValue::from_str(&self.location) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}
