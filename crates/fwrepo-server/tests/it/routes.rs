//! Metadata, catalog, token and operational routes.

use http::{Method, StatusCode};

use crate::support::{DL380, Fixture, bearer};

#[test]
fn metadata_cache_headers_and_304() {
    let fx = Fixture::new();
    let ts = fx.get("/metadata/timestamp.json", &[]);
    assert_eq!(ts.status, StatusCode::OK);
    assert_eq!(ts.header("cache-control"), Some("public, max-age=10"));
    assert_eq!(ts.header("content-type"), Some("application/json"));
    let root = fx.get("/metadata/1.root.json", &[]);
    assert_eq!(root.header("cache-control"), Some("public, max-age=31536000, immutable"));
    let etag = root.header("etag").unwrap().to_owned();
    assert_eq!(fx.get("/metadata/1.root.json", &[("if-none-match", etag)]).status, StatusCode::NOT_MODIFIED);
    for bad in
        ["/metadata/../data/fwrepo.json", "/metadata/.hidden.json", "/metadata/timestamp.txt", "/metadata/a%2Fb.json"]
    {
        assert_eq!(fx.get(bad, &[]).status, StatusCode::NOT_FOUND, "{bad}");
    }
    assert_eq!(
        fx.request(Method::DELETE, "/metadata/timestamp.json", &[], Default::default()).status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[test]
fn catalog_routes() {
    let fx = Fixture::new();
    let models: serde_json::Value = serde_json::from_slice(&fx.get("/v1/catalog/models", &[]).body).unwrap();
    assert_eq!(models["models"].as_array().unwrap().len(), 2);
    let m = fx.get("/v1/catalog/models/ProLiant%20DL380%20Gen9", &[]);
    assert_eq!(m.status, StatusCode::OK);
    let m: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    assert_eq!(m["releases"][0]["id"], "2025.01.0");
    assert_eq!(fx.get("/v1/catalog/models/Nope", &[]).status, StatusCode::NOT_FOUND);
    let r = fx.get("/v1/catalog/releases/2025.01.0", &[]);
    assert_eq!(r.status, StatusCode::OK);
    let r: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(r["components"].as_array().unwrap().len(), 3);
    assert_eq!(fx.get("/v1/catalog/releases/1999.01.0", &[]).status, StatusCode::NOT_FOUND);

    let plan = fx.post("/v1/catalog/plan", &format!(r#"{{"model":"{DL380}","inventory":{{"System ROM":"0.9"}}}}"#));
    assert_eq!(plan.status, StatusCode::OK, "{:?}", plan.body);
    let plan: serde_json::Value = serde_json::from_slice(&plan.body).unwrap();
    assert_eq!(plan["release"], "2025.01.0");
    assert_eq!(fx.post("/v1/catalog/plan", r#"{"model":"Unknown Box"}"#).status, StatusCode::NOT_FOUND);
    assert_eq!(fx.post("/v1/catalog/plan", "{").status, StatusCode::BAD_REQUEST);
    let huge = format!(r#"{{"model":"{DL380}","pad":"{}"}}"#, "x".repeat(300_000));
    assert_eq!(fx.post("/v1/catalog/plan", &huge).status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(fx.get("/v1/catalog/plan", &[]).status, StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn token_exchange_then_download() {
    let fx = Fixture::new();
    let resp = fx.post("/v1/tokens", r#"{"serial":"S1"}"#);
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let reply: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(reply["token_type"], "Bearer");
    assert_eq!(reply["scope"], "download");
    let token = reply["token"].as_str().unwrap();
    let dl = fx.get(&fx.big.hashed_target(), &[bearer(token), ("range", "bytes=0-9".into())]);
    assert_eq!(dl.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(dl.body, fx.big.bytes.slice(0..10));

    // Refusals say why without telling whether the serial exists.
    for body in [r#"{"serial":"S9"}"#, r#"{"serial":"NOPE"}"#] {
        let r = fx.post("/v1/tokens", body);
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["reason"], "unknown or expired serial");
    }
    let r = fx.post("/v1/tokens", r#"{"partner_credential":"nope","scope":"mirror"}"#);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Both together name an agreement that must cover the serial: here no such agreement.
    assert_eq!(fx.post("/v1/tokens", r#"{"serial":"S1","agreement":"A"}"#).status, StatusCode::FORBIDDEN);
    assert_eq!(fx.post("/v1/tokens", r#"{"serial":"S1","partner_credential":"c"}"#).status, StatusCode::BAD_REQUEST);
    assert_eq!(fx.post("/v1/tokens", r#"{"serial":"S1","extra":1}"#).status, StatusCode::BAD_REQUEST);
}

#[test]
fn health_and_metrics() {
    let fx = Fixture::new();
    assert_eq!(fx.get("/healthz", &[]).status, StatusCode::OK);
    assert_eq!(fx.get("/readyz", &[]).status, StatusCode::OK);
    assert_eq!(fx.get("/nowhere", &[]).status, StatusCode::NOT_FOUND);
    let t = crate::support::token(DL380);
    for _ in 0..3 {
        assert_eq!(
            fx.get(&fx.big.url(), &[bearer(&t), ("range", "bytes=0-999".into())]).status,
            StatusCode::PARTIAL_CONTENT
        );
    }
    assert_eq!(fx.get(&fx.big.url(), &[]).status, StatusCode::UNAUTHORIZED);
    assert_eq!(fx.metric("fwrepo_http_requests_total{route=\"blobs\",status=\"206\"}"), 3);
    assert_eq!(fx.metric("fwrepo_http_requests_total{route=\"blobs\",status=\"401\"}"), 1);
    assert_eq!(fx.metric("fwrepo_http_requests_total{route=\"other\",status=\"404\"}"), 1);
    assert_eq!(fx.metric("fwrepo_token_verifications_total{cache=\"miss\"}"), 1);
    assert_eq!(fx.metric("fwrepo_token_verifications_total{cache=\"hit\"}"), 2);
    assert_eq!(fx.metric("fwrepo_auth_failures_total{reason=\"missing_token\"}"), 1);
    assert!(fx.metric("fwrepo_http_response_body_bytes_total") >= 3000);
    // The scrape's own connection is open while it renders.
    assert!(fx.metric("fwrepo_open_connections") >= 1);
}
