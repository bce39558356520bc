//! The HTTP transport: reqwest over rustls (ring), HTTP/2 where the peer offers it, pooled
//! keep-alive connections, an optional extra root CA, and a timeout on every request.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::header;

use crate::error::{Error, Result};
use crate::transport::{Body, BodySource, Method, Request, Response, Transport, WireCounter};

/// Settings of an [`HttpTransport`].
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Longest a TCP + TLS connect may take.
    pub connect_timeout: Duration,
    /// Longest a whole request may take, body included.
    pub request_timeout: Duration,
    /// Longest a read may wait for the next bytes.
    pub read_timeout: Duration,
    /// PEM certificates to trust (a partner's private CA, `--cacert`).
    pub ca_pem: Option<Vec<u8>>,
    /// Trust only `ca_pem`, not the system's roots (as `curl --cacert` does).
    pub ca_only: bool,
    /// Idle connections kept per host.
    pub max_idle_per_host: usize,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(600),
            read_timeout: Duration::from_secs(30),
            ca_pem: None,
            ca_only: false,
            max_idle_per_host: 8,
            user_agent: concat!("fwrepo-fetch/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// A peer reached over HTTP(S) at a base URL; request paths are appended to it.
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    base: String,
    wire: WireCounter,
    /// Reported with timeouts (reqwest does not say which of its timeouts fired).
    read_timeout: Duration,
}

impl HttpTransport {
    /// A transport for the peer at `base` (`https://host[:port][/prefix]`).
    pub fn new(base: &str, opts: &HttpOptions) -> Result<HttpTransport> {
        let bad = |reason: String| Error::Client { reason };
        let url = reqwest::Url::parse(base).map_err(|e| bad(format!("base URL {base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad(format!("base URL {base:?}: want http(s)://host[:port][/prefix]")));
        }
        // reqwest's rustls needs a process-wide provider; ring is the one the workspace builds.
        // Failing means one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .read_timeout(opts.read_timeout)
            .pool_max_idle_per_host(opts.max_idle_per_host)
            .user_agent(opts.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tls_backend_rustls()
            .tcp_nodelay(true);
        if let Some(pem) = &opts.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| bad(format!("CA certificates: {e}")))?;
            if certs.is_empty() {
                return Err(bad("CA file holds no PEM certificate".into()));
            }
            b = if opts.ca_only { b.tls_certs_only(certs) } else { b.tls_certs_merge(certs) };
        }
        let client = b.build().map_err(|e| bad(e.to_string()))?;
        Ok(HttpTransport {
            client,
            base: base.trim_end_matches('/').to_owned(),
            wire: WireCounter::default(),
            read_timeout: opts.read_timeout,
        })
    }
}

fn transport_error(path: &str, e: &reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() {
        return Error::Timeout { path: path.to_owned(), after: timeout };
    }
    // The chain says what failed (refused, reset, TLS); the top line alone rarely does.
    let mut reason = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        src = s.source();
    }
    Error::Transport { path: path.to_owned(), reason }
}

impl Transport for HttpTransport {
    fn send(&self, req: Request) -> impl Future<Output = Result<Response>> + Send {
        let url = format!("{}{}", self.base, req.path);
        let mut b = match req.method {
            Method::Get => self.client.get(&url),
            Method::Post => self.client.post(&url),
        };
        if let Some(r) = req.range_header() {
            b = b.header(header::RANGE, r);
        }
        if let Some(tag) = &req.if_none_match {
            b = b.header(header::IF_NONE_MATCH, tag.as_str());
        }
        if let Some(token) = &req.bearer {
            b = b.bearer_auth(token);
        }
        if let Some(json) = req.json.clone() {
            b = b.header(header::CONTENT_TYPE, "application/json").body(json);
        }
        let wire = self.wire.clone();
        let timeout = self.read_timeout;
        async move {
            wire.add_request();
            let resp = b.send().await.map_err(|e| transport_error(&req.path, &e, timeout))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            wire.add_head(status, &headers);
            let source = ReqwestBody { resp, path: req.path, timeout };
            Ok(Response { status, headers, body: Body::new(Box::new(source), wire) })
        }
    }

    fn wire(&self) -> &WireCounter {
        &self.wire
    }
}

struct ReqwestBody {
    resp: reqwest::Response,
    path: String,
    timeout: Duration,
}

impl BodySource for ReqwestBody {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Result<Option<Bytes>>> + Send + '_>> {
        Box::pin(async move { self.resp.chunk().await.map_err(|e| transport_error(&self.path, &e, self.timeout)) })
    }
}
