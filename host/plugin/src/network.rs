//! Where a plugin may connect: allowed-host patterns (`scheme://host[:port]`),
//! IP networks (CIDR) and public versus non-public addresses. The
//! vocabulary `plugin.toml` declares in ([`crate::manifest`]) and the
//! capability checks judge with ([`crate::capabilities`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use url::Url;

/// An allowed-host pattern: `scheme://host[:port]`.
///
/// - `scheme` is `http`, `https` or `*`;
/// - `host` is a name, an IP literal, or `*.example.com` (any sub-domain,
///   not `example.com` itself);
/// - `port` is a number or `*`; omitted means the scheme's default port.
///
/// In a manifest, `{{config.KEY}}` stands for the origin of the URL in the
/// non-secret setting `KEY` (for products hosted at a customer-chosen
/// address, like an on-premises ConnectWise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// A literal pattern.
    Origin {
        /// `http`, `https` or `*`.
        scheme: String,
        /// Lower-case host; may start with `*.`.
        host: String,
        /// `None` for `*`; otherwise the explicit or default port.
        port: Option<u16>,
    },
    /// `{{config.KEY}}`.
    ConfigOrigin(String),
}

/// A host pattern that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pattern:?} is not an allowed-host pattern: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// Why, and what to write instead.
    pub reason: String,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl HostPattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// [`PatternError`] saying what form is expected.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let fail = |reason: &str| PatternError {
            pattern: pattern.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = pattern.trim();
        if let Some(inner) = trimmed
            .strip_prefix("{{")
            .and_then(|rest| rest.strip_suffix("}}"))
        {
            let key = inner
                .trim()
                .strip_prefix("config.")
                .ok_or_else(|| fail("templates have the form {{config.KEY}}"))?;
            if key.is_empty() {
                return Err(fail("templates have the form {{config.KEY}}"));
            }
            return Ok(HostPattern::ConfigOrigin(key.to_owned()));
        }
        if trimmed == "*" || trimmed == "*://*" || trimmed == "*://*:*" {
            return Err(fail(
                "allowing every host would remove the network sandbox; list the hosts the plugin talks to",
            ));
        }
        let (scheme, rest) = trimmed
            .split_once("://")
            .ok_or_else(|| fail("write scheme://host[:port], e.g. https://api.example.com"))?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https" | "*") {
            return Err(fail("the scheme must be http, https or *"));
        }
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(fail(
                "give only scheme://host[:port], without a path, query or user",
            ));
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (ip, after) = bracketed.split_once(']').ok_or_else(|| {
                fail("an IPv6 host is written in brackets, e.g. http://[::1]:8080")
            })?;
            (ip.to_owned(), after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty() || host == "*" {
            return Err(fail(
                "the host must be a name, an IP address or *.domain; a bare * is not allowed",
            ));
        }
        let wildcard_ok = match host.strip_prefix("*.") {
            Some(domain) => !domain.contains('*'),
            None => !host.contains('*'),
        };
        if !wildcard_ok {
            return Err(fail(
                "a wildcard may only lead the host, as in *.example.com",
            ));
        }
        let port = match port {
            None => default_port(&scheme),
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| fail("the port must be a number or *"))?,
            ),
        };
        Ok(HostPattern::Origin { scheme, host, port })
    }

    /// The config key of a `{{config.KEY}}` pattern.
    pub fn config_key(&self) -> Option<&str> {
        match self {
            HostPattern::ConfigOrigin(key) => Some(key),
            HostPattern::Origin { .. } => None,
        }
    }

    /// Replaces `{{config.KEY}}` with the origin of the configured URL;
    /// `None` when the setting is missing or is not an http(s) URL.
    pub fn resolve(&self, config: &BTreeMap<String, String>) -> Option<HostPattern> {
        match self {
            HostPattern::Origin { .. } => Some(self.clone()),
            HostPattern::ConfigOrigin(key) => {
                let url = Url::parse(config.get(key)?.trim()).ok()?;
                let scheme = url.scheme().to_owned();
                if !matches!(scheme.as_str(), "http" | "https") {
                    return None;
                }
                Some(HostPattern::Origin {
                    host: url
                        .host_str()?
                        .trim_matches(['[', ']'])
                        .to_ascii_lowercase(),
                    port: url.port_or_known_default(),
                    scheme,
                })
            }
        }
    }

    /// Whether `url` is allowed by this (resolved) pattern.
    pub fn matches(&self, url: &Url) -> bool {
        let HostPattern::Origin { scheme, host, port } = self else {
            return false;
        };
        let Some(url_host) = url.host_str() else {
            return false;
        };
        let url_host = url_host.trim_matches(['[', ']']).to_ascii_lowercase();
        let scheme_ok = scheme == "*" || scheme == url.scheme();
        let host_ok = match host.strip_prefix("*.") {
            Some(domain) => url_host
                .strip_suffix(domain)
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1),
            None => *host == url_host,
        };
        let port_ok = port.is_none() || *port == url.port_or_known_default();
        scheme_ok && host_ok && port_ok
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::ConfigOrigin(key) => write!(f, "{{{{config.{key}}}}}"),
            HostPattern::Origin { scheme, host, port } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                match port {
                    None => write!(f, "{scheme}://{host}:*"),
                    Some(p) if Some(*p) == default_port(scheme) => write!(f, "{scheme}://{host}"),
                    Some(p) => write!(f, "{scheme}://{host}:{p}"),
                }
            }
        }
    }
}

/// The origin of `url` as `scheme://host[:port]`, the form to put in a
/// manifest or grant.
pub fn origin_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(IpNet);

impl Network {
    /// Parses `addr[/prefix]`.
    ///
    /// # Errors
    /// A message saying what form is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if let Ok(net) = trimmed.parse::<IpNet>() {
            return Ok(Self(net));
        }
        // Not CIDR: a bare address, or say which half is wrong.
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP network like 127.0.0.1/32 or ::1/128"))?;
        match prefix {
            None => Ok(Self(IpNet::from(addr))),
            Some(_) => {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                Err(format!("{text:?} has a prefix length outside 0..={max}"))
            }
        }
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Whether `ip` is not a public unicast address: loopback, private,
/// link-local, carrier-grade NAT, unique-local, multicast, unspecified,
/// broadcast or documentation. Such addresses are refused unless granted
/// (SSRF protection: a plugin must not reach the MSP's internal network or
/// cloud metadata endpoints by accident or on purpose).
///
/// Kept by hand (sandbox reason): std's `IpAddr::is_global` is unstable, and
/// this list is the SSRF boundary, so it stays short and readable here.
pub fn is_non_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b))
                || a == 0
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URL")
    }

    #[test]
    fn patterns_match_as_documented() {
        let cases = [
            (
                "https://api.example.com",
                "https://api.example.com/v1/x",
                true,
            ),
            (
                "https://api.example.com",
                "https://api.example.com:443/x",
                true,
            ),
            ("https://api.example.com", "http://api.example.com/x", false),
            (
                "https://api.example.com",
                "https://api.example.com:8443/x",
                false,
            ),
            ("https://*.example.com", "https://eu.example.com/x", true),
            ("https://*.example.com", "https://a.b.example.com/x", true),
            ("https://*.example.com", "https://example.com/x", false),
            ("https://*.example.com", "https://evilexample.com/x", false),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/x", true),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8081/x", false),
            ("http://127.0.0.1:*", "http://127.0.0.1:9999/x", true),
            ("*://api.example.com", "http://api.example.com/x", true),
            ("http://[::1]:8080", "http://[::1]:8080/x", true),
        ];
        for (pattern, target, expected) in cases {
            let parsed = HostPattern::parse(pattern).expect(pattern);
            assert_eq!(
                parsed.matches(&url(target)),
                expected,
                "{pattern} vs {target}"
            );
        }
    }

    #[test]
    fn bad_patterns_say_what_to_write() {
        let cases = [
            ("*", "remove the network sandbox"),
            ("api.example.com", "write scheme://host[:port]"),
            ("ftp://x.com", "the scheme must be http, https or *"),
            ("https://x.com/path", "without a path"),
            ("https://a.*.com", "a wildcard may only lead the host"),
            ("https://x.com:http", "the port must be a number"),
            ("{{secret.key}}", "templates have the form {{config.KEY}}"),
        ];
        for (pattern, expected) in cases {
            let error = HostPattern::parse(pattern).expect_err(pattern);
            assert!(error.to_string().contains(expected), "{pattern}: {error}");
        }
    }

    #[test]
    fn config_templates_resolve_to_the_configured_origin() {
        let mut config = BTreeMap::new();
        config.insert(
            "base_url".to_owned(),
            "http://127.0.0.1:4567/v1/".to_owned(),
        );
        let pattern = HostPattern::parse("{{config.base_url}}").expect("template");
        let resolved = pattern.resolve(&config).expect("configured");
        assert!(resolved.matches(&url("http://127.0.0.1:4567/v1/accounts")));
        assert!(!resolved.matches(&url("http://127.0.0.1:4568/v1/accounts")));
        assert_eq!(resolved.to_string(), "http://127.0.0.1:4567");
        assert!(pattern.resolve(&BTreeMap::new()).is_none());
    }

    #[test]
    fn non_public_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_non_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "20.190.0.1", "2606:4700::1111"] {
            assert!(!is_non_public(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net = Network::parse("127.0.0.0/8").expect("cidr");
        assert!(net.contains("127.9.9.9".parse().expect("ip")));
        assert!(!net.contains("128.0.0.1".parse().expect("ip")));
        let host = Network::parse("::1").expect("bare");
        assert!(host.contains("::1".parse().expect("ip")));
        assert!(Network::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn networks_judge_mapped_addresses_as_ipv4_and_name_bad_input() {
        let net = Network::parse(" 10.0.0.0/8 ").expect("cidr");
        assert!(net.contains("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!net.contains("::1".parse().expect("ip")));
        let cases = [
            ("10.0.0.0/33", "has a prefix length outside 0..=32"),
            ("::1/129", "has a prefix length outside 0..=128"),
            ("10.0.0.0/x", "has a prefix length outside 0..=32"),
            ("intranet", "is not an IP network like 127.0.0.1/32"),
            ("10.0.0/8", "is not an IP network like 127.0.0.1/32"),
        ];
        for (text, expected) in cases {
            let error = Network::parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
