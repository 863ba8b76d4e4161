//! Opening the files the server reads (greeting, config, address lists): nonblocking,
//! so that a FIFO without a writer is refused instead of blocking the thread, and only
//! regular files (a device such as /dev/zero never ends).

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a file could not be opened for reading.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    /// Opening or examining it failed.
    Io(io::Error),
    /// It is a directory, a device, a FIFO or a socket.
    NotRegular,
}

/// Opens the regular file at `path` for reading, with its metadata as opened.
pub(crate) fn open_regular(path: &Path) -> Result<(File, Metadata), OpenFailure> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(OpenFailure::Io)?;
    let metadata = file.metadata().map_err(OpenFailure::Io)?;
    if !metadata.is_file() {
        return Err(OpenFailure::NotRegular);
    }
    Ok((file, metadata))
}

/// The error a caller reports for [`OpenFailure::NotRegular`].
pub(crate) fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}
