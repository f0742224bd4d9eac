//! The host side: `tuning/weft.service` passes `systemd-analyze verify`, and `weft doctor` tells a
//! tuned host from an untuned one on fixture trees.

use super::*;

/// `systemd-analyze`, or `None` off CI when it is missing; under CI a missing tool fails the test,
/// since a CI run that skipped it would prove nothing (.ci/run installs it).
fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("systemd-analyze");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "systemd-analyze is missing under CI; .ci/run's install step must install systemd"
    );
    eprintln!("systemd-analyze not installed; skipping (CI fails instead)");
    None
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let unit = include_str!("../../tuning/weft.service");
    // verify insists that ExecStart's program exists: point it at the binary under test.
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart=/usr/local/bin/weft node "))
        .expect("ExecStart runs /usr/local/bin/weft node");
    let unit = unit.replace(exec, &exec.replace("/usr/local/bin/weft", BIN));
    for (setting, why) in [
        ("LimitMEMLOCK=", "io_uring's rings on older kernels"),
        ("LimitNOFILE=", "the open-file limit weft doctor checks"),
        (
            "SystemCallFilter=@system-service io_uring_setup",
            "io_uring allowed",
        ),
        ("DynamicUser=yes", "no root"),
        (
            "StateDirectoryMode=0700",
            "the data directory the node accepts",
        ),
    ] {
        assert!(unit.contains(setting), "{setting} ({why})");
    }
    let dir = TempDir::new("unit");
    let path = dir.join("weft.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new(tool)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // verify reports unknown or misspelt settings as warnings and still exits 0.
    let about_our_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("weft.service"))
        .collect();
    assert!(about_our_unit.is_empty(), "{stderr}");
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn doctor_exits_0_on_a_tuned_host_and_1_with_each_fix_on_an_untuned_one() {
    let dir = TempDir::new("doctor");
    let root = dir.0.as_path();
    write(root, "proc/sys/kernel/osrelease", "6.1.0\n");
    write(root, "proc/sys/kernel/io_uring_disabled", "0\n");
    write(
        root,
        "proc/self/limits",
        "Max open files            65536                65536                files\n\
         Max locked memory         unlimited            unlimited            bytes\n",
    );
    for line in include_str!("../../tuning/sysctl.conf").lines() {
        if let Some((key, value)) = line.split_once(" = ") {
            if key.starts_with('#') {
                continue;
            }
            write(root, &format!("proc/sys/{}", key.replace('.', "/")), value);
        }
    }
    let root_arg = root.to_str().unwrap();
    let (status, stdout, stderr) = run(&["doctor", "--root", root_arg]);
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ready: the host matches tuning/"),
        "{stdout}"
    );
    assert!(!stdout.contains("FIX"), "{stdout}");

    write(root, "proc/sys/net/core/rmem_max", "212992\n");
    write(root, "proc/sys/kernel/io_uring_disabled", "2\n");
    let (status, stdout, _) = run(&["doctor", "--root", root_arg]);
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FIX   net.core.rmem_max: 212992, below 26214400\n      fix: sysctl -w net.core.rmem_max=26214400"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: sysctl -w kernel.io_uring_disabled=0"),
        "{stdout}"
    );
    assert!(stdout.contains("2 finding(s)"), "{stdout}");
}
