//! `weft ping`: PING a node the way ping(8) pings a host.

use super::{EXIT_FAILURE, EXIT_USAGE};
use clap::Args;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use weft::bench::Pinger;
use weft::session::PeerRecord;
use weft::wire::PeerId;

/// Prints a line to stdout; a closed stdout (`weft ping … | head -1`) is no reason to panic,
/// and the exit status still tells whether a PONG came.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Flags of `weft ping`.
#[derive(Debug, Args)]
pub(crate) struct PingArgs {
    /// The node: IP:PORT or HOST:PORT
    #[arg(value_name = "ADDR")]
    target: String,
    /// Number of PINGs to send
    #[arg(long, short = 'c', value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Seconds to wait for each PONG
    #[arg(long, short = 'W', value_name = "SECONDS", default_value = "2", value_parser = parse_timeout)]
    timeout: Duration,
    /// Seconds between PINGs
    #[arg(long, short = 'i', value_name = "SECONDS", default_value = "1", value_parser = parse_interval)]
    interval: Duration,
    /// The node's peer id (32 hex digits), when known; otherwise the PING names no recipient
    #[arg(long, value_name = "HEX", value_parser = parse_peer)]
    peer: Option<PeerId>,
    /// The node's signed peer record (hex, as `weft id` prints it): the session is then IK
    /// instead of XX
    #[arg(long, value_name = "HEX", value_parser = parse_record)]
    record: Option<PeerRecord>,
}

fn parse_record(text: &str) -> Result<PeerRecord, String> {
    let record = PeerRecord::from_hex(text)
        .map_err(|error| format!("not a peer record ({error}); copy it from `weft id`"))?;
    record
        .verify()
        .map_err(|error| format!("the record's signature does not verify ({error})"))?;
    Ok(record)
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("\"{text}\" is not a number of seconds like 0.5 or 2"))
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_seconds(text)? {
        Duration::ZERO => Err("the timeout must be more than 0 seconds".to_string()),
        timeout => Ok(timeout),
    }
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    parse_seconds(text)
}

fn parse_peer(text: &str) -> Result<PeerId, String> {
    PeerId::from_hex(text).ok_or_else(|| format!("\"{text}\" is not a peer id (32 hex digits)"))
}

/// Runs `weft ping`: 0 when at least one PONG came, 1 when none did, 2 for a bad address.
pub(crate) fn run(args: PingArgs) -> ExitCode {
    let target = match resolve(&args.target) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("weft ping: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut pinger = match Pinger::new(target, args.peer) {
        Ok(pinger) => pinger,
        Err(e) => {
            eprintln!("weft ping: cannot open a UDP socket: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut peer = args.peer;
    if let Some(record) = args.record {
        peer = Some(record.peer_id());
        if let Err(message) = pinger.use_record(record) {
            eprintln!("weft ping: --record: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    match peer {
        Some(peer) => say!("PING {} ({target}) peer={peer}", args.target),
        None => say!("PING {} ({target})", args.target),
    }
    let mut rtts = Vec::with_capacity(args.count as usize);
    for seq in 0..args.count {
        let started = Instant::now();
        match pinger.ping(args.timeout) {
            Ok(Some(reply)) => {
                say!(
                    "PONG from {} peer={} session={} seq={seq} time={:.3} ms",
                    reply.from,
                    reply.peer,
                    reply.session,
                    millis(reply.rtt)
                );
                rtts.push(reply.rtt);
            }
            Ok(None) => say!(
                "no PONG from {target} seq={seq} within {:.3} s",
                args.timeout.as_secs_f64()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => say!(
                "no PONG from {target} seq={seq}: port unreachable (ICMP), nothing listens there"
            ),
            Err(e) => eprintln!("weft ping: seq={seq}: {e}"),
        }
        if seq + 1 < args.count
            && let Err(e) = pinger.idle_until(started + args.interval)
        {
            eprintln!("weft ping: {e}");
        }
    }
    say!("{}", summary(args.count, &rtts));
    if rtts.is_empty() {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// Resolves `IP:PORT` or `HOST:PORT` to the first address it names.
fn resolve(target: &str) -> Result<SocketAddr, String> {
    let hint = "give an address like 127.0.0.1:7700 or example.org:7700";
    match target.to_socket_addrs() {
        Ok(mut addresses) => addresses
            .next()
            .ok_or_else(|| format!("{target} resolves to no address; {hint}")),
        Err(e) => Err(format!("cannot resolve {target}: {e}; {hint}")),
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `N sent, M received, X% loss, rtt min/avg/max = a/b/c ms`, the rtt part only with replies.
fn summary(sent: u32, rtts: &[Duration]) -> String {
    let received = rtts.len() as u32;
    let loss = u64::from(sent - received.min(sent)) * 100 / u64::from(sent.max(1));
    let mut line = format!("{sent} sent, {received} received, {loss}% loss");
    if let (Some(min), Some(max)) = (rtts.iter().min(), rtts.iter().max()) {
        let avg = rtts.iter().sum::<Duration>() / received;
        line += &format!(
            ", rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
            millis(*min),
            millis(avg),
            millis(*max)
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_loss_and_rtts() {
        assert_eq!(summary(2, &[]), "2 sent, 0 received, 100% loss");
        let rtts = [Duration::from_micros(100), Duration::from_micros(300)];
        assert_eq!(
            summary(4, &rtts),
            "4 sent, 2 received, 50% loss, rtt min/avg/max = 0.100/0.200/0.300 ms"
        );
        assert_eq!(summary(3, &rtts[..1]).split(',').nth(2), Some(" 66% loss"));
    }

    #[test]
    fn seconds_parse_as_fractions_and_refuse_nonsense() {
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("NaN").is_err());
        assert!(parse_timeout("1e30").is_err());
        assert!(parse_timeout("two").is_err());
    }

    #[test]
    fn names_resolve_and_bad_addresses_are_refused() {
        assert_eq!(
            resolve("127.0.0.1:7700"),
            Ok("127.0.0.1:7700".parse().unwrap())
        );
        assert_eq!(resolve("localhost:7700").map(|a| a.port()), Ok(7700));
        assert!(resolve("127.0.0.1").unwrap_err().contains("127.0.0.1:7700"));
    }
}
