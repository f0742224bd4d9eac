//! The DHT from a program: start a node, join a network, register a CUSTOM handler, put and get.
//!
//! ```text
//! weft node --listen 127.0.0.1:7700 --data /tmp/first      # a network of one, in another shell
//! cargo run --example dht -- 127.0.0.1:7700                # joins it, puts and gets a record
//! ```
//!
//! An address may name the node's peer id too, `PEER@ADDR` (as `weft node --bootstrap` takes).
//!
//! ```text
//! ```
//!
//! Joining, the example is a client of the first node's network: only ids a network certified
//! enter its nodes' tables, and the example's own network would be another (a node of that
//! network would list the first node's record in `[consensus] members`). It pins the network
//! the first node proves, and queries. Without an address the example is a network of one:
//! its put reaches no other node.

use std::time::Duration;
use weft::node::{Node, NodeConfig};
use weft::overlay::rpc::Value;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .skip(1)
        .map(|addr| addr.parse())
        .collect::<Result<Vec<_>, _>>()?;
    let data = std::env::temp_dir().join(format!("weft-example-dht-{}", std::process::id()));
    let config = NodeConfig {
        listen: "127.0.0.1:0".parse()?,
        metrics: "127.0.0.1:0".parse()?,
        data: data.clone(),
        dht_client: !bootstrap.is_empty(),
        bootstrap,
        ..NodeConfig::default()
    };
    let node = Node::start(&config)?;
    let dht = node.dht().ok_or("this node runs no overlay")?;
    let stop = node.shutdown_handle()?;
    let running = std::thread::spawn(move || node.run());

    // Peers' CUSTOM requests named "echo" come here, with the peer id their session proved.
    dht.register(
        "echo",
        Box::new(|_from, body: &Value| Ok(Value::Array(vec![body.clone()]))),
    )?;

    let wait = Duration::from_secs(10);
    if !config.bootstrap.is_empty() {
        let joined = dht.wait_for_contacts(1, wait)?;
        println!(
            "joined: {} contacts in {} buckets",
            joined.contacts,
            joined.buckets.len()
        );
    }
    let put = dht.put(b"example", b"hello from examples/dht.rs", wait)?;
    println!(
        "put: stored on {} node(s), lookup depth {}",
        put.stored, put.depth
    );
    let got = dht.get(b"example", wait)?;
    match got.value {
        Some(value) => println!("get: {}", String::from_utf8_lossy(&value)),
        None => println!("get: not found (a network of one holds no records for itself)"),
    }
    let status = dht.status(wait)?;
    println!(
        "node id {:?} ({}), {} contacts, {} records held",
        status.node_id,
        if status.provisional {
            "provisional"
        } else {
            "certified"
        },
        status.contacts,
        status.records
    );
    stop.shutdown();
    let _ = running.join();
    let _ = std::fs::remove_dir_all(data);
    Ok(())
}
