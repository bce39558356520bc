//! The crate's error type, and the one place where a failed request becomes an HTTP response.
//!
//! Handlers return [`ApiError`]; [`ApiError::into_response`] is the only code that chooses a
//! status for a failure and the only code that writes an error body. Internal failures are
//! logged with their details and answered with a bare 500: callers never see paths, record
//! contents or anything about objects they may not see.

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use fwrepo_entitle::Refusal;
use http::{HeaderValue, StatusCode, header};

use crate::body::Body;
use crate::reply::Reply;

/// Errors of starting and running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{origin}: invalid server config: {reason}")]
    Config { origin: String, reason: String },
    #[error("cannot listen on {addr}: the address is already in use (is another fwrepo serve or web server running?)")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log {path}: {source}")]
    Audit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata directory {path}: {source}")]
    Metadata {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS file {path}: {source}")]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS file {path}: not valid PEM: {reason}")]
    TlsPem { path: PathBuf, reason: String },
    #[error("TLS certificate {path}: no certificate found (expected a PEM `BEGIN CERTIFICATE` block)")]
    TlsNoCertificate { path: PathBuf },
    #[error("TLS key {path}: no private key found (expected a PEM PKCS#8, RSA or EC private key)")]
    TlsNoKey { path: PathBuf },
    #[error(
        "TLS key {path}: group or others may access it (mode {mode:03o}); refusing to use it, run `chmod 600 {path}`"
    )]
    TlsKeyPermissions { path: PathBuf, mode: u32 },
    #[error("TLS key {key} does not fit certificate {cert}: {reason}")]
    TlsKeyMismatch { cert: PathBuf, key: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] fwrepo_store::Error),
    /// Rebuilding the token verifier after catching up failed.
    #[error("refresh: {reason}")]
    Refresh { reason: String },
}

/// Why a request failed, as far as the caller may know.
#[derive(Debug)]
pub enum ApiError {
    /// No usable credentials: 401 with a `WWW-Authenticate` challenge.
    Unauthenticated,
    /// Valid credentials that do not cover this object (or an object the caller may not learn
    /// about): 403.
    Forbidden,
    /// Token issuance refused; the reason is safe to show.
    Refused(Refusal),
    /// A credential this server does not accept on its own (`[tokens] require`): 403.
    CredentialNotAccepted(&'static str),
    /// Too many token requests: 429 with `Retry-After` in seconds.
    TooManyRequests(u64),
    /// The request body did not arrive within the body read timeout: 408, connection closed.
    RequestTimeout,
    /// `If-Match` names no current representation: 412.
    PreconditionFailed,
    NotFound,
    /// A mirror asked for firmware it does not carry: 404 saying so, so the client tries the
    /// next mirror or the origin.
    NotCarried,
    /// A mirror asked for a token: 404 naming the origin that issues them.
    MirrorNoTokens(String),
    MethodNotAllowed(&'static str),
    BadRequest(String),
    PayloadTooLarge,
    /// A delta request over its bounds (entries, target bytes, body): 413 `too_large`, so
    /// the client splits its batch.
    TooLarge(String),
    /// Entry `n` of a delta request names a chunk that is not in the blob: 400.
    TargetNotInBlob(usize),
    UnsupportedMediaType,
    /// 416 for a representation of this length.
    RangeNotSatisfiable(u64),
    /// 503 with `Retry-After`: the server cannot decide safely now (stale revocation data).
    Unavailable {
        retry_after_s: u64,
    },
    /// Something broke on our side; the text is logged, never sent.
    Internal(String),
}

impl ApiError {
    pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::Refused(_) | ApiError::CredentialNotAccepted(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::NotFound | ApiError::NotCarried | ApiError::MirrorNoTokens(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge | ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TargetNotInBlob(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response for this failure. `head` drops the body but keeps its length.
    pub(crate) fn into_response(self, head: bool) -> Reply {
        let status = self.status();
        let (code, detail): (&str, Option<String>) = match &self {
            ApiError::Unauthenticated => ("invalid_token", None),
            ApiError::Forbidden => ("forbidden", None),
            ApiError::Refused(r) => ("refused", Some(r.as_str().to_owned())),
            ApiError::CredentialNotAccepted(why) => ("refused", Some((*why).to_owned())),
            ApiError::TooManyRequests(_) => ("rate_limited", None),
            ApiError::RequestTimeout => ("request_timeout", Some("request body not received in time".into())),
            ApiError::PreconditionFailed => ("precondition_failed", None),
            ApiError::NotFound => ("not_found", None),
            ApiError::NotCarried => (
                "not_carried",
                Some("this mirror does not carry this firmware; try another mirror or the origin".into()),
            ),
            ApiError::MirrorNoTokens(origin) => (
                "mirror_no_tokens",
                Some(format!("this server is a mirror and issues no tokens; request them from {origin}/v1/tokens")),
            ),
            ApiError::MethodNotAllowed(_) => ("method_not_allowed", None),
            ApiError::BadRequest(reason) => ("bad_request", Some(reason.clone())),
            ApiError::PayloadTooLarge => ("payload_too_large", None),
            ApiError::TooLarge(what) => ("too_large", Some(what.clone())),
            ApiError::TargetNotInBlob(n) => {
                ("target_not_in_blob", Some(format!("entry {n} names a chunk that is not in this blob")))
            }
            ApiError::UnsupportedMediaType => ("unsupported_media_type", Some("expected application/json".into())),
            ApiError::RangeNotSatisfiable(_) => ("range_not_satisfiable", None),
            ApiError::Unavailable { .. } => ("unavailable", Some("temporarily unavailable, retry later".into())),
            ApiError::Internal(what) => {
                tracing::error!(error = %what, "request failed");
                ("internal", None)
            }
        };
        let mut json = serde_json::json!({ "error": code });
        if let Some(d) = detail {
            json["reason"] = serde_json::Value::String(d);
        }
        let mut bytes = serde_json::to_vec(&json).expect("json serializes");
        bytes.push(b'\n');
        let len = bytes.len();
        let mut resp = Reply::new(if head { Body::empty() } else { Body::full(Bytes::from(bytes)) });
        resp.set_status(status);
        let h = resp.headers_mut();
        h.append(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from(len));
        h.append(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            ApiError::Unauthenticated => {
                // One challenge for every kind of bad token: the reason is counted in metrics,
                // not told to the caller.
                h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            }
            ApiError::TooManyRequests(secs) => {
                h.append(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            ApiError::MethodNotAllowed(allow) => {
                h.append(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::RangeNotSatisfiable(blob_len) => {
                let v = crate::range::unsatisfied_range(blob_len);
                h.append(header::CONTENT_RANGE, HeaderValue::from_str(&v).expect("ascii"));
                h.append(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            }
            ApiError::Unavailable { retry_after_s } => {
                h.append(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            _ => {}
        }
        resp
    }
}

impl From<fwrepo_store::Error> for ApiError {
    fn from(e: fwrepo_store::Error) -> ApiError {
        ApiError::internal(e)
    }
}
