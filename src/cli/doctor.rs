//! `weft doctor`: checks the host against `tuning/` and prints each finding with the command that
//! fixes it; exit 0 when the host is ready, 1 with findings.
//!
//! Everything is read from files under a root (`/` unless the hidden `--root` names a fixture),
//! so the checks are tested on fixture trees rather than on whatever host runs the tests.

use super::EXIT_FAILURE;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The sysctl settings `tuning/sysctl.conf` recommends: each is a minimum.
const SYSCTL_CONF: &str = include_str!("../../tuning/sysctl.conf");

/// Locked memory the io_uring backend may need: kernels before 5.12 charge its rings to
/// RLIMIT_MEMLOCK, one ring per shard, and the default 8 MiB runs out at a few shards.
const MEMLOCK_MIN: u64 = 64 << 20;
/// Open files: one socket per shard, an io_uring per shard, a connection per scrape and the
/// process's own files fit in a few hundred; the unit's limit leaves room for growth.
const NOFILE_MIN: u64 = 65_536;
/// UDP GSO (UDP_SEGMENT) arrived in 4.18 and UDP GRO in 5.0; the engine batches with both.
const GSO_GRO_KERNEL: (u32, u32) = (5, 0);
/// SO_ATTACH_REUSEPORT_CBPF, which steers each flow to one shard, arrived in 4.5.
const REUSEPORT_CBPF_KERNEL: (u32, u32) = (4, 5);

/// Flags of `weft doctor`.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Read /proc from under this directory instead of / (for tests on fixture trees)
    #[arg(long, value_name = "DIR", hide = true, default_value = "/")]
    root: PathBuf,
}

/// One check's outcome.
#[derive(Debug, PartialEq, Eq)]
struct Finding {
    /// What was checked.
    what: String,
    /// What was found.
    found: String,
    /// The exact fix, when the host is not ready.
    fix: Option<String>,
}

/// Runs `weft doctor`: 0 when every check passes, 1 otherwise.
pub(crate) fn run(args: DoctorArgs) -> ExitCode {
    let mut findings = check(&args.root);
    // On the real host, also try what the files can only suggest: seccomp or a container can
    // refuse io_uring, and a kernel can refuse the steering program, whatever /proc says.
    if args.root == Path::new("/") {
        findings.extend(live_checks());
    }
    let mut problems = 0;
    for finding in &findings {
        match &finding.fix {
            None => println!("ok    {}: {}", finding.what, finding.found),
            Some(fix) => {
                problems += 1;
                println!(
                    "FIX   {}: {}\n      fix: {fix}",
                    finding.what, finding.found
                );
            }
        }
    }
    if problems == 0 {
        println!("ready: the host matches tuning/");
        ExitCode::SUCCESS
    } else {
        println!(
            "{problems} finding(s); limits are this shell's: under systemd, tuning/weft.service \
             sets them"
        );
        ExitCode::from(EXIT_FAILURE)
    }
}

/// Every check, in the order they print.
fn check(root: &Path) -> Vec<Finding> {
    let mut findings = vec![io_uring(root)];
    findings.extend(limits(root));
    let kernel = read(root, "proc/sys/kernel/osrelease");
    findings.push(kernel_at_least(
        kernel.as_deref(),
        GSO_GRO_KERNEL,
        "UDP GSO/GRO",
    ));
    findings.push(kernel_at_least(
        kernel.as_deref(),
        REUSEPORT_CBPF_KERNEL,
        "SO_REUSEPORT with flow steering",
    ));
    for (key, wanted) in sysctl_minimums() {
        findings.push(sysctl(root, key, wanted));
    }
    findings
}

/// Starts a throwaway two-shard engine on loopback with io_uring, then one with epoll, and
/// reports whether the ring was set up and the reuseport steering program attached.
fn live_checks() -> Vec<Finding> {
    use weft::channel::EndpointConfig;
    use weft::engine::{Engine, EngineConfig, IoChoice};
    let identity = weft::session::Identity::generate(&mut rand::rngs::OsRng);
    let start = |io: IoChoice| {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let config = EngineConfig {
            shards: 2,
            pin: false,
            io,
            ..EngineConfig::new(loopback, EndpointConfig::default())
        };
        // Dropping the engine stops its shards.
        Engine::start(&config, &identity, rand::random())
    };
    let uring = match start(IoChoice::Uring) {
        Ok(_) => Finding {
            what: "io_uring works here (live)".into(),
            found: "a ring was set up".into(),
            fix: None,
        },
        Err(e) => Finding {
            what: "io_uring works here (live)".into(),
            found: format!("refused: {e}"),
            fix: Some(
                "allow io_uring_setup/io_uring_enter/io_uring_register in the seccomp profile \
                 (containers), set kernel.io_uring_disabled=0 and LimitMEMLOCK=infinity; or run \
                 with --io epoll"
                    .into(),
            ),
        },
    };
    let steering = match start(IoChoice::Epoll) {
        Ok(engine) if engine.steered() => Finding {
            what: "SO_REUSEPORT steering (live)".into(),
            found: "the program attached to a two-shard port".into(),
            fix: None,
        },
        Ok(_) => Finding {
            what: "SO_REUSEPORT steering (live)".into(),
            found: "the kernel refused the steering program; a peer's datagrams may reach \
                    the wrong shard and be handed over"
                .into(),
            fix: Some(
                "a kernel of 4.5 or later without a seccomp rule against SO_ATTACH_REUSEPORT_CBPF"
                    .into(),
            ),
        },
        Err(e) => Finding {
            what: "SO_REUSEPORT steering (live)".into(),
            found: format!("cannot start two shards on one port: {e}"),
            fix: Some("a kernel with SO_REUSEPORT (3.9 or later)".into()),
        },
    };
    vec![uring, steering]
}

/// `(key, minimum)` for every `key = value` line of tuning/sysctl.conf.
fn sysctl_minimums() -> Vec<(&'static str, u64)> {
    SYSCTL_CONF
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            Some((key.trim(), value.trim().parse().ok()?))
        })
        .collect()
}

fn read(root: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(root.join(path))
        .ok()
        .map(|text| text.trim().to_string())
}

fn io_uring(root: &Path) -> Finding {
    let what = "io_uring allowed (kernel.io_uring_disabled)".to_string();
    let fix = "sysctl -w kernel.io_uring_disabled=0 (or run with --io epoll)".to_string();
    match read(root, "proc/sys/kernel/io_uring_disabled").as_deref() {
        // Kernels before 6.6 have no switch: io_uring is on unless seccomp refuses it.
        None => Finding {
            what,
            found: "no switch on this kernel (allowed)".into(),
            fix: None,
        },
        Some("0") => Finding {
            what,
            found: "0".into(),
            fix: None,
        },
        Some(value) => Finding {
            what,
            found: format!("{value} (1: only the io_uring group may use it; 2: nobody)"),
            fix: Some(fix),
        },
    }
}

/// RLIMIT_MEMLOCK and RLIMIT_NOFILE from `proc/self/limits`.
fn limits(root: &Path) -> Vec<Finding> {
    let text = read(root, "proc/self/limits").unwrap_or_default();
    let soft = |name: &str| -> Option<Option<u64>> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let value = line.get(name.len()..)?.split_whitespace().next()?;
        Some(if value == "unlimited" {
            None
        } else {
            Some(value.parse().ok()?)
        })
    };
    let mut findings = Vec::new();
    for (name, what, minimum, fix) in [
        (
            "Max locked memory",
            "locked memory (RLIMIT_MEMLOCK)",
            MEMLOCK_MIN,
            "LimitMEMLOCK=infinity in the unit (tuning/weft.service), or `ulimit -l unlimited` \
             before starting the node",
        ),
        (
            "Max open files",
            "open files (RLIMIT_NOFILE)",
            NOFILE_MIN,
            "LimitNOFILE=65536 in the unit (tuning/weft.service), or `ulimit -n 65536` before \
             starting the node",
        ),
    ] {
        let finding = match soft(name) {
            None => Finding {
                what: what.into(),
                found: "cannot read /proc/self/limits".into(),
                fix: Some(fix.into()),
            },
            Some(None) => Finding {
                what: what.into(),
                found: "unlimited".into(),
                fix: None,
            },
            Some(Some(value)) if value >= minimum => Finding {
                what: what.into(),
                found: format!("{value} (at least {minimum})"),
                fix: None,
            },
            Some(Some(value)) => Finding {
                what: what.into(),
                found: format!("{value}, below {minimum}"),
                fix: Some(fix.into()),
            },
        };
        findings.push(finding);
    }
    findings
}

/// `(major, minor)` of a kernel release such as `6.1.0-18-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn kernel_at_least(release: Option<&str>, wanted: (u32, u32), what: &str) -> Finding {
    let what = format!("{what} (kernel {}.{} or later)", wanted.0, wanted.1);
    let upgrade = format!(
        "upgrade the kernel to {}.{} or later; the node runs without it, slower",
        wanted.0, wanted.1
    );
    match release.and_then(|r| kernel_version(r).map(|v| (r, v))) {
        Some((release, version)) if version >= wanted => Finding {
            what,
            found: format!("kernel {release}"),
            fix: None,
        },
        Some((release, _)) => Finding {
            what,
            found: format!("kernel {release}"),
            fix: Some(upgrade),
        },
        None => Finding {
            what,
            found: "cannot read kernel.osrelease".into(),
            fix: Some(upgrade),
        },
    }
}

fn sysctl(root: &Path, key: &str, wanted: u64) -> Finding {
    let path = format!("proc/sys/{}", key.replace('.', "/"));
    let fix = format!(
        "sysctl -w {key}={wanted}; to keep it across reboots: \
         install -m 644 tuning/sysctl.conf /etc/sysctl.d/90-weft.conf"
    );
    let value = read(root, &path);
    match value.as_deref().map(str::parse::<u64>) {
        Some(Ok(value)) if value >= wanted => Finding {
            what: key.into(),
            found: format!("{value} (at least {wanted})"),
            fix: None,
        },
        Some(Ok(value)) => Finding {
            what: key.into(),
            found: format!("{value}, below {wanted}"),
            fix: Some(fix),
        },
        _ => Finding {
            what: key.into(),
            found: format!("cannot read /{path}"),
            fix: Some(fix),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture tree under the temp dir, removed on drop.
    struct Fixture(PathBuf);

    impl Fixture {
        fn new(tag: &str) -> Fixture {
            let path =
                std::env::temp_dir().join(format!("weft-doctor-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            Fixture(path)
        }

        fn write(&self, path: &str, text: &str) {
            let path = self.0.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }

        /// A host tuned as tuning/ says.
        fn ready(tag: &str) -> Fixture {
            let fixture = Fixture::new(tag);
            fixture.write("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
            fixture.write("proc/sys/kernel/io_uring_disabled", "0\n");
            fixture.write(
                "proc/self/limits",
                "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max open files            65536                65536                files\n\
                 Max locked memory         unlimited            unlimited            bytes\n",
            );
            for (key, wanted) in sysctl_minimums() {
                fixture.write(
                    &format!("proc/sys/{}", key.replace('.', "/")),
                    &format!("{wanted}\n"),
                );
            }
            fixture
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn problems(root: &Path) -> Vec<String> {
        check(root)
            .into_iter()
            .filter_map(|f| Some(format!("{}: {} => {}", f.what, f.found, f.fix?)))
            .collect()
    }

    #[test]
    fn the_tuning_file_names_the_buffer_and_busy_poll_settings() {
        let keys: Vec<&str> = sysctl_minimums().iter().map(|(k, _)| *k).collect();
        for key in [
            "net.core.rmem_max",
            "net.core.wmem_max",
            "net.core.busy_poll",
            "net.core.busy_read",
        ] {
            assert!(keys.contains(&key), "{keys:?}");
        }
    }

    #[test]
    fn a_tuned_host_has_no_findings() {
        let fixture = Fixture::ready("ready");
        assert_eq!(problems(&fixture.0), Vec::<String>::new());
    }

    #[test]
    fn each_shortfall_is_a_finding_with_its_fix() {
        let fixture = Fixture::ready("untuned");
        fixture.write("proc/sys/kernel/io_uring_disabled", "2\n");
        fixture.write("proc/sys/net/core/rmem_max", "212992\n");
        fixture.write("proc/sys/net/core/busy_poll", "0\n");
        fixture.write("proc/sys/kernel/osrelease", "4.19.0-1\n");
        fixture.write(
            "proc/self/limits",
            "Max open files            1024                 4096                 files\n\
             Max locked memory         8388608              8388608              bytes\n",
        );
        std::fs::remove_file(fixture.0.join("proc/sys/net/core/wmem_max")).unwrap();
        let found = problems(&fixture.0);
        let expect = [
            "io_uring allowed (kernel.io_uring_disabled): 2 (1: only the io_uring group may use \
             it; 2: nobody) => sysctl -w kernel.io_uring_disabled=0",
            "locked memory (RLIMIT_MEMLOCK): 8388608, below 67108864 => LimitMEMLOCK=infinity",
            "open files (RLIMIT_NOFILE): 1024, below 65536 => LimitNOFILE=65536",
            "UDP GSO/GRO (kernel 5.0 or later): kernel 4.19.0-1 => upgrade the kernel to 5.0",
            "net.core.rmem_max: 212992, below 26214400 => sysctl -w net.core.rmem_max=26214400; \
             to keep it across reboots: install -m 644 tuning/sysctl.conf \
             /etc/sysctl.d/90-weft.conf",
            "net.core.wmem_max: cannot read /proc/sys/net/core/wmem_max => sysctl -w \
             net.core.wmem_max=26214400",
            "net.core.busy_poll: 0, below 50 => sysctl -w net.core.busy_poll=50",
        ];
        for wanted in expect {
            assert!(
                found.iter().any(|f| f.starts_with(wanted)),
                "{wanted:?} not among {found:#?}"
            );
        }
        assert_eq!(found.len(), expect.len(), "{found:#?}");
    }

    #[test]
    fn kernels_without_the_io_uring_switch_allow_it() {
        let fixture = Fixture::ready("no-switch");
        std::fs::remove_file(fixture.0.join("proc/sys/kernel/io_uring_disabled")).unwrap();
        assert_eq!(problems(&fixture.0), Vec::<String>::new());
        assert_eq!(kernel_version("6.18.44-fc-v1098"), Some((6, 18)));
        assert_eq!(kernel_version("garbage"), None);
    }
}
