//! The 0.2 imports, implemented by the 0.1 ones: the interfaces are the same
//! word for word, only the package version in their names differs, so each
//! 0.2 trait converts its arguments, calls the 0.1 implementation in
//! [`crate::host`] / [`crate::http`] and converts the answer back. One
//! implementation means one set of capability checks, limits and redaction.

use wasmtime::Result as WasmResult;
use wasmtime::component::Resource;

use super::{clock, config, http, log, progress, secrets, types};
use crate::host::{HostState, SecretHandle};
use crate::wit::since_v0_1_0 as v1;

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> WasmResult<()> {
        let level = match level {
            log::Level::Trace => v1::log::Level::Trace,
            log::Level::Debug => v1::log::Level::Debug,
            log::Level::Info => v1::log::Level::Info,
            log::Level::Warn => v1::log::Level::Warn,
            log::Level::Error => v1::log::Level::Error,
        };
        v1::log::Host::log(self, level, message)
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> WasmResult<Option<String>> {
        v1::config::Host::get(self, key)
    }
}

impl secrets::HostSecret for HostState {
    fn name(&mut self, secret: Resource<SecretHandle>) -> WasmResult<String> {
        v1::secrets::HostSecret::name(self, secret)
    }

    fn drop(&mut self, secret: Resource<SecretHandle>) -> WasmResult<()> {
        v1::secrets::HostSecret::drop(self, secret)
    }
}

impl secrets::Host for HostState {
    fn get(
        &mut self,
        name: String,
    ) -> WasmResult<Result<Resource<SecretHandle>, types::ConnectorError>> {
        Ok(v1::secrets::Host::get(self, name)?.map_err(raise_error))
    }
}

impl progress::Host for HostState {
    fn report(&mut self, done: u64, total: Option<u64>, message: String) -> WasmResult<()> {
        v1::progress::Host::report(self, done, total, message)
    }
}

impl clock::Host for HostState {
    fn now_ms(&mut self) -> WasmResult<i64> {
        v1::clock::Host::now_ms(self)
    }

    fn as_of(&mut self) -> WasmResult<types::Date> {
        let date = v1::clock::Host::as_of(self)?;
        Ok(types::Date {
            year: date.year,
            month: date.month,
            day: date.day,
        })
    }
}

impl http::Host for HostState {
    async fn send(
        &mut self,
        request: http::Request,
    ) -> WasmResult<Result<http::Response, http::HttpError>> {
        let answer = v1::http::Host::send(self, lower_request(request)).await?;
        Ok(match answer {
            Ok(r) => Ok(http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(match e {
                v1::http::HttpError::Denied(m) => http::HttpError::Denied(m),
                v1::http::HttpError::Timeout => http::HttpError::Timeout,
                v1::http::HttpError::TooLarge(n) => http::HttpError::TooLarge(n),
                v1::http::HttpError::InvalidRequest(m) => http::HttpError::InvalidRequest(m),
                v1::http::HttpError::Transport(m) => http::HttpError::Transport(m),
            }),
        })
    }
}

/// A 0.1 connector error as 0.2's (the cases are the same).
pub(crate) fn raise_error(error: v1::types::ConnectorError) -> types::ConnectorError {
    use v1::types::ConnectorError as E;
    match error {
        E::AuthFailed(m) => types::ConnectorError::AuthFailed(m),
        E::RateLimited(ms) => types::ConnectorError::RateLimited(ms),
        E::NotFound(m) => types::ConnectorError::NotFound(m),
        E::InvalidConfig(m) => types::ConnectorError::InvalidConfig(m),
        E::Upstream(u) => types::ConnectorError::Upstream(types::UpstreamFailure {
            status: u.status,
            body: u.body,
            retryable: u.retryable,
        }),
        E::Internal(m) => types::ConnectorError::Internal(m),
    }
}

fn lower_fragments(fragments: Vec<http::Fragment>) -> Vec<v1::http::Fragment> {
    fragments
        .into_iter()
        .map(|fragment| match fragment {
            http::Fragment::Text(text) => v1::http::Fragment::Text(text),
            http::Fragment::Secret(s) => v1::http::Fragment::Secret(v1::http::SecretFragment {
                secret: s.secret,
                encoding: match s.encoding {
                    http::SecretEncoding::Raw => v1::http::SecretEncoding::Raw,
                    http::SecretEncoding::FormUrlencoded => {
                        v1::http::SecretEncoding::FormUrlencoded
                    }
                    http::SecretEncoding::JsonString => v1::http::SecretEncoding::JsonString,
                },
            }),
        })
        .collect()
}

fn lower_request(request: http::Request) -> v1::http::Request {
    v1::http::Request {
        method: match request.method {
            http::Method::Get => v1::http::Method::Get,
            http::Method::Head => v1::http::Method::Head,
            http::Method::Post => v1::http::Method::Post,
            http::Method::Put => v1::http::Method::Put,
            http::Method::Patch => v1::http::Method::Patch,
            http::Method::Delete => v1::http::Method::Delete,
        },
        url: request.url,
        headers: request
            .headers
            .into_iter()
            .map(|(name, value)| {
                let value = match value {
                    http::HeaderValue::Text(text) => v1::http::HeaderValue::Text(text),
                    http::HeaderValue::Composed(parts) => {
                        v1::http::HeaderValue::Composed(lower_fragments(parts))
                    }
                    http::HeaderValue::BasicAuth(c) => {
                        v1::http::HeaderValue::BasicAuth(v1::http::BasicCredentials {
                            user: lower_fragments(c.user),
                            password: lower_fragments(c.password),
                        })
                    }
                };
                (name, value)
            })
            .collect(),
        body: request.body.map(|body| match body {
            http::Body::Bytes(bytes) => v1::http::Body::Bytes(bytes),
            http::Body::Composed(parts) => v1::http::Body::Composed(lower_fragments(parts)),
        }),
        timeout_ms: request.timeout_ms,
    }
}
