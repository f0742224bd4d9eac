//! A node configured by file after a membership change (issue 14 point 2): four members, one
//! killed and voted out, leave the network at its second member list. A node configured with
//! the genesis list learns the chain from the members and is certified by today's three; a node
//! configured with the later list must name the network (exit 2 naming `consensus.network_id`
//! without it) and then learns the chain; `weft cluster status` prints the list's version.

use super::cluster::{start_with, status_until};
use super::*;

/// `[consensus]` naming `records`, keep-alives every 2 s (a silent member is voted out after
/// about three periods), and `extra` lines.
fn config(path: &Path, records: &[String], extra: &str) {
    let quoted: Vec<String> = records.iter().map(|r| format!("\"{r}\"")).collect();
    let text = format!(
        "[consensus]\nmembers = [{}]\nkeepalive = 2\n{extra}",
        quoted.join(", ")
    );
    std::fs::write(path, text).unwrap();
}

/// Four members, each on its own loopback address as members on their own hosts are.
fn member_addresses() -> Vec<SocketAddr> {
    (2..=5u8)
        .map(|host| {
            let socket = UdpSocket::bind(SocketAddr::from(([127, 0, 0, host], 0))).unwrap();
            socket.local_addr().unwrap()
        })
        .collect()
}

/// Creates an identity in `dir/member-N` for each address; their `record=` lines.
fn member_records(dir: &TempDir, addresses: &[SocketAddr]) -> Vec<String> {
    addresses
        .iter()
        .enumerate()
        .map(|(index, address)| {
            let data = dir.join(&format!("member-{index}"));
            let address = address.to_string();
            let (ok, out, err) = run(&[
                "id",
                "--create",
                "--data",
                data.to_str().unwrap(),
                "--address",
                &address,
            ]);
            assert!(ok.success(), "{err}");
            out.lines()
                .find_map(|l| l.strip_prefix("record="))
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Four members on one address (PROTOCOL.md §11, one pending request per source; issue 14
/// point 5): each member's node asks for its id from 127.0.0.1, so each member first holds its
/// own node's request and sights no other. Its hold on the source ends, the members converge on
/// one request at a time, and all four are certified, then a node and a client from the same
/// address. The node starts first (point 7): with its members out of reach it stays their
/// client, uncertified, and starts no cluster of its own.
#[test]
fn four_members_on_one_address_certify_each_other_and_a_client() {
    let dir = TempDir::new("one-address");
    let addresses: Vec<SocketAddr> = super::cluster::free_ports(4)
        .into_iter()
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .collect();
    let records = member_records(&dir, &addresses);
    let path = dir.join("cluster.toml");
    config(&path, &records, "");
    let _early = start_with(&dir.0, "node", &path, None);
    let waiting = status_until(&dir.join("node"), |s| s.contains("(4 member(s)), client"));
    assert!(!waiting.contains("(certified"), "{waiting}");
    let members: Vec<Node> = addresses
        .iter()
        .enumerate()
        .map(|(index, &address)| {
            start_with(&dir.0, &format!("member-{index}"), &path, Some(address))
        })
        .collect();
    for name in ["member-0", "member-1", "member-2", "member-3", "node"] {
        status_until(&dir.join(name), |s| {
            s.contains("(4 member(s)), ") && s.contains("(certified")
        });
    }
    let via = addresses[1].to_string();
    let (ok, out, err) = super::cluster::new_client_asks(&dir.0, "client", &via, "30");
    assert!(
        ok.success() && out.contains("node_id=") && out.contains("certificate="),
        "{out}\n{err}"
    );
    drop(members);
}

#[test]
fn after_a_member_is_voted_out_nodes_configured_by_file_learn_the_chain_from_the_members() {
    let dir = TempDir::new("chain");
    let addresses = member_addresses();
    let records = member_records(&dir, &addresses);
    let genesis = dir.join("genesis.toml");
    config(&genesis, &records, "");
    let mut members: Vec<Node> = addresses
        .iter()
        .enumerate()
        .map(|(index, &address)| {
            start_with(&dir.0, &format!("member-{index}"), &genesis, Some(address))
        })
        .collect();
    let first = dir.join("member-0");
    let before = status_until(&first, |s| {
        s.contains("(4 member(s)), member") && s.contains("(certified")
    });
    let network = before
        .lines()
        .find_map(|l| l.trim().strip_prefix("network id: "))
        .and_then(|rest| rest.split(' ').next())
        .expect("a network id line")
        .to_string();

    // The fourth member dies; the three vote it out: member list 1.
    members.pop().unwrap().proc.signal("KILL");
    status_until(&first, |s| {
        s.contains("(3 member(s)), member") && s.contains("member list: version 1 (1 link(s)")
    });
    let via = addresses[0].to_string();
    let (ok, out, err) = run(&["cluster", "status", "--via", &via, "--timeout", "30"]);
    assert!(ok.success(), "{out}\n{err}");
    assert!(
        out.contains("member list: version 1 (1 link(s) from genesis, 4 genesis member(s))")
            && out.contains("members: 3 (quorum 3)"),
        "{out}"
    );

    // `weft cluster members` prints the document of today's list, with its chain.
    let (ok, document, err) = run(&["cluster", "members", "--via", &via]);
    assert!(ok.success(), "{err}");
    let verified = weft::consensus::bootstrap::MemberDocument::from_text(document.as_bytes())
        .and_then(|d| d.verify(None))
        .unwrap();
    assert_eq!(
        (verified.list.epoch, verified.records.len()),
        (1, 3),
        "{document}"
    );
    assert_eq!(weft::consensus::service::hex(&verified.network.0), network);

    // Configured with the genesis list: it learns list 1 and today's three certify its id.
    let genesis_client = start_with(&dir.0, "genesis-client", &genesis, None);
    let learned = status_until(&dir.join("genesis-client"), |s| {
        s.contains("(certified") && s.contains("member list: version 1")
    });
    assert!(learned.contains("(3 member(s)), client"), "{learned}");
    drop(genesis_client);

    // Configured with the later list and no network id: it names the field and the fix.
    let later = dir.join("later.toml");
    config(&later, &records[..3], "");
    let data = dir.join("later-client");
    let refused = Proc::spawn(&node_args(&data, &["--config", later.to_str().unwrap()]));
    let (status, _, err) = refused.wait();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("field \"consensus.network_id\"")
            && err.contains(&format!("consensus.network_id = \"{network}\"")),
        "{err}"
    );
    // With it, the node learns the chain from the three and is certified.
    let named = dir.join("later-named.toml");
    config(
        &named,
        &records[..3],
        &format!("network_id = \"{network}\"\n"),
    );
    let _client = start_with(&dir.0, "later-client", &named, None);
    let learned = status_until(&data, |s| {
        s.contains("(certified") && s.contains("member list: version 1")
    });
    assert!(
        learned.contains(&format!("network id: {network} (configured)")),
        "{learned}"
    );

    // A member restarted with the later list (and the network id) learns the chain, then runs
    // its member again from its store.
    members.remove(0).proc.signal("KILL");
    let _first = start_with(&dir.0, "member-0", &named, Some(addresses[0]));
    status_until(&first, |s| {
        s.contains("(3 member(s)), member, height") && s.contains("member list: version 1")
    });
    drop(members);
}
