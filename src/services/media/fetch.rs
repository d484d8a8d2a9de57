//! The vetted download of a remote video (MR S1): `http`/`https` only, the host resolved once and
//! refused if any address is not public (unless the host is on the configured allow-list), the
//! connection pinned to the vetted address, every redirect vetted again, the size capped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use futures::StreamExt;
use reqwest::Url;
use tokio::io::AsyncWriteExt;

const MAX_REDIRECTS: usize = 3;

#[derive(Debug, PartialEq, Eq)]
pub enum FetchError {
    /// Scheme, host or address refused, or too many redirects.
    NotAllowed,
    TooLarge,
    /// Connection or HTTP failure.
    Failed,
}

pub struct Policy<'a> {
    /// Lower-cased `host` or `host:port` entries that may resolve to any address.
    pub allow_hosts: &'a [String],
    pub max_bytes: u64,
}

/// Download `url` into `dest` under the rules of the module header.
pub async fn download(
    url: &str,
    policy: &Policy<'_>,
    dest: &mut tokio::fs::File,
) -> Result<(), FetchError> {
    let mut url = Url::parse(url).map_err(|_| FetchError::NotAllowed)?;
    for _ in 0..=MAX_REDIRECTS {
        let addr = vet(&url, policy).await?;
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(5));
        if let Some(url::Host::Domain(d)) = url.host() {
            client = client.resolve(d, addr);
        }
        let client = client.build().map_err(|_| FetchError::Failed)?;
        let resp = client
            .get(url.clone())
            .send()
            .await
            .map_err(|_| FetchError::Failed)?;
        if resp.status().is_redirection() {
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or(FetchError::Failed)?;
            url = next;
            continue;
        }
        if !resp.status().is_success() {
            return Err(FetchError::Failed);
        }
        if resp.content_length().is_some_and(|n| n > policy.max_bytes) {
            return Err(FetchError::TooLarge);
        }
        let mut written = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| FetchError::Failed)?;
            written += chunk.len() as u64;
            if written > policy.max_bytes {
                return Err(FetchError::TooLarge);
            }
            dest.write_all(&chunk)
                .await
                .map_err(|_| FetchError::Failed)?;
        }
        dest.flush().await.map_err(|_| FetchError::Failed)?;
        return Ok(());
    }
    Err(FetchError::NotAllowed)
}

/// The address to connect to for `url`: resolved once; every address must be public unless the
/// host is allow-listed.
async fn vet(url: &Url, policy: &Policy<'_>) -> Result<SocketAddr, FetchError> {
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() {
        return Err(FetchError::NotAllowed);
    }
    if url.password().is_some() {
        return Err(FetchError::NotAllowed);
    }
    let port = url.port_or_known_default().ok_or(FetchError::NotAllowed)?;
    let host = url.host().ok_or(FetchError::NotAllowed)?;
    let host_text = match &host {
        url::Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => format!("[{ip}]"),
    };
    let allowed = policy
        .allow_hosts
        .iter()
        .any(|h| *h == host_text || *h == format!("{host_text}:{port}"));
    let addrs: Vec<SocketAddr> = match host {
        url::Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        url::Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        url::Host::Domain(d) => tokio::net::lookup_host((d, port))
            .await
            .map_err(|_| FetchError::NotAllowed)?
            .collect(),
    };
    if addrs.is_empty() || (!allowed && !addrs.iter().all(|a| is_public(a.ip()))) {
        return Err(FetchError::NotAllowed);
    }
    Ok(addrs[0])
}

/// Globally routable unicast: not loopback, private, CGNAT, link-local (incl. the cloud metadata
/// address), multicast, broadcast, unspecified, reserved or documentation ranges — nor an
/// IPv4-mapped, -compatible, NAT64 or 6to4 form of one.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 192 && b == 88 && c == 99)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // ::/96 (IPv4-compatible, also :: and ::1) and NAT64 64:ff9b::/96 carry an IPv4 address.
    if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    !((s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 local use 64:ff9b:1::/48
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only
        || (s[0] & 0xe000) != 0x2000) // outside global unicast 2000::/3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:0101::1",
        ] {
            let ip: IpAddr = bad.parse().expect("address");
            assert!(!is_public(ip), "{bad} must be refused");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "172.32.0.1",
        ] {
            let ip: IpAddr = good.parse().expect("address");
            assert!(is_public(ip), "{good} is public");
        }
    }

    #[tokio::test]
    async fn non_http_schemes_and_private_hosts_are_refused() {
        let policy = Policy {
            allow_hosts: &[],
            max_bytes: 1,
        };
        for bad in [
            "file:///etc/passwd",
            "gopher://example.com/",
            "ftp://example.com/x.mp4",
            "http://127.0.0.1/x.mp4",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/x.mp4",
            "http://user:pw@example.com/x.mp4",
            "http://localhost/x.mp4",
        ] {
            let url = Url::parse(bad).expect("url");
            assert_eq!(
                vet(&url, &policy).await,
                Err(FetchError::NotAllowed),
                "{bad}"
            );
        }
    }
}
