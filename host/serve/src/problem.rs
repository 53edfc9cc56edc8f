//! RFC 9457 problem details: every error the service answers is `application/problem+json` with
//! a stable `type` per cause (`https://qpf.dev/problems/<slug>`), a title, the status and a detail
//! whose text is escaped for a terminal (it may quote what a client or a plugin sent).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One problem.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable slug of the cause (`unauthorized`, `not-found`, ...).
    pub slug: &'static str,
    /// A short, fixed summary of the cause.
    pub title: &'static str,
    /// What happened in this case.
    pub detail: String,
    /// Further members (e.g. a plugin failure's `kind` and `diagnostics`).
    pub extra: Vec<(String, serde_json::Value)>,
    /// `Retry-After`, in seconds, for 429.
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with no extra members.
    pub fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            slug,
            title,
            detail: qpf_core::text::escape_block(&detail.into()).into_owned(),
            extra: Vec::new(),
            retry_after: None,
        }
    }

    /// 401: no token, or one that acts as no tenant.
    pub fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or unknown bearer token",
            "send `Authorization: Bearer <token>` with a token of your tenant",
        )
    }

    /// 404: also what a resource of another tenant answers.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "No such resource", detail)
    }

    /// 400: a request body or parameter the service does not accept.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", "The request is not valid", detail)
    }

    /// 413: a body over the tenant's `max-request-bytes`, or an upload over `max-stored-bytes`.
    pub fn too_large(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "The request is too large", detail)
    }

    /// 500: a fault of the service (never a plugin's or a client's).
    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "The service failed", detail)
    }

    /// 429: a quota is spent; retry after `retry_after` (at least one second).
    pub fn over_quota(quota: &str, retry_after: std::time::Duration) -> Problem {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "over-quota",
            "Over quota",
            format!("the tenant's `{quota}` is spent"),
        );
        p.retry_after = Some(retry_after.as_secs().max(1));
        p
    }

    /// 415: a body of another media type than `expected`.
    pub fn media_type(expected: &str, what: &str) -> Problem {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("send {what} as `Content-Type: {expected}`"),
        )
    }

    /// Adds a member.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Problem {
        self.extra.push((key.to_owned(), value));
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("type".into(), format!("https://qpf.dev/problems/{}", self.slug).into());
        body.insert("title".into(), self.title.into());
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.into());
        body.extend(self.extra);
        let bytes = serde_json::to_vec(&serde_json::Value::Object(body)).unwrap_or_default();
        let mut response = (self.status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        response
    }
}
