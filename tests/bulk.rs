//! `weft bench --bulk`: a bounded transfer between two processes arrives whole and in order,
//! and the sink's check notices a stream that does not.

use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use weft::bench::bulk::{
    BulkConfig, BulkSink, bulk_endpoint_config, fill_pattern, run_bulk_sender, tcp_mode,
};
use weft::channel::{Endpoint, Event};
use weft::session::Identity;

fn json_field<'a>(json: &'a str, key: &str) -> &'a str {
    let at = json
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = &json[at + key.len() + 4..];
    rest[..rest.find([',', '\n']).unwrap_or(rest.len())].trim()
}

#[test]
fn eight_mebibytes_cross_two_processes_intact_and_in_order() {
    let dir = std::env::temp_dir().join(format!("weft-bulk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("bulk.json");
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["bench", "--bulk", "8M", "--duration", "120", "--json"])
        .arg(&json_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "weft bench --bulk failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("goodput Gbit/s"), "{stdout}");
    let json = std::fs::read_to_string(&json_path).unwrap();
    // The sink compared every byte with the stream pattern, in delivery order.
    assert_eq!(json_field(&json, "bytes"), (8u64 << 20).to_string());
    assert_eq!(json_field(&json, "intact"), "true");
    assert_eq!(json_field(&json, "complete"), "true");
    for key in ["bulk_gbps", "baseline_gbps", "ratio", "seconds"] {
        let value: f64 = json_field(&json, key).parse().unwrap();
        assert!(value > 0.0, "{key} = {value}");
    }
    let _: u64 = json_field(&json, "retransmissions").parse().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_library_sender_and_sink_agree_in_one_process() {
    let sink = BulkSink::start("127.0.0.1:0".parse().unwrap(), false).unwrap();
    let config = BulkConfig {
        target: sink.local_addr(),
        target_peer: sink.peer_id(),
        bytes: (1 << 20) + 13,
        message: 10_000,
        timeout: Duration::from_secs(60),
    };
    let done = AtomicBool::new(false);
    let sender = std::thread::spawn(move || run_bulk_sender(&config, &done));
    let report = sink.wait((1 << 20) + 13, Duration::from_secs(60));
    let sent = sender.join().unwrap().unwrap();
    assert!(report.complete);
    assert_eq!(report.first_bad, None);
    assert_eq!(report.bytes, (1 << 20) + 13);
    assert_eq!(report.messages, ((1u64 << 20) + 13).div_ceil(10_000));
    assert_eq!(sent.bytes_queued, (1 << 20) + 13);
    assert!(report.datagrams > 0);
}

#[test]
fn the_sink_reports_where_a_damaged_stream_breaks() {
    let sink = BulkSink::start("127.0.0.1:0".parse().unwrap(), false).unwrap();
    let (target, peer) = (sink.local_addr(), sink.peer_id());
    let waiter = std::thread::spawn(move || sink.wait(3 * 4096, Duration::from_secs(30)));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let mut endpoint = Endpoint::new(
        bulk_endpoint_config(),
        Identity::generate(&mut rand::rngs::OsRng),
        [7; 32],
        start,
    );
    let channel = endpoint
        .open_channel(start, target, Some(peer), None, tcp_mode())
        .unwrap();
    // Three messages of the stream; the middle one has one byte changed.
    let mut messages = vec![vec![0u8; 4096]; 3];
    for (i, m) in messages.iter_mut().enumerate() {
        fill_pattern(i as u64 * 4096, m);
    }
    messages[1][1000] ^= 0xff;
    let mut sent = false;
    let mut buf = vec![0u8; 2048];
    while !waiter.is_finished() && start.elapsed() < Duration::from_secs(30) {
        let now = Instant::now();
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            endpoint.handle(now, from, &mut buf[..n]);
        }
        if endpoint.poll_timeout().is_some_and(|t| t <= now) {
            endpoint.handle_timeout(now);
        }
        while let Some(event) = endpoint.poll_event() {
            if matches!(event, Event::ChannelOpened { .. }) && !sent {
                for m in &messages {
                    endpoint.send(now, channel, m).unwrap();
                }
                sent = true;
            }
        }
        while let Some(t) = endpoint.poll_transmit(&mut buf) {
            let _ = socket.send_to(&buf[..t.len], t.destination);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let report = waiter.join().unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(report.first_bad, Some(4096 + 1000 / 8 * 8));
}
