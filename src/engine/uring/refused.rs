//! Why io_uring could not be set up: the error an engine falls back to epoll on, or reports
//! when io_uring was asked for by name.

use std::io;

/// Why io_uring could not be set up: the kernel's errno and the step that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "io_uring is not available ({stage} failed with {name}: {description}); use --io epoll or \
     --io auto",
    name = errno_name(*errno),
    description = io::Error::from_raw_os_error(*errno)
)]
pub struct UringRefused {
    /// The step that failed (`io_uring_setup`, `register_buf_ring`, ...).
    pub stage: &'static str,
    /// The errno it returned.
    pub errno: i32,
}

impl UringRefused {
    /// The errno's symbolic name (`EPERM`), the `reason` label of `weft_io_fallback_total`.
    pub fn errno_name(&self) -> &'static str {
        errno_name(self.errno)
    }

    /// An `io::Error` of the errno's kind that carries this value, for [`crate::engine::Engine::start`].
    pub(crate) fn into_io_error(self) -> io::Error {
        io::Error::new(io::Error::from_raw_os_error(self.errno).kind(), self)
    }
}

/// The symbolic name of the errnos io_uring setup is known to return.
fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::ENOMEM => "ENOMEM",
        libc::EINVAL => "EINVAL",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        _ => "EOTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_errno() {
        let refused = UringRefused {
            stage: "io_uring_setup",
            errno: libc::EPERM,
        };
        let text = refused.to_string();
        assert!(
            text.contains("EPERM") && text.contains("--io epoll"),
            "{text}"
        );
        let error = refused.into_io_error();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("io_uring_setup"));
    }
}
