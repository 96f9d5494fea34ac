//! The one API error type: maps each failure to a status and a JSON body, logs
//! internal details and never sends them to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gremium_protocol::MediaPlaneError;
use gremium_storage::StorageError;
use serde::Serialize;

/// Everything an API handler can answer with instead of success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Malformed request (syntax, bad id, bad cursor). 400.
    #[error("{0}")]
    BadRequest(String),
    /// Missing, malformed, expired or untrusted bearer token. 401.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the role or identity does not allow this. 403.
    #[error("{0}")]
    Forbidden(String),
    /// Unknown id or route. 404.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the current state. 409.
    #[error("{0}")]
    Conflict(String),
    /// A conditional request's precondition failed (`If-Match`). 412.
    #[error("{0}")]
    PreconditionFailed(String),
    /// Body larger than the configured limit. 413.
    #[error("request body too large (limit {0} bytes)")]
    PayloadTooLarge(usize),
    /// Wrong content type. 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed JSON with wrong fields, types or values. 422.
    #[error("{0}")]
    Unprocessable(String),
    /// The resource existed and was deleted for good (e.g. a shredded recording). 410.
    #[error("{0}")]
    Gone(String),
    /// A `Range` header outside the resource of this many bytes. 416.
    #[error("range not satisfiable (the resource has {0} bytes)")]
    RangeNotSatisfiable(u64),
    /// The caller holds as many of a capped resource (e.g. open event sockets) as
    /// allowed. 429.
    #[error("{0}")]
    TooManyRequests(String),
    /// A dependency (media plane, identity provider) is unavailable. 503.
    #[error("{0}")]
    Unavailable(String),
    /// No media node has room (the cluster is full). 503 with `Retry-After`.
    #[error("{message}")]
    NoCapacity {
        /// What is full.
        message: String,
        /// Seconds after which a retry may find room.
        retry_after_secs: u32,
    },
    /// Our fault. 500; the detail is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`.
    code: &'static str,
    /// Human-readable explanation.
    message: String,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            ApiError::Gone(_) => (StatusCode::GONE, "gone"),
            ApiError::RangeNotSatisfiable(_) => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::NoCapacity { .. } => (StatusCode::SERVICE_UNAVAILABLE, "no_capacity"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RangeNotSatisfiable(len) = &self {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        if let ApiError::NoCapacity {
            retry_after_secs, ..
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => ApiError::NotFound("resource"),
            StorageError::InvalidTransition(t) => {
                ApiError::Conflict(format!("not allowed while {}", t.from.as_str()))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<MediaPlaneError> for ApiError {
    fn from(e: MediaPlaneError) -> Self {
        match e {
            MediaPlaneError::Unavailable(m) => {
                ApiError::Unavailable(format!("media plane unavailable: {m}"))
            }
            MediaPlaneError::NotFound(m) => ApiError::Conflict(format!("media plane: {m}")),
            MediaPlaneError::Rejected(m) => ApiError::BadRequest(m),
            MediaPlaneError::Full(m) => ApiError::Conflict(m),
            MediaPlaneError::NoCapacity {
                message,
                retry_after_secs,
            } => ApiError::NoCapacity {
                message,
                retry_after_secs,
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_cluster_is_503_with_retry_after_and_the_message() {
        let e: ApiError = MediaPlaneError::NoCapacity {
            message: "no media node has room for 40 units".into(),
            retry_after_secs: 15,
        }
        .into();
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "15");
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "no_capacity");
        assert_eq!(
            body["error"]["message"],
            "no media node has room for 40 units"
        );
    }
}
