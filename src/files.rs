//! Opening and reading the files the server reads (greeting, config, address lists):
//! opened nonblocking, so that a FIFO without a writer is refused instead of blocking
//! the thread, and only regular files (a device such as /dev/zero never ends). Each is
//! read once, and refused if it changed while it was read: a file rewritten in place
//! (`cp`, `cat >`, most config tools) can be caught half-written, and a mix of two
//! versions must never be served or installed.

use std::fs::{File, Metadata};
use std::io::{self, Read};
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

/// The error for a file that changed while it was read: `it shrank while being
/// read`, `it grew ...`, `it changed ...`.
fn changed_while_read(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("it {what} while being read"),
    )
}

/// Reads `file`, whose metadata at open was `before`, whole into one allocation of
/// its size at open, and checks that it did not change meanwhile (see
/// [`check_unchanged`]).
pub(crate) fn read_unchanged(file: &mut File, before: &Metadata) -> io::Result<Vec<u8>> {
    let len = usize::try_from(before.len()).map_err(|_| changed_while_read("is too large"))?;
    // Allocated once at its final size (zeroed pages come from the kernel, not from a
    // memset), then filled in place by the read; a size the memory cannot hold is an
    // error, not an abort.
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot hold its {len} bytes in memory"),
        )
    })?;
    bytes.resize(len, 0);
    file.read_exact(&mut bytes)
        .map_err(|err| match err.kind() {
            io::ErrorKind::UnexpectedEof => changed_while_read("shrank"),
            _ => err,
        })?;
    if file.read(&mut [0u8; 1])? > 0 {
        return Err(changed_while_read("grew"));
    }
    check_unchanged(file, before, before.len())?;
    Ok(bytes)
}

/// Checks that `file`, whose metadata at open was `before` and of which `read` bytes
/// were read up to its end, is the file it was at open: as many bytes as its size
/// then, and the same size and modification time now. For a file read as a stream
/// (an address list, line by line); [`read_unchanged`] reads a whole one.
pub(crate) fn check_unchanged(file: &File, before: &Metadata, read: u64) -> io::Result<()> {
    if read < before.len() {
        return Err(changed_while_read("shrank"));
    }
    if read > before.len() {
        return Err(changed_while_read("grew"));
    }
    let after = file.metadata()?;
    if after.len() != before.len() || after.modified().ok() != before.modified().ok() {
        return Err(changed_while_read("changed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A file, opened and examined as a reload does, then changed by `change` before
    /// it is read.
    fn read_after(name: &str, change: impl FnOnce(&File)) -> io::Result<usize> {
        let path = std::env::temp_dir().join(format!("greeter-{}-{name}", std::process::id()));
        std::fs::write(&path, vec![b'a'; 100_000]).unwrap();
        let mut file = File::open(&path).unwrap();
        let before = file.metadata().unwrap();
        let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        change(&writer);
        let read = read_unchanged(&mut file, &before);
        let _ = std::fs::remove_file(&path);
        // Its length, not its bytes, if it was read: a failure message stays short.
        read.map(|bytes| bytes.len())
    }

    #[test]
    fn a_file_that_changes_while_it_is_read_is_refused() {
        assert_eq!(read_after("same", |_| {}).unwrap(), 100_000);
        let shrank = read_after("shrank", |file| file.set_len(10).unwrap()).unwrap_err();
        assert_eq!(shrank.to_string(), "it shrank while being read");
        let grew = read_after("grew", |file| file.set_len(200_000).unwrap()).unwrap_err();
        assert_eq!(grew.to_string(), "it grew while being read");
        // Rewritten at the same size: only the modification time tells.
        let rewritten = read_after("rewritten", |mut file| {
            file.write_all(&[b'b'; 100_000]).unwrap();
            file.set_modified(std::time::SystemTime::UNIX_EPOCH)
                .unwrap();
        })
        .unwrap_err();
        assert_eq!(rewritten.to_string(), "it changed while being read");
    }
}
