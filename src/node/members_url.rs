//! `[consensus] members_url` (PROTOCOL.md §11, bootstrap; issue 14 point 7): the node fetches its
//! cluster's member document over plain HTTP, verifies it ([`MemberDocument::verify`]) and hands
//! the members to its consensus service ([`Fetched`]), retrying with backoff for as long as the
//! URL is out of reach or serves something that does not verify. Until then the node is nobody's
//! member and starts no cluster of its own.
//!
//! Plain `http://` only, on `std::net::TcpStream`: the document is signed by a quorum of the
//! network's members, so the transport adds nothing to trust, and no HTTP or TLS dependency is
//! needed. A hostile or broken server cannot hang the node or bloat it: one deadline covers the
//! connect and the whole exchange, and the response is cut at [`MAX_RESPONSE_BYTES`]. Name
//! resolution (for a host name rather than an address) runs on the fetcher's own thread, without
//! a deadline of its own.

use crate::consensus::bootstrap::{Fetched, MAX_DOCUMENT_BYTES, MemberDocument};
use crate::consensus::ids::NetworkId;
use crate::consensus::service::SharedView;
use crate::engine::ShutdownHandle;
use crate::service::host::{HostHandle, ServiceTag};
use crate::session::{Identity, PeerRecord};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The deadline of one fetch: connect, request and the whole response.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(5);

/// The most response bytes read: the headers' room and the largest document.
pub const MAX_RESPONSE_BYTES: usize = MAX_DOCUMENT_BYTES + 16 * 1024;

/// The first wait before fetching again; it doubles up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_millis(500);

/// The longest wait between two fetches.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// An `http://HOST[:PORT][/PATH]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// The host as written (a name, an IPv4 address, or an IPv6 address without brackets).
    pub host: String,
    /// The port (80 when not written).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses a URL; the error says what is wrong and what to write instead.
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        if text.starts_with("https://") {
            return Err(format!(
                "\"{text}\": https is not supported; the member list is signed by the cluster, so \
                 serve it over http:// (and configure the network id to pin which network)"
            ));
        }
        let rest = text.strip_prefix("http://").ok_or_else(|| {
            format!(
                "\"{text}\" is not an http:// URL; write it like \"http://192.0.2.1:8080/members\""
            )
        })?;
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, "/"),
        };
        if path.contains('#')
            || path
                .chars()
                .any(|c| c.is_ascii_whitespace() || c.is_control())
        {
            return Err(format!(
                "\"{text}\": the path may hold no spaces, controls or #fragment"
            ));
        }
        if authority.contains('@') {
            return Err(format!(
                "\"{text}\": user names and passwords are not supported"
            ));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("\"{text}\": an IPv6 host needs its closing ]"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("\"{text}\" names no host"));
        }
        let port = match port {
            None => 80,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("\"{text}\": \"{port}\" is not a port (1 to 65535)"))?,
        };
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.host_header(), self.path)
    }
}

/// Fetches `url`'s body within `deadline`, reading at most `max` response bytes; a status other
/// than 200 is an error naming it.
pub fn fetch(url: &HttpUrl, deadline: Duration, max: usize) -> Result<Vec<u8>, String> {
    let end = Instant::now() + deadline;
    let left = || {
        end.checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {} s", deadline.as_secs_f64()))
    };
    let addresses: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .collect();
    let mut last = format!("{} resolves to no address", url.host);
    let mut stream = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {address}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: weft\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        url.path,
        url.host_header()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        // The deadline is for the whole exchange: a server that trickles bytes still ends.
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if response.len() > max {
                    return Err(format!("the response is over {max} bytes"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
    parse_response(&response)
}

/// The body of an HTTP/1.x response, its status checked (what a fetch returns).
pub fn parse_response(response: &[u8]) -> Result<Vec<u8>, String> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response has no end of headers")?;
    let head = std::str::from_utf8(&response[..split]).map_err(|_| "the headers are not text")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .ok_or_else(|| format!("not an HTTP/1 response: {status:.60}"))?;
    if code != "200" {
        return Err(format!("the server answered {status:.60}"));
    }
    let mut body = response[split + 4..].to_vec();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity")
        {
            return Err(format!(
                "transfer-encoding {value:.30} is not supported (HTTP/1.0 was asked)"
            ));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let length: usize = value.parse().map_err(|_| "a bad content-length")?;
            if body.len() < length {
                return Err("the response ended before its content-length".into());
            }
            body.truncate(length);
        }
    }
    Ok(body)
}

/// The address this node asks its id for and members see it at: `listen`, unless it is a
/// wildcard (0.0.0.0 or ::), which is useless to anyone else; then the local address the
/// system routes from toward `toward` (the first member), else toward a documentation address
/// (no packet is sent: connecting a UDP socket only picks the route), else loopback.
pub fn advertised(listen: SocketAddr, toward: Option<SocketAddr>) -> SocketAddr {
    if !listen.ip().is_unspecified() {
        return listen;
    }
    let target = toward.unwrap_or_else(|| {
        if listen.is_ipv4() {
            SocketAddr::from(([192, 0, 2, 1], 9))
        } else {
            SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 9))
        }
    });
    let bind: SocketAddr = if target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let local = UdpSocket::bind(bind)
        .and_then(|socket| socket.connect(target).map(|()| socket))
        .and_then(|socket| socket.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified());
    let ip = local.unwrap_or(if listen.is_ipv4() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
    });
    SocketAddr::new(ip, listen.port())
}

/// Stops the fetcher when dropped (the node stopped).
#[derive(Debug)]
pub struct Fetcher {
    stop: Arc<AtomicBool>,
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Why the node must stop (the trust root refused what it was shown).
pub type Fatal = Box<dyn std::error::Error + Send + Sync>;

/// Where a fetcher that must stop the node leaves the reason ([`crate::node::Node::run`]
/// returns it).
pub type FatalSlot = Arc<Mutex<Option<Fatal>>>;

/// Checks a verified document's network against the node's trust root (pinning it on the
/// first start, `node::trust::pin_document`): how the node trusts it now, or why it must stop.
pub type PinCheck = Box<dyn Fn(NetworkId) -> Result<&'static str, Fatal> + Send>;

/// What the fetcher checks a verified document's network with, and how it stops the node
/// when the document is of another network than the one configured or pinned.
pub struct UrlTrust {
    /// The check.
    pub pin: PinCheck,
    /// The consensus view, whose trust label the pin sets.
    pub view: SharedView,
    /// Where the reason goes when the node must stop.
    pub fatal: FatalSlot,
    /// Stops the node.
    pub stop: ShutdownHandle,
}

/// Starts the thread that fetches `url` until a document verifies, checks its network against
/// the trust root (pinning it on the first start; another network stops the node: exit 2),
/// then sends the consensus service its members and ends.
pub fn spawn(
    url: HttpUrl,
    trust: UrlTrust,
    identity: &Identity,
    listen: SocketAddr,
    services: HostHandle,
) -> std::io::Result<Fetcher> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let identity = identity.clone();
    std::thread::Builder::new()
        .name("weft-members-url".into())
        .spawn(move || {
            let mut wait = FIRST_RETRY;
            let mut failures = 0u32;
            while !stopped.load(Ordering::Relaxed) {
                // The document verifies on its own first (a broken or tampered one is fetched
                // again); only then is its network held against the trust root.
                let fetched = fetch(&url, FETCH_DEADLINE, MAX_RESPONSE_BYTES).and_then(|body| {
                    MemberDocument::from_text(&body)
                        .and_then(|doc| doc.verify(None))
                        .map_err(|e| e.to_string())
                });
                match fetched {
                    Ok(verified) => {
                        match (trust.pin)(verified.network) {
                            Ok(label) => {
                                if let Ok(mut view) = trust.view.lock() {
                                    view.network_trust = label;
                                }
                            }
                            Err(error) => {
                                tracing::error!(%error, "the members URL serves another network; stopping");
                                if let Ok(mut slot) = trust.fatal.lock() {
                                    *slot = Some(error);
                                }
                                trust.stop.shutdown();
                                return;
                            }
                        }
                        let toward = verified.records.iter().find_map(|r| r.addresses.first());
                        let own = PeerRecord::sign(&identity, &[advertised(listen, toward.copied())]);
                        let command = Box::new(Fetched { verified, own });
                        if !services.send(ServiceTag::CONSENSUS, command) {
                            tracing::warn!("the node's services stopped before the members arrived");
                        }
                        return;
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        // Loud at first, then once in a while: an operator starting the
                        // cluster's web server after the node is normal.
                        if failures <= 3 || failures.is_power_of_two() {
                            tracing::warn!(%url, %error, retry_s = wait.as_secs_f64(), "cannot fetch the consensus members; retrying");
                        }
                    }
                }
                let until = Instant::now() + wait;
                while !stopped.load(Ordering::Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50));
                }
                wait = (wait * 2).min(MAX_RETRY);
            }
        })?;
    Ok(Fetcher { stop })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls_parse_and_bad_ones_say_what_to_write() {
        let url = HttpUrl::parse("http://127.0.0.1:8080/members.txt").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 8080, "/members.txt")
        );
        let url = HttpUrl::parse("http://[::1]/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 80));
        assert_eq!(url.to_string(), "http://[::1]:80/");
        assert_eq!(HttpUrl::parse("http://example.org").unwrap().path, "/");
        for (bad, says) in [
            ("https://a/", "https is not supported"),
            ("ftp://a/", "not an http:// URL"),
            ("http://:80/", "names no host"),
            ("http://a:0/", "not a port"),
            ("http://a:99999/", "not a port"),
            ("http://u@a/", "user names"),
            ("http://a/b c", "no spaces"),
        ] {
            let error = HttpUrl::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn responses_are_checked_and_cut() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabcd").unwrap(),
            b"ab"
        );
        assert_eq!(
            parse_response(b"HTTP/1.0 200 OK\r\n\r\nabcd").unwrap(),
            b"abcd"
        );
        assert!(
            parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n")
                .unwrap_err()
                .contains("404")
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab").is_err());
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn a_silent_server_or_an_endless_one_cannot_hold_a_fetch() {
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = HttpUrl::parse(&format!("http://{}/", silent.local_addr().unwrap())).unwrap();
        // Accepted by the kernel, never answered: the deadline ends it.
        let error = fetch(&url, Duration::from_millis(300), 1024).unwrap_err();
        assert!(
            error.contains("no answer") || error.contains("reading"),
            "{error}"
        );
        let endless = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = HttpUrl::parse(&format!("http://{}/", endless.local_addr().unwrap())).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = endless.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n");
            let chunk = [b'0'; 4096];
            // Bounded: the client stops reading past its cap and closes.
            for _ in 0..64 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let error = fetch(&url, Duration::from_secs(10), 16 * 1024).unwrap_err();
        assert!(error.contains("over 16384 bytes"), "{error}");
        server.join().unwrap();
    }

    #[test]
    fn a_wildcard_listen_address_is_never_advertised() {
        let specific: SocketAddr = "192.0.2.7:7700".parse().unwrap();
        assert_eq!(advertised(specific, None), specific);
        let wild: SocketAddr = "0.0.0.0:7700".parse().unwrap();
        let toward_loopback = advertised(wild, Some("127.0.0.1:7701".parse().unwrap()));
        assert_eq!(toward_loopback, "127.0.0.1:7700".parse().unwrap());
        let any = advertised(wild, None);
        assert!(!any.ip().is_unspecified() && any.port() == 7700, "{any}");
    }
}
