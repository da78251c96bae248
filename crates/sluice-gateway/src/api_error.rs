//! One typed error for every answer the gateway gives a client in place of a model's: the
//! HTTP status, the OpenAI error `type` and, for failures of the upstream, the metrics class
//! it counts as are decided here, once, instead of being paired by hand at each call site.

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::metrics::Class;
use crate::proxy::{GatewayBody, json_response};

/// Why the gateway answers with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// The request is malformed (400).
    InvalidRequest(String),
    /// The admin API's credential is missing or wrong (401).
    Unauthenticated(String),
    /// The request may not be made from where it comes (403).
    Forbidden(String),
    /// The body is not declared as JSON (415).
    UnsupportedMediaType(String),
    /// The path, model or record named does not exist (404).
    NotFound(String),
    /// The method is not allowed on the path (405).
    MethodNotAllowed(String),
    /// The request body is larger than the limit (413).
    TooLarge(String),
    /// The request body did not arrive in time (408).
    BodyTimeout(String),
    /// Something this request needs is not there: a store (503).
    Unavailable(String),
    /// The upstream could not be reached (502).
    Unreachable(String),
    /// The upstream did not answer in time: first token or total (504).
    Timeout(String),
    /// The upstream's answer is broken: cut off, too large, not JSON (502).
    Broken(String),
    /// The upstream answered this error status with a body that is not an OpenAI error.
    Upstream {
        /// Its status, passed on.
        status: StatusCode,
        /// What it said.
        message: String,
    },
}

impl ApiError {
    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unreachable(_) | ApiError::Broken(_) => StatusCode::BAD_GATEWAY,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Upstream { status, .. } => *status,
        }
    }

    /// The OpenAI error `type`.
    pub(crate) fn openai_type(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_)
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::TooLarge(_)
            | ApiError::BodyTimeout(_) => "invalid_request_error",
            ApiError::Unauthenticated(_) => "authentication_error",
            ApiError::Forbidden(_) => "permission_error",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unreachable(_) | ApiError::Broken(_) | ApiError::Upstream { .. } => {
                "upstream_error"
            }
        }
    }

    /// What a version's metrics count it as.
    pub(crate) fn class(&self) -> Class {
        match self {
            ApiError::Unreachable(_) => Class::UpstreamConnect,
            ApiError::Timeout(_) => Class::Timeout,
            ApiError::Broken(_) => Class::ServerError,
            ApiError::Upstream { status, .. } => Class::of_status(status.as_u16()),
            ApiError::InvalidRequest(_)
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::Unauthenticated(_)
            | ApiError::Forbidden(_)
            | ApiError::TooLarge(_)
            | ApiError::BodyTimeout(_) => Class::ClientError,
            ApiError::Unavailable(_) => Class::ServerError,
        }
    }

    fn message(&self) -> &str {
        match self {
            ApiError::InvalidRequest(m)
            | ApiError::Unauthenticated(m)
            | ApiError::Forbidden(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::NotFound(m)
            | ApiError::MethodNotAllowed(m)
            | ApiError::TooLarge(m)
            | ApiError::BodyTimeout(m)
            | ApiError::Unavailable(m)
            | ApiError::Unreachable(m)
            | ApiError::Timeout(m)
            | ApiError::Broken(m)
            | ApiError::Upstream { message: m, .. } => m,
        }
    }

    /// The OpenAI error body.
    pub(crate) fn body(&self) -> Value {
        json!({"error": {"message": self.message(), "type": self.openai_type(), "param": null, "code": null}})
    }

    /// The error as the in-band event that ends a stream whose headers were already sent.
    pub(crate) fn event(&self) -> Bytes {
        Bytes::from(format!("data: {}\n\n", self.body()))
    }

    /// The error as a response.
    pub(crate) fn into_response(self) -> Response<GatewayBody> {
        json_response(self.status(), &self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_type_and_class_go_together() {
        let cases = [
            (
                ApiError::InvalidRequest("x".into()),
                400,
                "invalid_request_error",
                Class::ClientError,
            ),
            (
                ApiError::Unreachable("x".into()),
                502,
                "upstream_error",
                Class::UpstreamConnect,
            ),
            (
                ApiError::Timeout("x".into()),
                504,
                "timeout",
                Class::Timeout,
            ),
            (
                ApiError::Broken("x".into()),
                502,
                "upstream_error",
                Class::ServerError,
            ),
            (
                ApiError::Unavailable("x".into()),
                503,
                "unavailable",
                Class::ServerError,
            ),
            (
                ApiError::Upstream {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    message: "x".into(),
                },
                429,
                "upstream_error",
                Class::Rejected,
            ),
        ];
        for (error, status, kind, class) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.openai_type(), kind, "{error:?}");
            assert_eq!(error.class(), class, "{error:?}");
            assert_eq!(error.body()["error"]["type"], kind);
        }
        let event = ApiError::Timeout("late".into()).event();
        assert!(event.starts_with(b"data: {") && event.ends_with(b"\n\n"));
    }
}
