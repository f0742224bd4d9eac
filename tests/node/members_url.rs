//! `[consensus] members_url` in real nodes (issue 14 point 7): a node pointed at a URL where
//! nothing answers waits (nobody's member, no lone cluster) and keeps trying; once a server in
//! this test process serves the document `weft cluster members` printed for another node's
//! cluster, the node fetches it and gets its id certified by that cluster, in its network,
//! and pins that network: a later start whose URL serves another network exits 2.

use super::cluster::status_until;
use super::*;
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;

/// Serves `body` to every GET on `listener` until `stop` is set; at most 64 requests, each
/// answered whole (the test's own bound on the loop).
fn serve(
    listener: TcpListener,
    body: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u32> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut served = 0;
        while !stop.load(Ordering::Relaxed) && served < 64 {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    let mut request = [0u8; 2048];
                    let _ = stream.read(&mut request);
                    let _ = write!(
                        stream,
                        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        served
    })
}

#[test]
fn a_node_waits_for_its_members_url_and_then_joins_the_network_it_serves() {
    let dir = TempDir::new("members-url");
    // The cluster: a lone node, the only member of its own network.
    let cluster_data = dir.0.join("cluster");
    let cluster = start_node(&node_args(&cluster_data, &[]));
    let cluster_status = status_until(&cluster_data, |s| s.contains("(certified"));
    let (ok, document, err) = run(&["cluster", "members", "--via", &cluster.udp.to_string()]);
    assert!(ok.success(), "{err}");
    assert!(
        document.trim().bytes().all(|b| b.is_ascii_hexdigit()),
        "{document}"
    );

    // A port where nothing listens yet: the URL is out of reach.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/members");
    let joiner_data = dir.0.join("joiner");
    let joiner = start_node(&node_args(&joiner_data, &["--members-url", &url]));
    scrape_until(joiner.metrics, |m| {
        metric_value(m, "weft_consensus_waiting_for_members") == Some(1)
    });
    // Retried for a while (the first tries are logged), it is still nobody's member.
    let start = Instant::now();
    while joiner
        .proc
        .stderr()
        .matches("cannot fetch the consensus members")
        .count()
        < 2
    {
        assert!(start.elapsed() < EXIT_DEADLINE, "{}", joiner.proc.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, waiting, _) = run(&["status", "--data", joiner_data.to_str().unwrap()]);
    assert!(
        waiting.contains("waiting for the member list") && !waiting.contains("certified,"),
        "not a lone member while the URL is out of reach:\n{waiting}"
    );

    // Now the URL answers with the cluster's document.
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        document,
        Arc::clone(&stop),
    );
    let joined = status_until(&joiner_data, |s| s.contains("(certified"));
    stop.store(true, Ordering::Relaxed);
    assert!(server.join().unwrap() >= 1);
    assert!(
        joined.contains("(1 member(s)), client"),
        "a client of the served cluster:\n{joined}"
    );
    let network = |status: &str| {
        status
            .lines()
            .find_map(|l| l.trim().strip_prefix("consensus: network "))
            .and_then(|rest| rest.split('…').next())
            .map(str::to_string)
    };
    assert_eq!(
        network(&joined),
        network(&cluster_status),
        "{joined}\n{cluster_status}"
    );
    // Metrics are published about once a second: wait for the snapshot with the certificate.
    let metrics = scrape_until(joiner.metrics, |m| {
        metric_value(m, "weft_consensus_node_id_certified") == Some(1)
    });
    assert_eq!(
        metric_value(&metrics, "weft_consensus_waiting_for_members"),
        Some(0)
    );

    // The first verified document pinned its network in DATA/network-id (issue 14 point 2):
    // the next start, whose URL serves another network's document, stops with exit 2 naming
    // the pin file and the fix.
    let pinned = std::fs::read_to_string(joiner_data.join("network-id")).unwrap();
    assert!(
        joined.contains(&format!("network id: {} (pinned)", pinned.trim())),
        "{joined}"
    );
    drop(joiner);
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        foreign_document(),
        Arc::clone(&stop),
    );
    let restarted = Proc::spawn(&node_args(&joiner_data, &["--members-url", &url]));
    let (status, _, err) = restarted.wait();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    let pin_file = joiner_data.join("network-id");
    assert!(
        err.contains(&pin_file.display().to_string())
            && err.contains("consensus.network_id = ")
            && err.contains(&url),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&pin_file).unwrap(),
        pinned,
        "the pin is kept"
    );
}

/// The member document of a one-member network nobody runs: another network than the test's.
fn foreign_document() -> String {
    use weft::consensus::{bootstrap::MemberDocument, ids::MemberKey, trust::MemberListChain};
    use weft::session::{Identity, PeerRecord};
    let identity = Identity::from_secret_bytes([7; 32], [107; 32]);
    let record = PeerRecord::sign(&identity, &["127.0.0.1:9".parse().unwrap()]);
    MemberDocument::new(
        MemberListChain::new(&[MemberKey(record.ed25519)]),
        &[record],
    )
    .to_text()
}
