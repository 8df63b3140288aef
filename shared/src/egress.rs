//! The address guard of every request inferq makes on a client's behalf (inputs by URL,
//! webhooks): only `http` and `https`, and never to an address inside the deployment
//! (loopback, private, link-local, unique-local, carrier-grade NAT, multicast, unspecified,
//! documentation and benchmark ranges, and the IPv4-mapped IPv6 forms of all of them) unless
//! `INFERQ_FETCH_ALLOW` names the host or a network holding the address.
//!
//! This module decides; the worker's HTTP client applies it to every address a host resolves to
//! and connects only to checked addresses (there is no second lookup to rebind). The API uses
//! the same rules at submission for what it can tell without a lookup: the URL's form, an IP
//! literal, `localhost`. Only the API reads `INFERQ_FETCH_ALLOW`: it writes its list with each
//! job (`Queue::with_fetch_allow`), and the worker guards that job's fetches and webhook
//! deliveries with the list the job carries, so the two sides cannot disagree.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
pub use url::Url;

/// Longest URL accepted in a request (an input's `url`, a webhook's).
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL, or not http(s): `invalid_url`.
    #[error("{0}")]
    Invalid(String),
    /// An address the guard refuses: `url_not_allowed`.
    #[error("{0}")]
    NotAllowed(String),
}

/// The exceptions to the guard (`INFERQ_FETCH_ALLOW`): host names (matched exactly, case
/// insensitively) and networks in CIDR form (`10.0.0.0/8`) or single addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

impl FromStr for Allow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut allow = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if let Ok(net) = item.parse::<IpNet>() {
                allow.nets.push(net);
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                allow.nets.push(IpNet::from(ip));
            } else if item.contains('/') {
                return Err(format!("'{item}' is not a network in CIDR form"));
            } else {
                allow
                    .hosts
                    .push(item.trim_matches(['[', ']']).to_ascii_lowercase());
            }
        }
        Ok(allow)
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .hosts
            .iter()
            .cloned()
            .chain(self.nets.iter().map(IpNet::to_string))
            .collect();
        f.write_str(&items.join(","))
    }
}

impl Allow {
    /// Whether a connection to `ip`, reached through the URL host `host`, is permitted.
    pub fn permits(&self, host: &str, ip: IpAddr) -> bool {
        is_public(ip)
            || self.nets.iter().any(|n| n.contains(&ip))
            || self.names(host)
            // An IPv4-mapped IPv6 address is the IPv4 address it carries.
            || canonical(ip) != ip && self.nets.iter().any(|n| n.contains(&canonical(ip)))
    }

    fn names(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']).trim_end_matches('.');
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Checks a URL as far as it can be checked without a DNS lookup: its form and scheme,
    /// and the host when it is an IP literal or `localhost`. Returns it parsed.
    pub fn check_url(&self, raw: &str) -> Result<Url, UrlError> {
        let url = parse(raw)?;
        let host = url.host_str().unwrap_or_default();
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        let loopback_name = {
            let h = host.trim_end_matches('.').to_ascii_lowercase();
            h == "localhost" || h.ends_with(".localhost")
        };
        let refused = match ip {
            Some(ip) => !self.permits(host, ip),
            None => loopback_name && !self.names(host),
        };
        if refused {
            return Err(refused_host(host));
        }
        Ok(url)
    }
}

/// The error for a host the guard refuses.
pub fn refused_host(host: &str) -> UrlError {
    UrlError::NotAllowed(format!(
        "'{host}' is a loopback, private or otherwise internal address; INFERQ_FETCH_ALLOW \
         can allow it"
    ))
}

/// Parses an absolute `http` or `https` URL with a host.
pub fn parse(raw: &str) -> Result<Url, UrlError> {
    if raw.len() > MAX_URL_LEN {
        return Err(UrlError::Invalid(format!(
            "the URL is longer than {MAX_URL_LEN} characters"
        )));
    }
    let url =
        Url::parse(raw).map_err(|e| UrlError::Invalid(format!("'{raw}' is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Invalid(format!(
            "'{}' URLs are not supported; use http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::Invalid(format!("'{raw}' has no host")));
    }
    Ok(url)
}

/// The IPv4 address an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) carries, else `ip`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is an address on the public internet: not loopback, private, link-local,
/// unique-local, carrier-grade NAT, multicast, unspecified, broadcast, documentation,
/// benchmarking or otherwise reserved; IPv4-mapped and IPv4-compatible forms count as the
/// IPv4 address they carry.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::a.b.c.d) reach IPv4.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[..6] == [0; 6] && !ip.is_loopback()) {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return !ip.is_unspecified() && public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0) // benchmarking
        || s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        for internal in [
            "127.0.0.1",
            "127.8.9.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip(internal)), "{internal}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn the_allow_list_takes_hosts_networks_and_addresses() {
        let allow: Allow = "127.0.0.1, 10.0.0.0/8,Files.Internal".parse().unwrap();
        assert!(allow.permits("x", ip("127.0.0.1")));
        assert!(allow.permits("x", ip("::ffff:127.0.0.1")));
        assert!(!allow.permits("x", ip("127.0.0.2")));
        assert!(allow.permits("x", ip("10.200.0.1")));
        assert!(allow.permits("files.internal", ip("192.168.0.9")));
        assert!(!allow.permits("other.internal", ip("192.168.0.9")));
        assert!("10.0.0.0/99".parse::<Allow>().is_err());
        assert_eq!(allow.to_string(), "files.internal,127.0.0.1/32,10.0.0.0/8");
    }

    #[test]
    fn urls_are_checked_without_a_lookup() {
        let none = Allow::default();
        assert!(matches!(
            none.check_url("ftp://example.com/x"),
            Err(UrlError::Invalid(_))
        ));
        assert!(matches!(
            none.check_url("not a url"),
            Err(UrlError::Invalid(_))
        ));
        assert!(matches!(
            none.check_url("file:///etc/passwd"),
            Err(UrlError::Invalid(_))
        ));
        for refused in [
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://LOCALHOST./x",
            "http://a.localhost/x",
            "http://[::1]/x",
            "http://[::ffff:7f00:1]/x",
            "http://2130706433/x",
            "http://0x7f.1/x",
            "https://169.254.169.254/latest/meta-data",
        ] {
            assert!(
                matches!(none.check_url(refused), Err(UrlError::NotAllowed(_))),
                "{refused}"
            );
        }
        // A host name is resolved (and checked) by the worker.
        assert!(none.check_url("https://example.com/a.npy").is_ok());
        let allow: Allow = "127.0.0.1,localhost".parse().unwrap();
        assert!(allow.check_url("http://127.0.0.1:9/x").is_ok());
        assert!(allow.check_url("http://localhost:9/x").is_ok());
    }
}
