//! Routing and the request handlers.
//!
//! # The download gate
//!
//! `/v1/blobs/<id>`, `/v1/blobs/<id>/chunks`, `/v1/blobs/<id>/deltas` (`crate::deltas`, which
//! also gates every base it is given) and `/targets/<path>` are gated in this order:
//!
//! 0. **Fresh revocations.** While revocation data is older than its limit (refreshes
//!    failing), every gated request is a 503 with `Retry-After`: a revoked token must never
//!    download because the server could not learn of its revocation.
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
//! Every request past step 1 is written to the audit log with its final status, under a
//! bounded, canonical path (the blob id, or the decoded target name cut short).
//!
//! Conditionals on a served object follow RFC 9110 §13.2.2: `If-Match` (strong comparison,
//! `*` for any) first, a miss is 412; then `If-None-Match` (304); then `If-Range`/`Range`.
//!
//! # Token issuance
//!
//! `POST /v1/tokens` is rate limited per client address before its body is read, then per
//! credential named (`crate::limit`); a refusal is 429 with `Retry-After`, counted in
//! `/metrics` and (bounded) written to the audit log. The body has `body_read_timeout_s` to
//! arrive in full, like every JSON body: a slower one is 408 and the connection is closed.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use fwrepo_catalog::{ModelName, PlanRequest, ReleaseId};
use fwrepo_entitle::{
    AgreementId, Claims, Entitlements, IssuedToken, Issuer, Refusal, Scope, Serial, Subject, TokenRequest, UnixTime,
};
use fwrepo_store::Digest;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditPath, AuditRecord, bounded_path};
use crate::body::Body;
use crate::config::TokenRequire;
use crate::error::ApiError;
use crate::limit::{RateLimited, retry_after_secs};
use crate::metrics::Route;
use crate::range::{self, Multipart, RangePlan};
use crate::reply::Reply;
use crate::state::{BlobFacts, ServerState};

const OCTET_STREAM: &str = "application/octet-stream";
const GET_HEAD: &str = "GET, HEAD";

/// Per-request facts the outer layer needs after the handler ran.
pub(crate) struct Ctx {
    pub(crate) audit: Option<AuditRecord>,
    pub(crate) client: IpAddr,
}

/// The service function of hyper's connections; `client` is the connection's peer (passed in,
/// not put in the request's extensions, which would cost an allocation per request).
pub(crate) async fn handle<B>(
    state: Arc<ServerState>,
    req: Request<B>,
    client: IpAddr,
) -> Result<Response<Body>, Infallible>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let head = RequestHead {
        method: &parts.method,
        http1: parts.version < Version::HTTP_2,
        path: parts.uri.path(),
        fields: Fields::Map(&parts.headers),
        time: SystemTime::now(),
    };
    Ok(respond(state, &head, body, client).await.into_response())
}

/// What the handlers read of a request head. Hyper's requests carry a header map; the plain
/// HTTP/1.1 loop (`crate::http1`) passes the fields where they stand in the bytes it read, so
/// a download there builds no map and copies no field.
pub(crate) struct RequestHead<'a> {
    pub(crate) method: &'a Method,
    /// HTTP/1.x (a 408 must close the connection).
    pub(crate) http1: bool,
    /// The request target's path, without the query.
    pub(crate) path: &'a str,
    pub(crate) fields: Fields<'a>,
    /// When the request came, read once (the system clock): a gated request's token check and
    /// audit record, and the `Date` the plain HTTP/1.1 loop writes, are all of this time.
    pub(crate) time: SystemTime,
}

/// A request's header fields.
pub(crate) enum Fields<'a> {
    Map(&'a HeaderMap),
    /// `(name, value)` offsets into `head`, in the order the fields came; names and values
    /// as `httparse` checked them, which are the bytes `http`'s names and values accept.
    Raw {
        head: &'a [u8],
        fields: &'a [RawField],
    },
}

/// Where one field's name and value are in a raw head: `(start, len)` each.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RawField {
    pub(crate) name: (u32, u32),
    pub(crate) value: (u32, u32),
}

impl Fields<'_> {
    /// The value of the first field named `name`.
    pub(crate) fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        match self {
            Fields::Map(m) => m.get(name).map(HeaderValue::as_bytes),
            Fields::Raw { head, fields } => raw_values(head, fields, name).next(),
        }
    }

    /// The value of the first field named `name`, if it is visible ASCII (what
    /// `HeaderValue::to_str` accepts).
    pub(crate) fn get_str(&self, name: &HeaderName) -> Option<&str> {
        self.get(name).and_then(visible_str)
    }

    /// Whether any field is named `name`, and whether `f` holds for one of their values
    /// (tried in order, stopping at the first that holds).
    pub(crate) fn any(&self, name: &HeaderName, mut f: impl FnMut(&[u8]) -> bool) -> (bool, bool) {
        let mut present = false;
        let mut hit = |v: &[u8]| {
            present = true;
            f(v)
        };
        let found = match self {
            Fields::Map(m) => m.get_all(name).iter().any(|v| hit(v.as_bytes())),
            Fields::Raw { head, fields } => raw_values(head, fields, name).any(hit),
        };
        (present, found)
    }
}

/// The values of the raw fields named `name`, in order.
fn raw_values<'h>(head: &'h [u8], fields: &'h [RawField], name: &HeaderName) -> impl Iterator<Item = &'h [u8]> {
    let want = name.as_str().as_bytes();
    fields.iter().filter(move |f| span(head, f.name).eq_ignore_ascii_case(want)).map(move |f| span(head, f.value))
}

/// `v` as text if every byte is visible ASCII, a space or a tab (what `HeaderValue::to_str`
/// accepts).
fn visible_str(v: &[u8]) -> Option<&str> {
    // Visible is `0x20..=0x7e`: a byte outside it unless it is a tab.
    let refused = crate::scan::any_byte(v, |b| !((b.wrapping_sub(0x20) < 0x5f) | (b == b'\t')));
    if refused {
        return None;
    }
    // SAFETY: every byte of `v` is below 0x80, so `v` is ASCII and therefore UTF-8 (checking
    // it again with `from_utf8` cost 700 instructions per bearer token).
    Some(unsafe { std::str::from_utf8_unchecked(v) })
}

fn span(head: &[u8], (at, len): (u32, u32)) -> &[u8] {
    &head[at as usize..(at + len) as usize]
}

/// Routes and answers one request: metrics, the audit record, the response.
pub(crate) async fn respond<B>(state: Arc<ServerState>, req: &RequestHead<'_>, body: B, client: IpAddr) -> Reply
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut ctx = Ctx { audit: None, client };
    let (route, result) = match body_route(req) {
        Some(to) => route_with_body(&state, req, body, to, &mut ctx).await,
        None => route_now(&state, req, &mut ctx),
    };
    finish(&state, req, ctx, route, result)
}

/// [`respond`] for a request that has no body to read: a `GET` or `HEAD`, as the plain
/// HTTP/1.1 loop takes them. Nothing here waits, so the loop's task keeps none of this
/// state across a wait.
pub(crate) fn respond_now(state: &Arc<ServerState>, req: &RequestHead<'_>, client: IpAddr) -> Reply {
    debug_assert!(body_route(req).is_none(), "{} {} reads a body", req.method, req.path);
    let mut ctx = Ctx { audit: None, client };
    let (route, result) = route_now(state, req, &mut ctx);
    finish(state, req, ctx, route, result)
}

/// The handler's result made the response: metrics, the audit record, the body's tracking.
fn finish(
    state: &Arc<ServerState>,
    req: &RequestHead<'_>,
    mut ctx: Ctx,
    route: Route,
    result: Result<Reply, ApiError>,
) -> Reply {
    let head = *req.method == Method::HEAD;
    let mut resp = result.unwrap_or_else(|e| e.into_response(head));
    if req.http1 && resp.status() == StatusCode::REQUEST_TIMEOUT {
        // The rest of the body would be the next request's bytes: never read it.
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = resp.status().as_u16();
    state.metrics().request(route, status);
    if let Some(mut record) = ctx.audit.take() {
        record.status = status;
        if resp.status().is_success() {
            // Written when the body is dropped, with the bytes actually handed over.
            resp.body_mut().set_audit(state, record);
        } else {
            // No payload: an error body or a 304.
            state.audit(&record);
        }
    }
    resp.body_mut().track(state);
    resp
}

/// The handlers that read a request body (all of them take `POST` only).
enum BodyRoute<'a> {
    /// `POST /v1/blobs/{id}/deltas`.
    Deltas(&'a str),
    CatalogPlan,
    Tokens,
}

/// Reads the body for one of the handlers that needs it and answers.
async fn route_with_body<B>(
    state: &Arc<ServerState>,
    parts: &RequestHead<'_>,
    body: B,
    to: BodyRoute<'_>,
    ctx: &mut Ctx,
) -> (Route, Result<Reply, ApiError>)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match to {
        BodyRoute::Deltas(id) => (Route::Deltas, crate::deltas::handle(state, parts, body, id, parts.path, ctx).await),
        BodyRoute::CatalogPlan => (Route::CatalogPlan, plan(state, parts, body).await),
        BodyRoute::Tokens => (Route::Tokens, tokens(state, parts, body, ctx.client).await),
    }
}

/// The handler a `POST` goes to, for the routes that read a request body.
fn body_route<'a>(parts: &RequestHead<'a>) -> Option<BodyRoute<'a>> {
    if *parts.method != Method::POST {
        return None;
    }
    match parts.path {
        "/v1/catalog/plan" => Some(BodyRoute::CatalogPlan),
        "/v1/tokens" => Some(BodyRoute::Tokens),
        path => path.strip_prefix("/v1/blobs/")?.strip_suffix("/deltas").map(BodyRoute::Deltas),
    }
}

/// Routes a request whose handler reads no body ([`body_route`] is `None`) and answers it,
/// without waiting on anything: every `GET` and `HEAD`, and every request refused before its
/// body matters (a `GET` of `/v1/tokens`, a `POST` of a blob).
fn route_now(state: &Arc<ServerState>, parts: &RequestHead<'_>, ctx: &mut Ctx) -> (Route, Result<Reply, ApiError>) {
    // Borrowed from the request: no copy of the path per request.
    let path = parts.path;
    let get_head = *parts.method == Method::GET || *parts.method == Method::HEAD;
    let head = *parts.method == Method::HEAD;

    if let Some(rest) = path.strip_prefix("/v1/blobs/") {
        if rest.ends_with("/deltas") {
            // A POST went to `body_route`'s handler.
            return (Route::Deltas, Err(ApiError::MethodNotAllowed("POST")));
        }
        if !get_head {
            return (Route::Blobs, Err(ApiError::MethodNotAllowed(GET_HEAD)));
        }
        if let Some(id) = rest.strip_suffix("/chunks") {
            return (Route::Chunks, chunks(state, parts, id, path, ctx));
        }
        let blob = rest.parse::<Digest>().ok();
        let audit_path = || blob_audit_path(blob, "", path);
        return (Route::Blobs, download(state, parts, blob, audit_path, ctx));
    }
    if let Some(rest) = path.strip_prefix("/targets/") {
        if !get_head {
            return (Route::Targets, Err(ApiError::MethodNotAllowed(GET_HEAD)));
        }
        let r = (|| {
            let claims = authenticate(state, parts)?;
            let name = decode(rest);
            let blob = match &name {
                Some(name) => state.resolve_target(name)?,
                None => None,
            };
            let audit_path = || AuditPath::Text(bounded_path(&format!("/targets/{}", name.as_deref().unwrap_or(rest))));
            gated_download(state, parts, claims, blob, audit_path, ctx)
        })();
        return (Route::Targets, r);
    }
    if let Some(name) = path.strip_prefix("/metadata/") {
        if !get_head {
            return (Route::Metadata, Err(ApiError::MethodNotAllowed(GET_HEAD)));
        }
        return (Route::Metadata, metadata(state, &parts.fields, name, head));
    }
    if let Some(rest) = path.strip_prefix("/v1/catalog/") {
        if rest == "plan" {
            return (Route::CatalogPlan, Err(ApiError::MethodNotAllowed("POST")));
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
    match path {
        "/v1/tokens" => (Route::Tokens, Err(ApiError::MethodNotAllowed("POST"))),
        "/healthz" | "/readyz" | "/metrics" => {
            let route = match path {
                "/healthz" => Route::Healthz,
                "/readyz" => Route::Readyz,
                _ => Route::Metrics,
            };
            if !get_head {
                return (route, Err(ApiError::MethodNotAllowed(GET_HEAD)));
            }
            let (status, text) = match route {
                Route::Healthz => (StatusCode::OK, "ok\n".to_owned()),
                Route::Readyz => match state.not_ready_reason() {
                    None => (StatusCode::OK, "ready\n".to_owned()),
                    Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                },
                _ => {
                    let mut text = state.metrics().render();
                    state.deltas().render(&mut text);
                    if let Some(m) = state.mirror() {
                        m.render(&mut text);
                    }
                    (StatusCode::OK, text)
                }
            };
            let ct = if route == Route::Metrics { "text/plain; version=0.0.4" } else { "text/plain" };
            let mut resp = bytes_response(Bytes::from(text), ct, head);
            resp.set_status(status);
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            (route, Ok(resp))
        }
        _ => (Route::Other, Err(ApiError::NotFound)),
    }
}

/// The answer for a blob the catalog names but the store does not hold: on a mirror, firmware
/// it does not carry.
pub(crate) fn not_held(state: &ServerState) -> ApiError {
    if state.mirror().is_some() { ApiError::NotCarried } else { ApiError::NotFound }
}

/// Percent-decodes a path segment; `None` when it is not UTF-8.
fn decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

/// Steps 0 and 1 of the gate: fresh revocation data, then the bearer token's claims.
pub(crate) fn authenticate(state: &ServerState, req: &RequestHead<'_>) -> Result<Arc<Claims>, ApiError> {
    state.require_fresh_revocations()?;
    let token = req.fields.get_str(&header::AUTHORIZATION).and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    let Some(token) = token else {
        state.metrics().auth_failure(None);
        return Err(ApiError::Unauthenticated);
    };
    let verifier = state.verifier();
    let (result, cached) = state.tokens().authenticate_traced(&verifier, token, UnixTime::at(req.time));
    state.metrics().token_verification(cached);
    result.map_err(|r| {
        state.metrics().auth_failure(Some(r));
        ApiError::Unauthenticated
    })
}

/// Step 2 of the gate: whether `claims` cover `blob`, and its facts if so.
///
/// Every request here does one facts lookup the same way ([`ServerState::blob_facts`] caches
/// known and unknown ids alike; a malformed id or a target name that resolves to nothing
/// looks up [`NO_BLOB`]). The store is asked again only for an entitled caller whose blob it
/// lacked when the facts were cached.
pub(crate) fn authorize(
    state: &ServerState,
    claims: &Claims,
    blob: Option<Digest>,
) -> Result<(Digest, Arc<BlobFacts>), ApiError> {
    let facts = state.blob_facts(&blob.unwrap_or(NO_BLOB))?;
    // A current `auth/*` target (the auth documents a mirror syncs) is named by no release;
    // it is for mirror tokens, fetched by its BLAKE3 id, which only signed metadata tells.
    // Any other stored blob no release names stays out of reach.
    if facts.models.is_empty()
        && claims.scope == Scope::Mirror
        && let Some(b) = blob
        && let Some(f) = state.auth_blob_facts(&b)?
    {
        return Ok((b, f));
    }
    if let Err(r) = claims.authorize(Scope::Download, &facts.models) {
        state.metrics().auth_failure(Some(r));
        return Err(ApiError::Forbidden);
    }
    // Only a token covering every model gets here for an object no release names.
    match blob {
        Some(b) if !facts.models.is_empty() && facts.len.is_none() => Ok((b, state.blob_facts_uncached(&b)?)),
        Some(b) if !facts.models.is_empty() => Ok((b, facts)),
        _ => Err(ApiError::NotFound),
    }
}

/// The id looked up for a request that names no well-formed blob: 32 zero bytes, the BLAKE3
/// of nothing anyone can find (that would be a preimage), so no release ever names it.
const NO_BLOB: Digest = Digest([0; 32]);

/// The record of a request past authentication (its status and bytes are set later).
pub(crate) fn audit_record(
    req: &RequestHead<'_>,
    client: IpAddr,
    claims: &Arc<Claims>,
    blob: Option<Digest>,
    path: AuditPath,
) -> AuditRecord {
    AuditRecord {
        time: req.time,
        client,
        claims: Some(Arc::clone(claims)),
        blob,
        path,
        bytes: 0,
        status: 0,
        reason: String::new(),
    }
}

/// `/v1/blobs/<id><suffix>` for a well-formed id, else what was asked, bounded.
pub(crate) fn blob_audit_path(blob: Option<Digest>, suffix: &'static str, asked: &str) -> AuditPath {
    match blob {
        Some(_) => AuditPath::Blob(suffix),
        None => AuditPath::Text(bounded_path(asked)),
    }
}

fn download(
    state: &ServerState,
    parts: &RequestHead<'_>,
    blob: Option<Digest>,
    audit_path: impl FnOnce() -> AuditPath,
    ctx: &mut Ctx,
) -> Result<Reply, ApiError> {
    let claims = authenticate(state, parts)?;
    gated_download(state, parts, claims, blob, audit_path, ctx)
}

/// `audit_path` (canonical and bounded) is only made when an audit log is kept.
fn gated_download(
    state: &ServerState,
    parts: &RequestHead<'_>,
    claims: Arc<Claims>,
    blob: Option<Digest>,
    audit_path: impl FnOnce() -> AuditPath,
    ctx: &mut Ctx,
) -> Result<Reply, ApiError> {
    if state.audits() {
        ctx.audit = Some(audit_record(parts, ctx.client, &claims, blob, audit_path()));
    }
    let (blob, facts) = authorize(state, &claims, blob)?;
    let len = facts.len.ok_or_else(|| not_held(state))?;
    serve_blob(state, parts, &blob, &facts, len)
}

fn chunks(
    state: &ServerState,
    parts: &RequestHead<'_>,
    id: &str,
    path: &str,
    ctx: &mut Ctx,
) -> Result<Reply, ApiError> {
    let claims = authenticate(state, parts)?;
    let blob = id.parse::<Digest>().ok();
    if state.audits() {
        ctx.audit = Some(audit_record(parts, ctx.client, &claims, blob, blob_audit_path(blob, "/chunks", path)));
    }
    let (blob, facts) = authorize(state, &claims, blob)?;
    if facts.len.is_none() {
        return Err(not_held(state));
    }
    let index = state.store().chunk_index(&blob)?;
    let etag = format!("\"{}\"", index.id().to_hex());
    let head = *parts.method == Method::HEAD;
    check_if_match(&parts.fields, &etag)?;
    if let Some(inm) = parts.fields.get(&header::IF_NONE_MATCH)
        && range::if_none_match(inm, &etag)
    {
        return Ok(not_modified(HeaderValue::from_str(&etag).expect("hex"), "private"));
    }
    let mut resp = bytes_response(Bytes::from(index.to_bytes()), OCTET_STREAM, head);
    let h = resp.headers_mut();
    h.append(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    h.append(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    Ok(resp)
}

/// The blob's bytes under the request's conditionals and `Range`.
fn serve_blob(
    state: &ServerState,
    parts: &RequestHead<'_>,
    blob: &Digest,
    facts: &BlobFacts,
    len: u64,
) -> Result<Reply, ApiError> {
    let head = *parts.method == Method::HEAD;
    let h = &parts.fields;
    // If-Match, then If-None-Match, then Range (RFC 9110 §13.2.2).
    check_if_match(h, &facts.etag)?;
    if let Some(inm) = h.get(&header::IF_NONE_MATCH)
        && range::if_none_match(inm, &facts.etag)
    {
        return Ok(not_modified(facts.etag_header.clone(), "private"));
    }
    let plan = range::plan(h.get(&header::RANGE), h.get(&header::IF_RANGE), &facts.etag, len);
    let store = state.store();
    // Single ranges and whole blobs are pack-file extents, which a plain HTTP/1.1 connection
    // sends with `sendfile`; everything else is bytes.
    let (status, content_type, content_length, body, content_range) = match plan {
        RangePlan::Full => {
            let body = if head { Body::empty() } else { Body::from_extents(store.read_extents(blob, 0..len)?) };
            (StatusCode::OK, HeaderValue::from_static(OCTET_STREAM), len, body, None)
        }
        RangePlan::Single(r) => {
            let body = if head { Body::empty() } else { Body::from_extents(store.read_extents(blob, r.clone())?) };
            (StatusCode::PARTIAL_CONTENT, HeaderValue::from_static(OCTET_STREAM), r.end - r.start, body, Some(r))
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
            (StatusCode::PARTIAL_CONTENT, ct, mp.content_length(), Body::from_chunks(chunks), None)
        }
        RangePlan::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable(len)),
    };
    debug_assert!(head || body.len() == content_length, "the body is what the head announces");
    let mut resp = Reply::new(body);
    resp.set_status(status);
    let hm = resp.headers_mut();
    hm.append(header::CONTENT_TYPE, content_type);
    if head {
        // A body announces its own length (hyper and `http1` write it from the body): only a
        // HEAD, whose body is empty, needs it set.
        hm.append(header::CONTENT_LENGTH, HeaderValue::from(content_length));
    }
    hm.append(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    hm.append(header::ETAG, facts.etag_header.clone());
    hm.append(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    if let Some(r) = content_range {
        hm.append_content_range(r, len);
    }
    Ok(resp)
}

/// 412 unless `If-Match` is absent, `*`, or names `etag` (strong comparison).
fn check_if_match(fields: &Fields<'_>, etag: &str) -> Result<(), ApiError> {
    // Several If-Match fields form one list: the request may proceed if any names the tag.
    let (present, hit) = fields.any(&header::IF_MATCH, |v| range::if_match(v, etag));
    if !present || hit { Ok(()) } else { Err(ApiError::PreconditionFailed) }
}

fn not_modified(etag: HeaderValue, cache: &'static str) -> Reply {
    let mut resp = Reply::new(Body::empty());
    resp.set_status(StatusCode::NOT_MODIFIED);
    let h = resp.headers_mut();
    h.append(header::ETAG, etag);
    h.append(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.append(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

/// A 200 with `bytes` (kept out of the body for HEAD, length still announced).
fn bytes_response(bytes: Bytes, content_type: &'static str, head: bool) -> Reply {
    let len = bytes.len();
    let mut resp = Reply::new(if head { Body::empty() } else { Body::full(bytes) });
    let h = resp.headers_mut();
    h.append(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.append(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// Whether `name` is a metadata file name we serve: `<something>.json`, no path, no dot file.
fn valid_metadata_name(name: &str) -> bool {
    name.len() <= 255
        && name.ends_with(".json")
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn metadata(state: &ServerState, headers: &Fields<'_>, name: &str, head: bool) -> Result<Reply, ApiError> {
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
    check_if_match(headers, etag.to_str().expect("ascii"))?;
    if let Some(inm) = headers.get(&header::IF_NONE_MATCH)
        && range::if_none_match(inm, etag.to_str().expect("ascii"))
    {
        let mut resp = not_modified(etag, "public");
        resp.headers_mut().insert(header::CACHE_CONTROL, cache);
        resp.headers_mut().remove(&header::ACCEPT_RANGES);
        return Ok(resp);
    }
    let mut resp = bytes_response(bytes, "application/json", head);
    resp.headers_mut().insert(header::CACHE_CONTROL, cache);
    resp.headers_mut().insert(header::ETAG, etag);
    Ok(resp)
}

fn json_response<T: Serialize>(value: &T, head: bool) -> Result<Reply, ApiError> {
    let mut bytes = serde_json::to_vec(value).map_err(ApiError::internal)?;
    bytes.push(b'\n');
    let mut resp = bytes_response(Bytes::from(bytes), "application/json", head);
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

fn catalog_models(state: &ServerState, head: bool) -> Result<Reply, ApiError> {
    let models = state.catalog().models().map_err(ApiError::internal)?;
    json_response(&serde_json::json!({ "models": models }), head)
}

fn catalog_model(state: &ServerState, raw: &str, head: bool) -> Result<Reply, ApiError> {
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

fn catalog_release(state: &ServerState, raw: &str, head: bool) -> Result<Reply, ApiError> {
    let id = decode(raw).and_then(|s| s.parse::<ReleaseId>().ok()).ok_or(ApiError::NotFound)?;
    let release = state.catalog().release(&id).map_err(ApiError::internal)?.ok_or(ApiError::NotFound)?;
    json_response(&release, head)
}

/// Reads a JSON request body of at most `state.max_json_body` bytes, all of it within
/// `state.body_read_timeout` (a client trickling a byte at a time would otherwise hold its
/// connection slot for as long as it likes).
async fn read_json<B, T>(state: &ServerState, parts: &RequestHead<'_>, body: B) -> Result<T, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T: serde::de::DeserializeOwned,
{
    read_json_limited(state, parts, body, state.max_json_body).await
}

/// [`read_json`] with a limit of `max` bytes instead of `max_json_body`.
pub(crate) async fn read_json_limited<B, T>(
    state: &ServerState,
    parts: &RequestHead<'_>,
    body: B,
    max: usize,
) -> Result<T, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T: serde::de::DeserializeOwned,
{
    if let Some(ct) = parts.fields.get(&header::CONTENT_TYPE) {
        let ct = visible_str(ct).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let declared = parts.fields.get_str(&header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let read = tokio::time::timeout(state.body_read_timeout, Limited::new(body, max).collect());
    let collected = read.await.map_err(|_| ApiError::RequestTimeout)?.map_err(|e| {
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

async fn plan<B>(state: &ServerState, parts: &RequestHead<'_>, body: B) -> Result<Reply, ApiError>
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

/// The body of `POST /v1/tokens`: a serial, an agreement, both, or a partner credential.
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

const REQUIRE_BOTH: &str = "this server issues tokens for a service agreement together with a serial it covers";

async fn tokens<B>(state: &ServerState, parts: &RequestHead<'_>, body: B, client: IpAddr) -> Result<Reply, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(m) = state.mirror() {
        return Err(ApiError::MirrorNoTokens(m.origin.clone()));
    }
    let Some((issuer, records)) = state.issuance() else { return Err(ApiError::NotFound) };
    // Before the body is read: a refused client costs no parsing and no lookup.
    state.token_limits.check_client(client).map_err(|l| rate_limited(state, client, l))?;
    let req: TokenBody = read_json(state, parts, body).await?;
    let named: Vec<(&str, &str)> = [
        ("serial", req.serial.as_deref()),
        ("agreement", req.agreement.as_deref()),
        ("partner", req.partner_credential.as_deref()),
    ]
    .into_iter()
    .filter_map(|(kind, v)| v.map(|v| (kind, v)))
    .collect();
    state.token_limits.check_credentials(&named).map_err(|l| rate_limited(state, client, l))?;

    let serial = |s: &str| Serial::new(s).map_err(|_| ApiError::BadRequest("invalid serial".into()));
    let agreement = |a: &str| AgreementId::new(a).map_err(|_| ApiError::BadRequest("invalid agreement id".into()));
    let alone_ok = state.token_require == TokenRequire::Serial;
    let now = UnixTime::now();
    let issued = match (&req.serial, &req.agreement, req.partner_credential, req.scope) {
        (Some(s), None, None, None) => {
            let s = serial(s)?;
            if !alone_ok {
                return Err(ApiError::CredentialNotAccepted(REQUIRE_BOTH));
            }
            issuer.issue(&records, &TokenRequest::Serial(s), now)
        }
        (None, Some(a), None, None) => {
            let a = agreement(a)?;
            if !alone_ok {
                return Err(ApiError::CredentialNotAccepted(REQUIRE_BOTH));
            }
            issuer.issue(&records, &TokenRequest::Agreement(a), now)
        }
        (Some(s), Some(a), None, None) => issue_covered(issuer, &records, &serial(s)?, &agreement(a)?, now),
        (None, None, Some(credential), scope) => issuer.issue(
            &records,
            &TokenRequest::PartnerCredential { credential, scope: scope.unwrap_or(Scope::Download) },
            now,
        ),
        _ => {
            return Err(ApiError::BadRequest(
                "give a serial, an agreement, both, or a partner_credential (scope only with partner_credential)"
                    .into(),
            ));
        }
    };
    match issued {
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

/// `{"agreement", "serial"}`: the agreement's token, for a caller who also names a serial the
/// agreement covers (listed in it, or a serial on record of a model it covers) and that is not
/// revoked. Every failure is the one agreement refusal, so the answer never tells which half
/// was wrong.
fn issue_covered(
    issuer: &Issuer,
    records: &Entitlements,
    serial: &Serial,
    agreement: &AgreementId,
    now: UnixTime,
) -> fwrepo_entitle::Result<IssuedToken> {
    let refused = || -> fwrepo_entitle::Result<IssuedToken> { Err(Refusal::UnknownOrInactiveAgreement.into()) };
    let Some(a) = records.agreement(agreement)? else { return refused() };
    let covered = a.serials.contains(serial)
        || match records.serial(serial)? {
            Some(r) => a.models.contains(&r.model),
            None => false,
        };
    if !covered || records.is_subject_revoked(&Subject::Serial(serial.clone()))? {
        return refused();
    }
    issuer.issue(records, &TokenRequest::Agreement(agreement.clone()), now)
}

/// A 429 for `client`: counted, and written to the audit log unless too many were lately.
fn rate_limited(state: &ServerState, client: IpAddr, limited: RateLimited) -> ApiError {
    state.metrics().token_rate_limited(limited.by);
    if state.token_limits.audit_refusal(client) {
        state.audit(&AuditRecord {
            time: std::time::SystemTime::now(),
            client,
            claims: None,
            blob: None,
            path: AuditPath::Text("/v1/tokens".to_owned()),
            bytes: 0,
            status: StatusCode::TOO_MANY_REQUESTS.as_u16(),
            reason: format!("rate limit: {}", limited.by.as_str()),
        });
    }
    ApiError::TooManyRequests(retry_after_secs(limited.retry_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_str_accepts_what_header_value_to_str_accepts_and_nothing_else() {
        // Every byte value, at every position of a value longer than two vector steps.
        for b in 0..=255u8 {
            let visible = (0x20..=0x7e).contains(&b) || b == b'\t';
            for at in 0..40 {
                let mut v = vec![b'a'; 40];
                v[at] = b;
                assert_eq!(visible_str(&v).is_some(), visible, "byte {b:#04x} at {at}");
                if let Ok(h) = HeaderValue::from_bytes(&v) {
                    assert_eq!(visible_str(&v), h.to_str().ok(), "byte {b:#04x} at {at}");
                }
            }
        }
        assert_eq!(visible_str(b""), Some(""));
        assert_eq!(visible_str(b"Bearer a.b\tc"), Some("Bearer a.b\tc"));
    }
}
