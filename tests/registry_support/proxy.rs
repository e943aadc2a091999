//! A loopback proxy in front of a real registry that can misbehave on purpose
//! (429 with or without `Retry-After`, 5xx, delays past the client's timeout,
//! truncated or replaced bodies, wrong content types, extra headers), and can
//! page `tags/list` the way Docker Hub and GHCR do — `n`, `last` and a
//! `Link: <…>; rel="next"` header — over the registry's real answer, since
//! Distribution v2.8 ignores `n` and returns every tag at once. Every request
//! is logged with its arrival time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Request, Response};

use super::http::{self, Body, Server};
use super::registry::Registry;

#[derive(Clone, Debug)]
pub enum Fault {
    /// 429, with this `Retry-After` value (or none).
    TooManyRequests(Option<String>),
    /// Answer this status with a registry-style error body.
    Status(u16),
    /// Wait this long, then forward.
    Delay(Duration),
    /// Forward, but cut the body in the middle (Content-Length stays whole).
    Truncate,
    /// Forward, but send the body in chunks without a Content-Length.
    Chunked,
    /// Forward, but with this Content-Type.
    ContentType(String),
    /// Forward, adding this header (replacing one of the same name).
    Header(String, String),
    /// Answer this instead of forwarding.
    Replace {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

struct Rule {
    path_contains: String,
    method: Option<String>,
    fault: Fault,
    /// `None`: forever.
    remaining: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub at: Instant,
    pub status: u16,
}

struct State {
    upstream: String,
    client: reqwest::Client,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Logged>>,
    /// Page `tags/list` with at most this many tags per page.
    max_page: Option<usize>,
}

pub struct Proxy {
    server: Server,
    state: Arc<State>,
}

impl Proxy {
    /// Forwards everything to `upstream` (a plain-HTTP registry) unless a fault
    /// rule says otherwise.
    pub async fn start(upstream: &Registry) -> Proxy {
        Proxy::new(upstream.url.clone(), None).await
    }

    /// Like `start`, and pages `tags/list` with at most `max_page` tags.
    pub async fn paging(upstream: &Registry, max_page: usize) -> Proxy {
        Proxy::new(upstream.url.clone(), Some(max_page)).await
    }

    async fn new(upstream: String, max_page: Option<usize>) -> Proxy {
        let state = Arc::new(State {
            upstream,
            client: reqwest::Client::builder()
                .tls_backend_preconfigured(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .expect("tls")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                )
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(64)
                .build()
                .expect("proxy client"),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            max_page,
        });
        let handler_state = state.clone();
        let server = http::serve(Arc::new(move |req| {
            let state = handler_state.clone();
            Box::pin(async move { state.handle(req).await })
        }))
        .await;
        Proxy { server, state }
    }

    /// `127.0.0.1:port`
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// Apply `fault` to requests whose path contains `path_contains` (and whose
    /// method is `method`, if given), `times` times (`None`: always).
    pub fn inject(
        &self,
        path_contains: &str,
        method: Option<&str>,
        fault: Fault,
        times: Option<usize>,
    ) {
        self.state.rules.lock().expect("lock").push(Rule {
            path_contains: path_contains.to_string(),
            method: method.map(str::to_string),
            fault,
            remaining: times,
        });
    }

    pub fn clear_faults(&self) {
        self.state.rules.lock().expect("lock").clear();
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.log.lock().expect("lock").clone()
    }

    pub fn clear_log(&self) {
        self.state.log.lock().expect("lock").clear();
    }

    /// Requests whose path contains `needle`.
    pub fn count(&self, method: &str, needle: &str) -> usize {
        self.log()
            .iter()
            .filter(|l| l.method == method && l.path.contains(needle))
            .count()
    }
}

impl State {
    async fn handle(&self, req: Request<Bytes>) -> Response<Body> {
        let at = Instant::now();
        let method = req.method().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into());
        let fault = self.take_fault(&method, &path);
        let response = self.respond(req, fault).await;
        self.log.lock().expect("lock").push(Logged {
            method,
            path,
            at,
            status: response.status().as_u16(),
        });
        response
    }

    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().expect("lock");
        let rule = rules.iter_mut().find(|r| {
            path.contains(&r.path_contains)
                && r.method.as_deref().is_none_or(|m| m == method)
                && r.remaining != Some(0)
        })?;
        if let Some(n) = &mut rule.remaining {
            *n -= 1;
        }
        Some(rule.fault.clone())
    }

    async fn respond(&self, req: Request<Bytes>, fault: Option<Fault>) -> Response<Body> {
        match &fault {
            Some(Fault::TooManyRequests(retry_after)) => {
                let mut r = http::response(
                    429,
                    "application/json",
                    r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"too many requests"}]}"#,
                );
                if let Some(v) = retry_after {
                    r.headers_mut()
                        .insert("retry-after", v.parse().expect("header value"));
                }
                return r;
            }
            Some(Fault::Status(status)) => {
                return http::response(
                    *status,
                    "application/json",
                    format!(
                        r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected HTTP {status}"}}]}}"#
                    ),
                );
            }
            Some(Fault::Replace {
                status,
                headers,
                body,
            }) => {
                let mut b = Response::builder().status(*status);
                for (k, v) in headers {
                    b = b.header(k.as_str(), v.as_str());
                }
                return b.body(http::full(body.clone())).expect("response");
            }
            Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
            _ => {}
        }
        let is_head = req.method() == hyper::Method::HEAD;
        let (status, mut headers, body) = if self.max_page.is_some()
            && req.method() == hyper::Method::GET
            && req.uri().path().ends_with("/tags/list")
        {
            self.page(&req).await
        } else {
            self.forward(&req).await
        };
        match &fault {
            Some(Fault::ContentType(ct)) => {
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
                headers.push(("content-type".into(), ct.clone()));
            }
            Some(Fault::Header(k, v)) => {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
                headers.push((k.clone(), v.clone()));
            }
            _ => {}
        }
        let mut builder = Response::builder().status(status);
        for (k, v) in &headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if let Some(Fault::Truncate) = fault {
            let half = body.slice(..body.len() / 2);
            return builder
                .header("content-length", body.len().to_string())
                .body(http::cut_short(half))
                .expect("response");
        }
        if let Some(Fault::Chunked) = fault {
            let mid = body.len() / 2;
            let frames = futures::stream::iter(vec![
                Ok(hyper::body::Frame::data(body.slice(..mid))),
                Ok(hyper::body::Frame::data(body.slice(mid..))),
            ]);
            use http_body_util::BodyExt;
            return builder
                .body(http_body_util::StreamBody::new(frames).boxed())
                .expect("response");
        }
        if is_head {
            return builder.body(http::full(Bytes::new())).expect("response");
        }
        builder.body(http::full(body)).expect("response")
    }

    async fn forward(&self, req: &Request<Bytes>) -> (u16, Vec<(String, String)>, Bytes) {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("method");
        let mut b = self
            .client
            .request(method, format!("{}{path}", self.upstream));
        for (k, v) in req.headers() {
            if matches!(
                k.as_str(),
                "host" | "content-length" | "connection" | "transfer-encoding"
            ) {
                continue;
            }
            b = b.header(k.as_str(), v.as_bytes());
        }
        let resp = match b.body(req.body().clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                return (
                    502,
                    vec![],
                    Bytes::from(format!("proxy: upstream failed: {e}")),
                );
            }
        };
        let status = resp.status().as_u16();
        let keep_length = req.method() == hyper::Method::HEAD;
        let headers = resp
            .headers()
            .iter()
            .filter(|(k, _)| {
                !matches!(k.as_str(), "connection" | "transfer-encoding")
                    && (keep_length || k.as_str() != "content-length")
            })
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = resp.bytes().await.unwrap_or_default();
        (status, headers, body)
    }

    /// `tags/list` paged Docker Hub style over the registry's full answer.
    async fn page(&self, req: &Request<Bytes>) -> (u16, Vec<(String, String)>, Bytes) {
        let max_page = self.max_page.unwrap_or(usize::MAX);
        let query = http::query_pairs(req);
        let n = query
            .iter()
            .find(|(k, _)| k == "n")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(max_page)
            .min(max_page)
            .max(1);
        let last = query
            .iter()
            .find(|(k, _)| k == "last")
            .map(|(_, v)| v.clone());
        // Ask upstream for everything (Distribution 2.8 ignores n/last anyway).
        let mut upstream = Request::builder()
            .method("GET")
            .uri(req.uri().path())
            .body(Bytes::new())
            .expect("request");
        *upstream.headers_mut() = req.headers().clone();
        let (status, headers, body) = self.forward(&upstream).await;
        if status != 200 {
            return (status, headers, body);
        }
        #[derive(serde::Deserialize)]
        struct TagList {
            name: String,
            tags: Vec<String>,
        }
        let list: TagList = serde_json::from_slice(&body).expect("registry tags/list JSON");
        let start = match &last {
            Some(l) => list
                .tags
                .iter()
                .position(|t| t == l)
                .map_or(list.tags.len(), |i| i + 1),
            None => 0,
        };
        let end = (start + n).min(list.tags.len());
        let page = &list.tags[start..end];
        let mut headers = vec![(
            "content-type".to_string(),
            "application/json; charset=utf-8".to_string(),
        )];
        if end < list.tags.len()
            && let Some(last) = page.last()
        {
            headers.push((
                "link".into(),
                format!(
                    "</v2/{}/tags/list?last={last}&n={n}>; rel=\"next\"",
                    list.name
                ),
            ));
        }
        let body = serde_json::json!({"name": list.name, "tags": page}).to_string();
        (200, headers, Bytes::from(body))
    }
}

/// The largest number of requests that arrived within any `window`.
pub fn max_in_window(log: &[Logged], window: Duration) -> usize {
    let mut times: Vec<Instant> = log.iter().map(|l| l.at).collect();
    times.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}
