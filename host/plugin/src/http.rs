//! The `http` import: the only network access a plugin has.
//!
//! Every request and every redirect hop is checked against the plugin's
//! declared-and-granted hosts; names resolve through a resolver that refuses
//! private and loopback addresses unless a network is granted (so a DNS name
//! cannot smuggle a request into the MSP's LAN); hop-by-hop and forbidden
//! headers are dropped; secrets are written in by the host; responses are
//! capped; and each request gets only the time left in the call. A request
//! cut off by the call's deadline stops the call (a timeout, reported as
//! such) rather than returning an ordinary error to the guest.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;
use wasmtime::Result as WasmResult;
use wasmtime::component::Resource;

use crate::capabilities::{Denied, EffectiveCapabilities};
use crate::host::{HostState, StopReason};
use crate::journal::{self, JournalOutcome, JournalledWrite};
use crate::limits::{
    HTTP_CONNECT_TIMEOUT, HTTP_POOL_IDLE_TIMEOUT, MAX_REDIRECTS, MAX_REQUEST_BYTES,
    MAX_REQUESTS_PER_CALL,
};
// The encodings a secret is written in; re-exported where they were first
// published.
use crate::secrets::SecretHandle;
pub use crate::secrets::{json_escape, percent_encode};
use crate::wit::since_v0_1_0::http;

/// Headers a plugin may not set: hop-by-hop headers, and headers the host's
/// HTTP stack must own (framing, target host).
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
    "content-length",
    "expect",
];

/// Resolves names for one plugin, refusing addresses it may not reach.
struct CheckedResolver {
    capabilities: Arc<EffectiveCapabilities>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let capabilities = self.capabilities.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut allowed = Vec::new();
            let mut refusal = None;
            for addr in resolved {
                match capabilities.check_address(&host, addr.ip()) {
                    Ok(()) => allowed.push(addr),
                    Err(denied) => refusal = Some(denied),
                }
            }
            if allowed.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = match refusal {
                    Some(denied) => Box::new(denied),
                    None => format!("{host} did not resolve to any address").into(),
                };
                return Err(error);
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client of one plugin: no automatic redirects (the host follows
/// them, checking each hop), no environment proxies (they would bypass the
/// address checks), names resolved through the checking resolver.
///
/// # Errors
/// When the TLS stack cannot be initialised.
pub(crate) fn client_for(
    plugin_id: &str,
    plugin_version: &str,
    capabilities: Arc<EffectiveCapabilities>,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(CheckedResolver { capabilities }))
        .user_agent(format!(
            "trueup/{} ({plugin_id}/{plugin_version})",
            env!("CARGO_PKG_VERSION")
        ))
        .pool_idle_timeout(HTTP_POOL_IDLE_TIMEOUT)
        .connect_timeout(HTTP_CONNECT_TIMEOUT)
        .build()
}

/// A request with secrets written in.
struct Rendered {
    method: reqwest::Method,
    headers: HeaderMap,
    /// Headers whose value carries a secret: dropped on a cross-origin hop.
    secret_headers: Vec<HeaderName>,
    body: Option<Vec<u8>>,
    body_has_secret: bool,
}

enum Failure {
    Http(http::HttpError),
    Denied(String),
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::Http(http::HttpError::InvalidRequest(message.into()))
}

impl HostState {
    fn secret_bytes(&self, handle: &Resource<SecretHandle>) -> Result<Vec<u8>, Failure> {
        let name = &self
            .table
            .get(handle)
            .map_err(|_| invalid("a secret handle is no longer valid"))?
            .name;
        self.options
            .secrets
            .get(name)
            .map(|v| v.expose().to_vec())
            .ok_or_else(|| invalid(format!("no value is stored for the secret {name:?}")))
    }

    fn render_fragments(&self, fragments: &[http::Fragment]) -> Result<(Vec<u8>, bool), Failure> {
        let mut out = Vec::new();
        let mut has_secret = false;
        for fragment in fragments {
            match fragment {
                http::Fragment::Text(text) => out.extend_from_slice(text.as_bytes()),
                http::Fragment::Secret(placed) => {
                    has_secret = true;
                    let value = self.secret_bytes(&placed.secret)?;
                    match placed.encoding {
                        http::SecretEncoding::Raw => out.extend_from_slice(&value),
                        http::SecretEncoding::FormUrlencoded => out.extend_from_slice(
                            percent_encode(&String::from_utf8_lossy(&value)).as_bytes(),
                        ),
                        http::SecretEncoding::JsonString => out.extend_from_slice(
                            json_escape(&String::from_utf8_lossy(&value)).as_bytes(),
                        ),
                    }
                }
            }
        }
        Ok((out, has_secret))
    }

    fn render(&self, request: &http::Request) -> Result<Rendered, Failure> {
        let method = match request.method {
            http::Method::Get => reqwest::Method::GET,
            http::Method::Head => reqwest::Method::HEAD,
            http::Method::Post => reqwest::Method::POST,
            http::Method::Put => reqwest::Method::PUT,
            http::Method::Patch => reqwest::Method::PATCH,
            http::Method::Delete => reqwest::Method::DELETE,
        };
        let mut headers = HeaderMap::new();
        let mut secret_headers = Vec::new();
        for (name, value) in &request.headers {
            let lower = name.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
                tracing::debug!(plugin = %self.plugin.manifest.id, header = %lower, "dropped a forbidden header");
                continue;
            }
            let header_name = HeaderName::from_str(&lower)
                .map_err(|_| invalid(format!("{name:?} is not a valid header name")))?;
            let (bytes, has_secret) = match value {
                http::HeaderValue::Text(text) => (text.as_bytes().to_vec(), false),
                http::HeaderValue::Composed(fragments) => self.render_fragments(fragments)?,
                http::HeaderValue::BasicAuth(credentials) => {
                    let (user, user_secret) = self.render_fragments(&credentials.user)?;
                    let (password, password_secret) =
                        self.render_fragments(&credentials.password)?;
                    let mut pair = user;
                    pair.push(b':');
                    pair.extend_from_slice(&password);
                    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                    (
                        format!("Basic {encoded}").into_bytes(),
                        user_secret || password_secret,
                    )
                }
            };
            let mut header_value = HeaderValue::from_bytes(&bytes).map_err(|_| {
                invalid(format!(
                    "the value of header {name:?} contains characters not allowed in HTTP headers"
                ))
            })?;
            if has_secret || lower == "authorization" {
                header_value.set_sensitive(true);
                secret_headers.push(header_name.clone());
            }
            headers.append(header_name, header_value);
        }
        let (body, body_has_secret) = match &request.body {
            None => (None, false),
            Some(http::Body::Bytes(bytes)) => (Some(bytes.clone()), false),
            Some(http::Body::Composed(fragments)) => {
                let (bytes, has_secret) = self.render_fragments(fragments)?;
                (Some(bytes), has_secret)
            }
        };
        if body.as_ref().is_some_and(|b| b.len() > MAX_REQUEST_BYTES) {
            return Err(invalid(format!(
                "the request body is larger than {MAX_REQUEST_BYTES} bytes"
            )));
        }
        Ok(Rendered {
            method,
            headers,
            secret_headers,
            body,
            body_has_secret,
        })
    }

    fn check_target(&self, url: &Url) -> Result<(), Denied> {
        self.plugin.capabilities.check_url(url)?;
        if let Some(host) = url.host_str() {
            // Literal addresses never reach the resolver: check them here.
            if let Ok(ip) = IpAddr::from_str(host.trim_matches(['[', ']'])) {
                self.plugin.capabilities.check_address(host, ip)?;
            }
        }
        Ok(())
    }

    async fn send_checked(
        &mut self,
        request: http::Request,
    ) -> WasmResult<Result<http::Response, Failure>> {
        self.call.requests += 1;
        if self.call.requests > MAX_REQUESTS_PER_CALL {
            return Ok(Err(Failure::Denied(format!(
                "plugin {} sent more than {MAX_REQUESTS_PER_CALL} requests in one call; return a page and continue from its cursor",
                self.plugin.manifest.id
            ))));
        }
        let url = match Url::parse(&request.url) {
            Ok(url) => url,
            Err(e) => return Ok(Err(invalid(format!("{:?} is not a URL: {e}", request.url)))),
        };
        let rendered = match self.render(&request) {
            Ok(r) => r,
            Err(failure) => return Ok(Err(failure)),
        };
        // A dry run reads; the one write it may send is a credential
        // exchange (a POST whose body carries a granted secret, e.g. an
        // OAuth client-credentials request), without which a connector
        // could not read at all on a fresh instance.
        let reads = matches!(request.method, http::Method::Get | http::Method::Head);
        let credential_exchange = request.method == http::Method::Post && rendered.body_has_secret;
        if self.call.read_only && !reads && !credential_exchange {
            return Ok(Err(Failure::Denied(format!(
                "{} is a dry run: only GET and HEAD requests (and a POST carrying a secret, a token exchange) may be sent",
                self.call.export
            ))));
        }
        let own_timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)));
        // A write-back's writes are journalled; a credential exchange is not
        // a write to the PSA's records (and its body holds a secret).
        let journal = match &self.call.journal {
            Some(hook) if !reads && !credential_exchange => hook.0.clone(),
            _ => return self.send_hops(url, rendered, own_timeout).await.0,
        };
        let seq = self.call.requests;
        let method = rendered.method.to_string();
        let logged_url = self.redact(&journal::redact_query(&url));
        let about = JournalledWrite {
            seq,
            method: method.clone(),
            url: logged_url.clone(),
            outcome: JournalOutcome::Sending,
            status: None,
            record_id: None,
            detail: None,
            at: self.journal_now(),
        };
        if let Err(e) = journal.record(about).await {
            // Never send a write whose sending is not on record first.
            return Ok(Err(Failure::Http(http::HttpError::Transport(format!(
                "the {method} to {} was not sent: the host could not journal it first ({e})",
                crate::network::origin_of(&url)
            )))));
        }
        let (result, verdict) = self.send_hops(url, rendered, own_timeout).await;
        let record = JournalledWrite {
            seq,
            method,
            url: logged_url,
            outcome: verdict.outcome,
            status: verdict.status,
            record_id: verdict.record_id,
            detail: verdict.detail.map(|d| self.redact(&d)),
            at: self.journal_now(),
        };
        if let Err(e) = journal.record(record).await {
            // The "sending" record stands and reads as "may have been
            // applied": the safe side.
            tracing::error!(plugin = %self.plugin.manifest.id, "could not journal a write's outcome: {e}");
        }
        result
    }

    fn journal_now(&self) -> chrono::DateTime<chrono::Utc> {
        self.options
            .clock
            .as_ref()
            .map_or_else(chrono::Utc::now, |clock| clock())
    }

    /// Sends `rendered` to `url`, following checked redirects; with the
    /// result, what the journal should say of it.
    async fn send_hops(
        &mut self,
        mut url: Url,
        mut rendered: Rendered,
        own_timeout: Option<Duration>,
    ) -> (WasmResult<Result<http::Response, Failure>>, Verdict) {
        let limit = self.plugin.limits.max_response_bytes;
        // Until a request has gone out, a failure means "not applied".
        let mut sent = false;
        let lost = |sent: bool, detail: String| Verdict {
            outcome: if sent {
                JournalOutcome::Unknown
            } else {
                JournalOutcome::NotApplied
            },
            status: None,
            record_id: None,
            detail: Some(detail),
        };
        for _hop in 0..=MAX_REDIRECTS {
            if let Err(denied) = self.check_target(&url) {
                let verdict = lost(sent, format!("refused by the host: {}", denied.0));
                return (Ok(Err(Failure::Denied(denied.0))), verdict);
            }
            let remaining = self.call.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                self.call.stopped = Some(StopReason::Deadline);
                return (
                    Err(wasmtime::Error::msg(
                        "the call's deadline passed before an HTTP request",
                    )),
                    lost(sent, "the call's deadline passed before sending".into()),
                );
            }
            let deadline_binds = own_timeout.is_none_or(|own| own >= remaining);
            let budget = own_timeout.map_or(remaining, |own| own.min(remaining));
            let mut builder = self
                .plugin
                .http
                .request(rendered.method.clone(), url.clone())
                .headers(rendered.headers.clone());
            if let Some(body) = &rendered.body {
                builder = builder.body(body.clone());
            }
            let outcome = tokio::time::timeout(budget, fetch(builder, limit)).await;
            let (status, headers, body) = match outcome {
                Err(_elapsed) if deadline_binds => {
                    self.call.stopped = Some(StopReason::Deadline);
                    return (
                        Err(wasmtime::Error::msg(format!(
                            "an HTTP request to {} was still running when the call's deadline passed",
                            crate::network::origin_of(&url)
                        ))),
                        lost(true, "timed out waiting for the answer".into()),
                    );
                }
                Err(_elapsed) => {
                    return (
                        Ok(Err(Failure::Http(http::HttpError::Timeout))),
                        lost(true, "timed out waiting for the answer".into()),
                    );
                }
                Ok(Err(FetchError::Denied(message))) => {
                    let verdict = lost(sent, format!("refused by the host: {message}"));
                    return (Ok(Err(Failure::Denied(message))), verdict);
                }
                Ok(Err(FetchError::TooLarge)) => {
                    return (
                        Ok(Err(Failure::Http(http::HttpError::TooLarge(limit)))),
                        lost(true, format!("the answer was larger than {limit} bytes")),
                    );
                }
                Ok(Err(FetchError::Transport { message, connect })) => {
                    let message = self.redact(&message);
                    // A connect failure happens before any byte of the
                    // request is written.
                    let verdict = lost(sent || !connect, message.clone());
                    return (
                        Ok(Err(Failure::Http(http::HttpError::Transport(message)))),
                        verdict,
                    );
                }
                Ok(Ok(response)) => response,
            };
            sent = true;
            let location = headers
                .iter()
                .find(|(k, _)| k == "location")
                .map(|(_, v)| v.clone());
            let next = match (status, location) {
                (301 | 302 | 303 | 307 | 308, Some(location)) => url.join(&location).ok(),
                _ => None,
            };
            let answered = |headers: &[(String, String)], body: &[u8]| Verdict {
                outcome: JournalOutcome::of_status(
                    status,
                    headers.iter().any(|(k, _)| k == "retry-after"),
                ),
                status: Some(status),
                record_id: journal::record_id(body),
                detail: None,
            };
            let Some(next) = next else {
                let verdict = answered(&headers, &body);
                return (
                    Ok(Ok(http::Response {
                        status,
                        headers,
                        body,
                    })),
                    verdict,
                );
            };
            let cross_origin = next.origin() != url.origin();
            let keeps_method = matches!(status, 307 | 308);
            if cross_origin && keeps_method && rendered.body_has_secret {
                // Re-sending a body that holds a secret to another origin
                // would hand the secret over: give the redirect to the guest.
                let verdict = answered(&headers, &body);
                return (
                    Ok(Ok(http::Response {
                        status,
                        headers,
                        body,
                    })),
                    verdict,
                );
            }
            if cross_origin {
                for name in &rendered.secret_headers {
                    rendered.headers.remove(name);
                }
                rendered.headers.remove(reqwest::header::COOKIE);
            }
            if status == 303
                || (matches!(status, 301 | 302) && rendered.method == reqwest::Method::POST)
            {
                rendered.method = reqwest::Method::GET;
                rendered.body = None;
                rendered.headers.remove(reqwest::header::CONTENT_TYPE);
            }
            url = next;
        }
        (
            Ok(Err(Failure::Http(http::HttpError::Transport(format!(
                "more than {MAX_REDIRECTS} redirects"
            ))))),
            lost(true, format!("more than {MAX_REDIRECTS} redirects")),
        )
    }
}

/// What the journal says of one sent write.
struct Verdict {
    outcome: JournalOutcome,
    status: Option<u16>,
    record_id: Option<String>,
    detail: Option<String>,
}

enum FetchError {
    Denied(String),
    TooLarge,
    /// `connect`: the connection was never made, so nothing was sent.
    Transport {
        message: String,
        connect: bool,
    },
}

type Fetched = (u16, Vec<(String, String)>, Vec<u8>);

async fn fetch(builder: reqwest::RequestBuilder, limit: u64) -> Result<Fetched, FetchError> {
    let mut response = builder.send().await.map_err(|e| classify(&e))?;
    let status = response.status().as_u16();
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(FetchError::TooLarge);
    }
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, body))
}

/// A reqwest error as the guest should see it: a refusal from the checking
/// resolver stays a refusal.
fn classify(error: &reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(denied) = current.downcast_ref::<Denied>() {
            return FetchError::Denied(denied.0.clone());
        }
        source = current.source();
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        message.push_str(": ");
        message.push_str(&current.to_string());
        source = current.source();
    }
    FetchError::Transport {
        message,
        connect: error.is_connect(),
    }
}

impl http::Host for HostState {
    async fn send(
        &mut self,
        request: http::Request,
    ) -> WasmResult<Result<http::Response, http::HttpError>> {
        let started = Instant::now();
        let result = self.send_checked(request).await;
        self.call.host_time += started.elapsed();
        Ok(match result? {
            Ok(response) => Ok(response),
            Err(Failure::Http(error)) => Err(error),
            Err(Failure::Denied(message)) => {
                self.deny(message.clone());
                Err(http::HttpError::Denied(message))
            }
        })
    }
}
