//! The data directory: where a node keeps its long-term keys (PROTOCOL.md §2).
//!
//! The directory is created with mode 0700. It holds the Ed25519 secret in [`ED25519_KEY_FILE`]
//! and the X25519 secret in [`X25519_KEY_FILE`], each 64 hex digits and a newline, mode 0600,
//! written once on first start (temp file, fsync, rename) so a crash never leaves half a key.
//!
//! An existing directory that group or others may write is refused: whoever can write it can
//! replace the keys. So is a key file that is a symbolic link: the node reads its secrets only
//! from files that live in the directory it was given.

use crate::session::Identity;
use rand::{CryptoRng, RngCore};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File holding the Ed25519 identity secret; its public key gives the peer id.
pub const ED25519_KEY_FILE: &str = "ed25519.key";
/// File holding the X25519 static secret.
pub const X25519_KEY_FILE: &str = "x25519.key";

/// Longest key file read: 64 hex digits and a little trailing whitespace.
const MAX_KEY_FILE_LEN: usize = 80;

/// An opened data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    path: PathBuf,
}

/// Whether [`DataDir::load_or_create_identity`] read keys or made new ones.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum IdentityOrigin {
    /// Both key files were present and read.
    Loaded,
    /// Neither existed; a new identity was generated and written.
    Created,
}

/// What went wrong with the data directory; each message names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The directory could not be created.
    #[error(
        "data directory {}: cannot create it: {source}; check the parent directory's permissions \
         or choose another --data",
        path.display()
    )]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The path exists but is no directory.
    #[error("data directory {}: exists but is not a directory; choose another --data", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A key file can be read by group or others.
    #[error(
        "key file {}: mode {mode:04o} gives group or others access to the secret; run `chmod 600 {}`",
        path.display(), path.display()
    )]
    InsecureMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The directory can be written by group or others, who could replace the keys.
    #[error(
        "data directory {}: mode {mode:04o} lets group or others replace its key files; run \
         `chmod go-w {}` (or `chmod 700 {}`)",
        path.display(), path.display(), path.display()
    )]
    WritableDirectory {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file is a symbolic link.
    #[error(
        "key file {} is a symbolic link{}; keys are read only from regular files in the data \
         directory: replace the link with the file it points to, or point --data at the \
         directory that holds the keys",
        path.display(),
        target.as_ref().map_or(String::new(), |t| format!(" to {}", t.display()))
    )]
    SymlinkedKey {
        /// The link.
        path: PathBuf,
        /// Where it points, when readable.
        target: Option<PathBuf>,
    },
    /// A key file does not hold a key.
    #[error(
        "key file {}: {reason}, expected 64 hex digits and a newline; restore it from a backup, \
         or remove {ED25519_KEY_FILE} and {X25519_KEY_FILE} to create a new identity \
         (warning: that changes this node's peer id)",
        path.display()
    )]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        reason: &'static str,
    },
    /// One key file exists without the other.
    #[error(
        "key file {} is missing but {} exists; restore it from a backup, or remove {} to create \
         a new identity (warning: that changes this node's peer id)",
        missing.display(), present.display(), present.display()
    )]
    HalfIdentity {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
    },
}

impl DataDir {
    /// Opens the data directory, creating it (and missing parents) with mode 0700.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let mode = meta.permissions().mode() & 0o7777;
                if mode & 0o022 != 0 {
                    return Err(DataDirError::WritableDirectory {
                        path: path.to_path_buf(),
                        mode,
                    });
                }
            }
            Ok(_) => {
                return Err(DataDirError::NotADirectory {
                    path: path.to_path_buf(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // PROTOCOL.md §2: the keys are secret, so nobody else may list or enter the
                // directory that holds them.
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(|source| DataDirError::Create {
                        path: path.to_path_buf(),
                        source,
                    })?;
            }
            Err(source) => {
                return Err(DataDirError::Create {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        Ok(DataDir {
            path: path.to_path_buf(),
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the node's keys, or on first start draws new ones from `rng` and writes them.
    pub fn load_or_create_identity<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
    ) -> Result<(Identity, IdentityOrigin), DataDirError> {
        let ed_path = self.path.join(ED25519_KEY_FILE);
        let x_path = self.path.join(X25519_KEY_FILE);
        let ed = read_key_file(&ed_path)?;
        let x = read_key_file(&x_path)?;
        match (ed, x) {
            (Some(ed), Some(x)) => Ok((Identity::from_secret_bytes(ed, x), IdentityOrigin::Loaded)),
            (None, None) => {
                let identity = Identity::generate(rng);
                // The Ed25519 key is the identity, so it is written last: a crash between the
                // two writes leaves no file that claims a peer id.
                write_key_file(&self.path, X25519_KEY_FILE, &identity.x25519_secret_bytes())?;
                write_key_file(
                    &self.path,
                    ED25519_KEY_FILE,
                    &identity.ed25519_secret_bytes(),
                )?;
                Ok((identity, IdentityOrigin::Created))
            }
            (Some(_), None) => Err(DataDirError::HalfIdentity {
                present: ed_path,
                missing: x_path,
            }),
            (None, Some(_)) => Err(DataDirError::HalfIdentity {
                present: x_path,
                missing: ed_path,
            }),
        }
    }
}

/// Reads one key file; `None` when it does not exist.
fn read_key_file(path: &Path) -> Result<Option<[u8; 32]>, DataDirError> {
    let io_error = |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    };
    // O_NOFOLLOW: a link is refused by the open itself, so none can be swapped in after a check.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(DataDirError::SymlinkedKey {
                path: path.to_path_buf(),
                target: std::fs::read_link(path).ok(),
            });
        }
        Err(e) => return Err(io_error(e)),
    };
    // Checked on the open descriptor, so the file cannot be swapped between check and read.
    let meta = file.metadata().map_err(io_error)?;
    if !meta.is_file() {
        return Err(DataDirError::BadKey {
            path: path.to_path_buf(),
            reason: "not a regular file",
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(DataDirError::InsecureMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut buf = [0u8; MAX_KEY_FILE_LEN + 1];
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    parse_key(&buf[..len])
        .map(Some)
        .map_err(|reason| DataDirError::BadKey {
            path: path.to_path_buf(),
            reason,
        })
}

/// Parses 64 hex digits followed by nothing but whitespace.
fn parse_key(content: &[u8]) -> Result<[u8; 32], &'static str> {
    if content.len() > MAX_KEY_FILE_LEN {
        return Err("the file is too long");
    }
    let digits = content.trim_ascii_end();
    if digits.is_empty() {
        return Err("the file is empty");
    }
    if digits.len() != 64 {
        return Err("the key has the wrong length");
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        let (Some(high), Some(low)) = (hex_value(pair[0]), hex_value(pair[1])) else {
            return Err("the key holds a character that is not a hex digit");
        };
        *byte = high << 4 | low;
    }
    Ok(key)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn encode_key(key: &[u8; 32]) -> [u8; 65] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'\n'; 65];
    for (i, byte) in key.iter().enumerate() {
        text[2 * i] = HEX[usize::from(byte >> 4)];
        text[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    text
}

/// Writes a key file atomically: a temp file with mode 0600, fsynced, renamed into place, and
/// the directory fsynced so the rename itself survives a crash.
fn write_key_file(dir: &Path, name: &str, key: &[u8; 32]) -> Result<(), DataDirError> {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp"));
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataDirError::Io { path, source }
    };
    // A temp file left by a crash holds no key anyone relies on.
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&temp)(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        // PROTOCOL.md §2: identity keys live in the data directory with file mode 0600.
        .mode(0o600)
        .open(&temp)
        .map_err(io_error(&temp))?;
    file.write_all(&encode_key(key))
        .and_then(|()| file.sync_all())
        .map_err(io_error(&temp))?;
    drop(file);
    std::fs::rename(&temp, &path).map_err(io_error(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp_dir() -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weft-datadir-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn first_start_creates_private_directory_and_keys() {
        let root = temp_dir();
        let path = root.join("nested/data");
        let dir = DataDir::open(&path).unwrap();
        assert_eq!(mode_of(&path), 0o700);
        let (identity, origin) = dir.load_or_create_identity(&mut rand::rngs::OsRng).unwrap();
        assert_eq!(origin, IdentityOrigin::Created);
        for name in [ED25519_KEY_FILE, X25519_KEY_FILE] {
            let file = path.join(name);
            assert_eq!(mode_of(&file), 0o600);
            let text = std::fs::read_to_string(&file).unwrap();
            assert_eq!(text.len(), 65);
            assert!(text.ends_with('\n'));
        }
        let names: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "temp files left behind: {names:?}");

        let (again, origin) = DataDir::open(&path)
            .unwrap()
            .load_or_create_identity(&mut rand::rngs::OsRng)
            .unwrap();
        assert_eq!(origin, IdentityOrigin::Loaded);
        assert_eq!(again.peer_id(), identity.peer_id());
        assert_eq!(again.x25519_public(), identity.x25519_public());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn group_readable_key_is_refused_with_chmod_hint() {
        let path = temp_dir();
        let dir = DataDir::open(&path).unwrap();
        dir.load_or_create_identity(&mut rand::rngs::OsRng).unwrap();
        let key = path.join(ED25519_KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = dir
            .load_or_create_identity(&mut rand::rngs::OsRng)
            .unwrap_err();
        assert!(matches!(
            error,
            DataDirError::InsecureMode { mode: 0o644, .. }
        ));
        let message = error.to_string();
        assert!(
            message.contains(&format!("chmod 600 {}", key.display())),
            "{message}"
        );
        std::fs::remove_dir_all(path).unwrap();
    }

    #[test]
    fn group_or_world_writable_directory_is_refused_with_chmod_hint() {
        for mode in [0o770, 0o702, 0o777, 0o1777] {
            let path = temp_dir();
            DataDir::open(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = DataDir::open(&path).unwrap_err();
            assert!(
                matches!(error, DataDirError::WritableDirectory { mode: m, .. } if m == mode),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(
                message.contains(&format!("chmod go-w {}", path.display())),
                "{message}"
            );
            // Readable by the group is not writable: still accepted.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750)).unwrap();
            DataDir::open(&path).unwrap();
            std::fs::remove_dir_all(path).unwrap();
        }
    }

    #[test]
    fn a_key_file_that_is_a_symlink_is_refused_naming_it() {
        let path = temp_dir();
        let dir = DataDir::open(&path).unwrap();
        dir.load_or_create_identity(&mut rand::rngs::OsRng).unwrap();
        let key = path.join(ED25519_KEY_FILE);
        let elsewhere = path.join("moved.key");
        std::fs::rename(&key, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &key).unwrap();
        let error = dir
            .load_or_create_identity(&mut rand::rngs::OsRng)
            .unwrap_err();
        assert!(
            matches!(&error, DataDirError::SymlinkedKey { target: Some(t), .. } if *t == elsewhere),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(&key.display().to_string()), "{message}");
        assert!(message.contains("replace the link"), "{message}");
        // A dangling link is refused too, not taken for a missing key to create.
        std::fs::remove_file(&elsewhere).unwrap();
        assert!(matches!(
            dir.load_or_create_identity(&mut rand::rngs::OsRng),
            Err(DataDirError::SymlinkedKey { .. })
        ));
        std::fs::remove_dir_all(path).unwrap();
    }

    #[test]
    fn garbage_key_is_refused_naming_the_file() {
        let path = temp_dir();
        let dir = DataDir::open(&path).unwrap();
        dir.load_or_create_identity(&mut rand::rngs::OsRng).unwrap();
        let key = path.join(X25519_KEY_FILE);
        std::fs::write(&key, "not a key\n").unwrap();
        let error = dir
            .load_or_create_identity(&mut rand::rngs::OsRng)
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&key.display().to_string()), "{message}");
        assert!(message.contains("changes this node's peer id"), "{message}");
        std::fs::remove_dir_all(path).unwrap();
    }

    #[test]
    fn half_an_identity_is_refused() {
        let path = temp_dir();
        let dir = DataDir::open(&path).unwrap();
        dir.load_or_create_identity(&mut rand::rngs::OsRng).unwrap();
        std::fs::remove_file(path.join(X25519_KEY_FILE)).unwrap();
        let error = dir
            .load_or_create_identity(&mut rand::rngs::OsRng)
            .unwrap_err();
        assert!(matches!(error, DataDirError::HalfIdentity { .. }));
        assert!(
            !path.join(X25519_KEY_FILE).exists(),
            "must not regenerate half a pair"
        );
        std::fs::remove_dir_all(path).unwrap();
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_refused() {
        let path = temp_dir();
        std::fs::write(&path, "x").unwrap();
        assert!(matches!(
            DataDir::open(&path),
            Err(DataDirError::NotADirectory { .. })
        ));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn key_text_round_trips_and_bad_text_is_refused() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        let text = encode_key(&key);
        assert_eq!(parse_key(&text), Ok(key));
        assert_eq!(parse_key(&text[..64]), Ok(key), "newline is optional");
        let upper = text.to_ascii_uppercase();
        assert_eq!(parse_key(&upper), Ok(key));
        assert!(parse_key(b"").is_err());
        assert!(parse_key(&text[..63]).is_err());
        let mut bad = text;
        bad[10] = b'g';
        assert!(parse_key(&bad).is_err());
        assert!(parse_key(&[b'0'; 81]).is_err());
        assert!(parse_key(" 0".repeat(32).as_bytes()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_key_never_panics_and_accepts_only_64_hex_digits(content in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
            if let Ok(key) = parse_key(&content) {
                proptest::prop_assert_eq!(&encode_key(&key)[..64], &content[..64].to_ascii_lowercase()[..]);
            }
        }

        #[test]
        fn encoded_keys_parse_back(key in proptest::prelude::any::<[u8; 32]>()) {
            proptest::prop_assert_eq!(parse_key(&encode_key(&key)), Ok(key));
        }
    }
}
