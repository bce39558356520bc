//! Routing and the request handlers.
//!
//! # The download gate
//!
//! `/v1/blobs/<id>`, `/v1/blobs/<id>/chunks` and `/targets/<path>` are gated in this order:
//!
//! 1. **Authenticate.** No `Authorization: Bearer`, or a token that fails verification, is a
//!    401 — before anything about the requested object is looked up, so an anonymous caller
//!    learns nothing, not even whether the id is well formed.
//! 2. **Authorize against the object's models.** The models come from the catalog. An object
//!    no release names (unknown id, malformed id, unknown or mis-hashed target name) applies to
//!    *no* model, so it takes the same path as an existing object outside the token's models:
//!    403 `forbidden`, same body, same headers, and the same lookup work. Only a token that
//!    covers every model (`*`, a partner) can get a 404, and it is entitled to know.
//! 3. **Serve.** An entitled object the store does not hold (a mirror mid-sync) is a 404.
//!
//! Every request past step 1 is written to the audit log with its final status.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use fwrepo_catalog::{ModelName, PlanRequest, ReleaseId};
use fwrepo_entitle::{AgreementId, Claims, Scope, Serial, TokenRequest, UnixTime};
use fwrepo_store::Digest;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditRecord, now_rfc3339};
use crate::body::Body;
use crate::error::ApiError;
use crate::metrics::Route;
use crate::range::{self, Multipart, RangePlan};
use crate::state::{BlobFacts, ServerState};

const OCTET_STREAM: &str = "application/octet-stream";
const GET_HEAD: &str = "GET, HEAD";

/// Per-request facts the outer layer needs after the handler ran.
#[derive(Default)]
struct Ctx {
    audit: Option<AuditRecord>,
}

/// The hyper service function.
pub(crate) async fn handle<B>(state: Arc<ServerState>, req: Request<B>) -> Result<Response<Body>, Infallible>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let head = req.method() == Method::HEAD;
    let mut ctx = Ctx::default();
    let (route, result) = route(&state, req, &mut ctx).await;
    let mut resp = result.unwrap_or_else(|e| e.into_response(head));
    let status = resp.status().as_u16();
    state.metrics().request(route, status);
    if let Some(mut record) = ctx.audit.take() {
        record.status = status;
        if resp.status().is_success() {
            // Written when the body is dropped, with the bytes actually handed over.
            resp.body_mut().set_audit(&state, record);
        } else {
            // No payload: an error body or a 304.
            state.audit(&record);
        }
    }
    Ok(resp.map(|b| b.tracked(Arc::clone(&state))))
}

async fn route<B>(state: &Arc<ServerState>, req: Request<B>, ctx: &mut Ctx) -> (Route, Result<Response<Body>, ApiError>)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_owned();
    let (parts, body) = req.into_parts();
    let get_head = parts.method == Method::GET || parts.method == Method::HEAD;
    let head = parts.method == Method::HEAD;

    if let Some(rest) = path.strip_prefix("/v1/blobs/") {
        if !get_head {
            return (Route::Blobs, Err(ApiError::MethodNotAllowed(GET_HEAD)));
        }
        if let Some(id) = rest.strip_suffix("/chunks") {
            return (Route::Chunks, chunks(state, &parts, id, &path, ctx));
        }
        let blob = rest.parse::<Digest>().ok();
        return (Route::Blobs, download(state, &parts, blob, &path, ctx));
    }
    if let Some(rest) = path.strip_prefix("/targets/") {
        if !get_head {
            return (Route::Targets, Err(ApiError::MethodNotAllowed(GET_HEAD)));
        }
        let r = (|| {
            let claims = authenticate(state, &parts.headers)?;
            let blob = match decode(rest) {
                Some(name) => state.resolve_target(&name)?,
                None => None,
            };
            gated_download(state, &parts, claims, blob, &path, ctx)
        })();
        return (Route::Targets, r);
    }
    if let Some(name) = path.strip_prefix("/metadata/") {
        if !get_head {
            return (Route::Metadata, Err(ApiError::MethodNotAllowed(GET_HEAD)));
        }
        return (Route::Metadata, metadata(state, &parts.headers, name, head));
    }
    if let Some(rest) = path.strip_prefix("/v1/catalog/") {
        if rest == "plan" {
            if parts.method != Method::POST {
                return (Route::CatalogPlan, Err(ApiError::MethodNotAllowed("POST")));
            }
            return (Route::CatalogPlan, plan(state, &parts, body).await);
        }
        if !get_head {
            return (Route::Other, Err(ApiError::MethodNotAllowed(GET_HEAD)));
        }
        if rest == "models" {
            return (Route::CatalogModels, catalog_models(state, head));
        }
        if let Some(model) = rest.strip_prefix("models/") {
            return (Route::CatalogModel, catalog_model(state, model, head));
        }
        if let Some(id) = rest.strip_prefix("releases/") {
            return (Route::CatalogRelease, catalog_release(state, id, head));
        }
        return (Route::Other, Err(ApiError::NotFound));
    }
    match path.as_str() {
        "/v1/tokens" => {
            if parts.method != Method::POST {
                return (Route::Tokens, Err(ApiError::MethodNotAllowed("POST")));
            }
            (Route::Tokens, tokens(state, &parts, body).await)
        }
        "/healthz" | "/readyz" | "/metrics" => {
            let route = match path.as_str() {
                "/healthz" => Route::Healthz,
                "/readyz" => Route::Readyz,
                _ => Route::Metrics,
            };
            if !get_head {
                return (route, Err(ApiError::MethodNotAllowed(GET_HEAD)));
            }
            let (status, text) = match route {
                Route::Healthz => (StatusCode::OK, "ok\n".to_owned()),
                Route::Readyz if state.mirror().is_some_and(|m| m.expired(UnixTime::now().0)) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "timestamp metadata expired\n".to_owned())
                }
                Route::Readyz if state.is_ready() => (StatusCode::OK, "ready\n".to_owned()),
                Route::Readyz => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".to_owned()),
                _ => {
                    let mut text = state.metrics().render();
                    if let Some(m) = state.mirror() {
                        m.render(&mut text);
                    }
                    (StatusCode::OK, text)
                }
            };
            let ct = if route == Route::Metrics { "text/plain; version=0.0.4" } else { "text/plain" };
            let mut resp = bytes_response(Bytes::from(text), ct, head);
            *resp.status_mut() = status;
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            (route, Ok(resp))
        }
        _ => (Route::Other, Err(ApiError::NotFound)),
    }
}

/// The answer for a blob the catalog names but the store does not hold: on a mirror, firmware
/// it does not carry.
fn not_held(state: &ServerState) -> ApiError {
    if state.mirror().is_some() { ApiError::NotCarried } else { ApiError::NotFound }
}

/// Percent-decodes a path segment; `None` when it is not UTF-8.
fn decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

/// Step 1 of the gate: the bearer token's claims.
fn authenticate(state: &ServerState, headers: &HeaderMap) -> Result<Arc<Claims>, ApiError> {
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    let Some(token) = token else {
        state.metrics().auth_failure(None);
        return Err(ApiError::Unauthenticated);
    };
    let verifier = state.verifier();
    let (result, cached) = state.tokens().authenticate_traced(&verifier, token, UnixTime::now());
    state.metrics().token_verification(cached);
    result.map_err(|r| {
        state.metrics().auth_failure(Some(r));
        ApiError::Unauthenticated
    })
}

/// Step 2 of the gate: whether `claims` cover `blob`, and its facts if so.
fn authorize(state: &ServerState, claims: &Claims, blob: Option<Digest>) -> Result<(Digest, Arc<BlobFacts>), ApiError> {
    let facts = match blob {
        Some(b) => state.blob_facts(&b)?,
        None => None,
    };
    // A published file no release names (the auth documents a mirror syncs) is for mirror
    // tokens; it is fetched by its BLAKE3 id, which only signed metadata tells.
    if facts.is_none()
        && claims.scope == Scope::Mirror
        && let Some(b) = blob
        && let Some(f) = state.unlisted_blob_facts(&b)?
    {
        return Ok((b, f));
    }
    let no_models: &[String] = &[];
    let models = facts.as_ref().map_or(no_models, |f| &f.models[..]);
    if let Err(r) = claims.authorize(Scope::Download, models) {
        state.metrics().auth_failure(Some(r));
        return Err(ApiError::Forbidden);
    }
    // Only a token covering every model gets here for an object no release names.
    match (blob, facts) {
        (Some(b), Some(f)) => Ok((b, f)),
        _ => Err(ApiError::NotFound),
    }
}

fn audit_record(claims: &Claims, blob: Option<Digest>, path: &str) -> AuditRecord {
    AuditRecord {
        time: now_rfc3339(),
        subject: claims.sub.to_string(),
        jti: claims.jti.as_str().to_owned(),
        blob: blob.map(|b| b.to_hex()).unwrap_or_default(),
        path: path.to_owned(),
        bytes: 0,
        status: 0,
    }
}

fn download(
    state: &ServerState,
    parts: &Parts,
    blob: Option<Digest>,
    path: &str,
    ctx: &mut Ctx,
) -> Result<Response<Body>, ApiError> {
    let claims = authenticate(state, &parts.headers)?;
    gated_download(state, parts, claims, blob, path, ctx)
}

fn gated_download(
    state: &ServerState,
    parts: &Parts,
    claims: Arc<Claims>,
    blob: Option<Digest>,
    path: &str,
    ctx: &mut Ctx,
) -> Result<Response<Body>, ApiError> {
    ctx.audit = Some(audit_record(&claims, blob, path));
    let (blob, facts) = authorize(state, &claims, blob)?;
    let len = facts.len.ok_or_else(|| not_held(state))?;
    serve_blob(state, parts, &blob, &facts, len)
}

fn chunks(state: &ServerState, parts: &Parts, id: &str, path: &str, ctx: &mut Ctx) -> Result<Response<Body>, ApiError> {
    let claims = authenticate(state, &parts.headers)?;
    let blob = id.parse::<Digest>().ok();
    ctx.audit = Some(audit_record(&claims, blob, path));
    let (blob, facts) = authorize(state, &claims, blob)?;
    if facts.len.is_none() {
        return Err(not_held(state));
    }
    let index = state.store().chunk_index(&blob)?;
    let etag = format!("\"{}\"", index.id().to_hex());
    let head = parts.method == Method::HEAD;
    if let Some(inm) = parts.headers.get(header::IF_NONE_MATCH)
        && range::if_none_match(inm.as_bytes(), &etag)
    {
        return Ok(not_modified(HeaderValue::from_str(&etag).expect("hex"), "private"));
    }
    let mut resp = bytes_response(Bytes::from(index.to_bytes()), OCTET_STREAM, head);
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    Ok(resp)
}

/// The blob's bytes under the request's conditionals and `Range`.
fn serve_blob(
    state: &ServerState,
    parts: &Parts,
    blob: &Digest,
    facts: &BlobFacts,
    len: u64,
) -> Result<Response<Body>, ApiError> {
    let head = parts.method == Method::HEAD;
    let h = &parts.headers;
    // If-None-Match is evaluated before Range (RFC 9110 §13.2.2).
    if let Some(inm) = h.get(header::IF_NONE_MATCH)
        && range::if_none_match(inm.as_bytes(), &facts.etag)
    {
        return Ok(not_modified(facts.etag_header.clone(), "private"));
    }
    let plan = range::plan(
        h.get(header::RANGE).map(HeaderValue::as_bytes),
        h.get(header::IF_RANGE).map(HeaderValue::as_bytes),
        &facts.etag,
        len,
    );
    let store = state.store();
    let (status, content_type, content_length, chunks, content_range) = match plan {
        RangePlan::Full => {
            let chunks = if head { Vec::new() } else { store.read_range(blob, 0..len)? };
            (StatusCode::OK, HeaderValue::from_static(OCTET_STREAM), len, chunks, None)
        }
        RangePlan::Single(r) => {
            let cr = HeaderValue::from_str(&range::content_range(&r, len)).expect("ascii");
            let chunks = if head { Vec::new() } else { store.read_range(blob, r.clone())? };
            (StatusCode::PARTIAL_CONTENT, HeaderValue::from_static(OCTET_STREAM), r.end - r.start, chunks, Some(cr))
        }
        RangePlan::Multi(ranges) => {
            // Derived from the blob and the ranges: stable for a request, and a payload that
            // contains it would need a BLAKE3 preimage.
            let mut seed = Vec::with_capacity(32 + ranges.len() * 16);
            seed.extend_from_slice(blob.as_bytes());
            for r in &ranges {
                seed.extend_from_slice(&r.start.to_le_bytes());
                seed.extend_from_slice(&r.end.to_le_bytes());
            }
            let boundary = format!("fwrepo-{}", &Digest::of(&seed).to_hex()[..32]);
            let mp = Multipart::new(boundary, &ranges, len, OCTET_STREAM);
            let mut chunks = Vec::new();
            if !head {
                for (header, r) in &mp.parts {
                    chunks.push(header.clone());
                    chunks.extend(store.read_range(blob, r.clone())?);
                }
                chunks.push(mp.trailer.clone());
            }
            let ct = HeaderValue::from_str(&mp.content_type()).expect("ascii");
            (StatusCode::PARTIAL_CONTENT, ct, mp.content_length(), chunks, None)
        }
        RangePlan::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable(len)),
    };
    let mut resp = Response::new(Body::from_chunks(chunks));
    *resp.status_mut() = status;
    let hm = resp.headers_mut();
    hm.insert(header::CONTENT_TYPE, content_type);
    hm.insert(header::CONTENT_LENGTH, HeaderValue::from(content_length));
    hm.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    hm.insert(header::ETAG, facts.etag_header.clone());
    hm.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    if let Some(cr) = content_range {
        hm.insert(header::CONTENT_RANGE, cr);
    }
    Ok(resp)
}

fn not_modified(etag: HeaderValue, cache: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

/// A 200 with `bytes` (kept out of the body for HEAD, length still announced).
fn bytes_response(bytes: Bytes, content_type: &'static str, head: bool) -> Response<Body> {
    let len = bytes.len();
    let mut resp = Response::new(if head { Body::empty() } else { Body::full(bytes) });
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// Whether `name` is a metadata file name we serve: `<something>.json`, no path, no dot file.
fn valid_metadata_name(name: &str) -> bool {
    name.len() <= 255
        && name.ends_with(".json")
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn metadata(state: &ServerState, headers: &HeaderMap, name: &str, head: bool) -> Result<Response<Body>, ApiError> {
    if !valid_metadata_name(name) {
        return Err(ApiError::NotFound);
    }
    let bytes = state.metadata().get(name).ok_or(ApiError::NotFound)?;
    // `N.role.json` never changes once published; everything else (timestamp.json above all)
    // is replaced in place and must be re-fetched soon.
    let versioned = name.split('.').next().is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    let cache = if versioned {
        HeaderValue::from_static("public, max-age=31536000, immutable")
    } else {
        HeaderValue::from_str(&format!("public, max-age={}", state.timestamp_max_age)).expect("ascii")
    };
    let etag = HeaderValue::from_str(&format!("\"{}\"", Digest::of(&bytes).to_hex())).expect("hex");
    if let Some(inm) = headers.get(header::IF_NONE_MATCH)
        && range::if_none_match(inm.as_bytes(), etag.to_str().expect("ascii"))
    {
        let mut resp = not_modified(etag, "public");
        resp.headers_mut().insert(header::CACHE_CONTROL, cache);
        resp.headers_mut().remove(header::ACCEPT_RANGES);
        return Ok(resp);
    }
    let mut resp = bytes_response(bytes, "application/json", head);
    resp.headers_mut().insert(header::CACHE_CONTROL, cache);
    resp.headers_mut().insert(header::ETAG, etag);
    Ok(resp)
}

fn json_response<T: Serialize>(value: &T, head: bool) -> Result<Response<Body>, ApiError> {
    let mut bytes = serde_json::to_vec(value).map_err(ApiError::internal)?;
    bytes.push(b'\n');
    let mut resp = bytes_response(Bytes::from(bytes), "application/json", head);
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

fn catalog_models(state: &ServerState, head: bool) -> Result<Response<Body>, ApiError> {
    let models = state.catalog().models().map_err(ApiError::internal)?;
    json_response(&serde_json::json!({ "models": models }), head)
}

fn catalog_model(state: &ServerState, raw: &str, head: bool) -> Result<Response<Body>, ApiError> {
    let model = decode(raw).and_then(|m| ModelName::new(m).ok()).ok_or(ApiError::NotFound)?;
    let releases = match state.catalog().releases_for_model(&model) {
        Ok(r) => r,
        Err(fwrepo_catalog::Error::UnknownModel { .. }) => return Err(ApiError::NotFound),
        Err(e) => return Err(ApiError::internal(e)),
    };
    if releases.is_empty() {
        return Err(ApiError::NotFound);
    }
    json_response(&serde_json::json!({ "model": model, "releases": releases }), head)
}

fn catalog_release(state: &ServerState, raw: &str, head: bool) -> Result<Response<Body>, ApiError> {
    let id = decode(raw).and_then(|s| s.parse::<ReleaseId>().ok()).ok_or(ApiError::NotFound)?;
    let release = state.catalog().release(&id).map_err(ApiError::internal)?.ok_or(ApiError::NotFound)?;
    json_response(&release, head)
}

/// Reads a JSON request body of at most `state.max_json_body` bytes.
async fn read_json<B, T>(state: &ServerState, parts: &Parts, body: B) -> Result<T, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T: serde::de::DeserializeOwned,
{
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_json_body as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let collected = Limited::new(body, state.max_json_body).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest("request body could not be read".into())
        }
    })?;
    let bytes = collected.to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde's message names the field and position; it never echoes long input.
        ApiError::BadRequest(format!("invalid JSON body: {e}"))
    })
}

async fn plan<B>(state: &ServerState, parts: &Parts, body: B) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let request: PlanRequest = read_json(state, parts, body).await?;
    match state.catalog().plan(&request) {
        Ok(plan) => json_response(&plan, false),
        Err(
            fwrepo_catalog::Error::UnknownModel { .. }
            | fwrepo_catalog::Error::UnknownRelease { .. }
            | fwrepo_catalog::Error::ReleaseNotForModel { .. },
        ) => Err(ApiError::NotFound),
        Err(e @ fwrepo_catalog::Error::InventoryTooLarge { .. }) => Err(ApiError::BadRequest(e.to_string())),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// The body of `POST /v1/tokens`: exactly one of the three credentials.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    serial: Option<String>,
    agreement: Option<String>,
    partner_credential: Option<String>,
    /// Only with `partner_credential`; `download` when absent.
    scope: Option<Scope>,
}

#[derive(Serialize)]
struct TokenReply<'a> {
    token: &'a str,
    token_type: &'static str,
    /// Unix seconds.
    expires_at: i64,
    expires_in: i64,
    scope: Scope,
    subject: String,
    models: &'a fwrepo_entitle::ModelSet,
}

async fn tokens<B>(state: &ServerState, parts: &Parts, body: B) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(m) = state.mirror() {
        return Err(ApiError::MirrorNoTokens(m.origin.clone()));
    }
    let Some((issuer, records)) = state.issuance() else { return Err(ApiError::NotFound) };
    let req: TokenBody = read_json(state, parts, body).await?;
    let request = match (req.serial, req.agreement, req.partner_credential, req.scope) {
        (Some(s), None, None, None) => {
            TokenRequest::Serial(Serial::new(&s).map_err(|_| ApiError::BadRequest("invalid serial".into()))?)
        }
        (None, Some(a), None, None) => TokenRequest::Agreement(
            AgreementId::new(&a).map_err(|_| ApiError::BadRequest("invalid agreement id".into()))?,
        ),
        (None, None, Some(credential), scope) => {
            TokenRequest::PartnerCredential { credential, scope: scope.unwrap_or(Scope::Download) }
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of serial, agreement or partner_credential (scope only with partner_credential)"
                    .into(),
            ));
        }
    };
    let now = UnixTime::now();
    match issuer.issue(records, &request, now) {
        Ok(t) => json_response(
            &TokenReply {
                token: &t.token,
                token_type: "Bearer",
                expires_at: t.claims.exp.0,
                expires_in: t.claims.exp.0 - now.0,
                scope: t.claims.scope,
                subject: t.claims.sub.to_string(),
                models: &t.claims.models,
            },
            false,
        )
        .map(|mut r| {
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }),
        Err(fwrepo_entitle::Error::Refused(r)) => Err(ApiError::Refused(r)),
        Err(e) => Err(ApiError::internal(e)),
    }
}
