//! Every command README.md and docs/OPERATIONS.md show, run (issue 13): a flag the binary does
//! not know, or a command that fails, fails here before an operator meets it.
//!
//! Commands are run as written except where the machine running the tests must differ: addresses
//! become loopback port 0 or a node this test started, paths become temporary ones, and hour-long
//! durations become a second.

use super::*;

/// `(file, command words)` for every command line in a code block of the operator docs; usage
/// synopses (with `[...]`) and printed output are left out.
fn documented_commands() -> Vec<(&'static str, Vec<String>)> {
    let docs = [
        ("README.md", include_str!("../../README.md")),
        (
            "docs/OPERATIONS.md",
            include_str!("../../docs/OPERATIONS.md"),
        ),
    ];
    let mut commands = Vec::new();
    for (file, text) in docs {
        let mut in_block = false;
        for line in text.lines() {
            if line.starts_with("```") {
                in_block = !in_block;
                continue;
            }
            if !in_block {
                continue;
            }
            let line = line.strip_prefix("$ ").unwrap_or(line);
            let line = line
                .strip_prefix("cargo run --release -- ")
                .map(|rest| format!("weft {rest}"))
                .unwrap_or_else(|| line.to_string());
            let Some(rest) = line.strip_prefix("weft ") else {
                continue;
            };
            // A comment, and the shell's `& pid=$!` (the test starts the node itself).
            let rest = rest.split(" #").next().unwrap_or("");
            let rest = rest.split(" & ").next().unwrap_or("");
            let words: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
            let is_output = words.iter().any(|w| w.ends_with(':'));
            if words.is_empty() || is_output || rest.contains('[') {
                continue;
            }
            commands.push((file, words));
        }
    }
    commands
}

/// The value after `flag`, replaced by `value`, or `flag value` appended.
fn set_flag(words: &mut Vec<String>, flag: &str, value: &str) {
    match words.iter().position(|w| w == flag) {
        Some(at) if at + 1 < words.len() => words[at + 1] = value.to_string(),
        _ => {
            words.push(flag.to_string());
            words.push(value.to_string());
        }
    }
}

fn replace_flag(words: &mut [String], flag: &str, value: &str) {
    if let Some(at) = words.iter().position(|w| w == flag)
        && at + 1 < words.len()
    {
        words[at + 1] = value.to_string();
    }
}

#[test]
fn every_command_in_readme_and_operations_runs() {
    let commands = documented_commands();
    let dir = TempDir::new("docs");
    let echo_data = dir.join("echo-node");
    let echo = start_node(&node_args(&echo_data, &["--echo"]));
    let echo_udp = echo.udp.to_string();
    let echo_pid = echo.proc.child.id().to_string();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\ndata = \"{}\"\n",
            dir.join("config-data").display()
        ),
    )
    .unwrap();
    let mut ran: Vec<String> = Vec::new();
    for (index, (file, original)) in commands.iter().enumerate() {
        let shown = original.join(" ");
        let mut words = original.clone();
        let data = dir.join(&format!("data-{index}"));
        let data = data.to_str().unwrap();
        match words[0].as_str() {
            "node" => {
                if words.iter().any(|w| w == "--config") {
                    replace_flag(&mut words, "--config", config.to_str().unwrap());
                } else {
                    set_flag(&mut words, "--listen", "127.0.0.1:0");
                    set_flag(&mut words, "--metrics", "127.0.0.1:0");
                    set_flag(&mut words, "--data", data);
                }
                let args: Vec<&str> = words.iter().map(String::as_str).collect();
                let node = start_node(&args);
                node.proc.signal("TERM");
                let (status, _, stderr) = node.proc.wait();
                assert!(status.success(), "{file}: `weft {shown}`:\n{stderr}");
            }
            "ping" => {
                words[1] = echo_udp.clone();
                replace_flag(&mut words, "--peer", &echo.peer);
                // The docs' counts at the docs' intervals, but no more than a few seconds.
                replace_flag(&mut words, "--count", "2");
                let args: Vec<&str> = words.iter().map(String::as_str).collect();
                let (status, stdout, stderr) = run(&args);
                assert_eq!(
                    status.code(),
                    Some(0),
                    "{file}: `weft {shown}`:\n{stdout}\n{stderr}"
                );
            }
            "id" => {
                set_flag(&mut words, "--data", echo_data.to_str().unwrap());
                let args: Vec<&str> = words.iter().map(String::as_str).collect();
                let (status, stdout, stderr) = run(&args);
                assert_eq!(status.code(), Some(0), "{file}: `weft {shown}`:\n{stderr}");
                assert!(stdout.contains(&echo.peer), "{stdout}");
            }
            "bench" => {
                replace_flag(&mut words, "--soak", "1s");
                replace_flag(&mut words, "--sample", "1");
                replace_flag(&mut words, "--duration", "1");
                replace_flag(&mut words, "--target", &echo_udp);
                replace_flag(&mut words, "--target-pid", &echo_pid);
                let json = dir.join(&format!("bench-{index}.json"));
                replace_flag(&mut words, "--json", json.to_str().unwrap());
                let args: Vec<&str> = words.iter().map(String::as_str).collect();
                let (status, stdout, stderr) = run(&args);
                assert_eq!(
                    status.code(),
                    Some(0),
                    "{file}: `weft {shown}`:\n{stdout}\n{stderr}"
                );
            }
            "demo" => {
                set_flag(&mut words, "--duration", "0.2");
                let args: Vec<&str> = words.iter().map(String::as_str).collect();
                let demo = Proc::spawn(&args);
                if words.iter().any(|w| w == "--keep") {
                    while !demo.next_line().contains("Ctrl-C stops them") {}
                    demo.signal("TERM");
                }
                let (status, stdout, stderr) = demo.wait();
                assert_eq!(
                    status.code(),
                    Some(0),
                    "{file}: `weft {shown}`:\n{stdout}\n{stderr}"
                );
            }
            "status" => {
                set_flag(&mut words, "--data", echo_data.to_str().unwrap());
                let args: Vec<&str> = words.iter().map(String::as_str).collect();
                let (status, stdout, stderr) = run(&args);
                assert_eq!(status.code(), Some(0), "{file}: `weft {shown}`:\n{stderr}");
                assert!(stdout.contains(&echo.peer), "{stdout}");
            }
            "doctor" => {
                // This host may or may not be tuned: either answer is a run, a crash is not.
                let args: Vec<&str> = words.iter().map(String::as_str).collect();
                let (status, stdout, stderr) = run(&args);
                assert!(
                    matches!(status.code(), Some(0 | 1))
                        && (stdout.starts_with("ok    io_uring")
                            || stdout.starts_with("FIX   io_uring"))
                        && stdout.contains("SO_REUSEPORT steering (live)"),
                    "{file}: `weft {shown}`:\n{stdout}\n{stderr}"
                );
            }
            other => panic!("{file}: `weft {shown}`: no runner for `weft {other}` in this test"),
        }
        ran.push(shown);
    }
    // The sections this test must keep seeing; a docs rewrite that drops them drops the check.
    for wanted in [
        "node",
        "node --config",
        "ping",
        "bench --soak",
        "demo",
        "demo --nodes 3 --keep",
        "doctor",
        "status",
    ] {
        assert!(
            ran.iter().any(|c| c.starts_with(wanted)),
            "no documented `weft {wanted}` found among {ran:?}"
        );
    }
}
