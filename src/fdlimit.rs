//! The open-file limit: every held connection costs a descriptor, and the usual soft
//! limit (1024) is far below what the server is built for.

use std::io;

/// The open-file limits after start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit before raising it.
    pub before: u64,
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit, the most the soft one can be raised to without privileges.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as Go does by default since 1.19)
/// and reports the result.
///
/// # Errors
/// If the limits cannot be read or set.
pub fn raise_to_hard_limit() -> io::Result<FdLimit> {
    let (before, _) = rlimit::Resource::NOFILE.get()?;
    let soft = rlimit::increase_nofile_limit(u64::MAX)?;
    let (_, hard) = rlimit::Resource::NOFILE.get()?;
    Ok(FdLimit { before, soft, hard })
}

/// The soft open-file limit now in force, or 1024 (the usual default) if it cannot be
/// read: no server can hold more connections than this.
pub fn soft_limit() -> usize {
    rlimit::Resource::NOFILE.get().map_or(1024, |(soft, _)| {
        usize::try_from(soft).unwrap_or(usize::MAX)
    })
}
