//! The greeting: the bytes every connection is sent from (shared, never copied), the
//! default one, and reading a greeting file once, checked, into them.

use std::fmt;
use std::io::{self, Read};
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use crate::error::Failure;
use crate::files::{not_regular, open_regular, OpenFailure};

/// The greeting sent when none is configured: 38 bytes of UTF-8, no newline.
pub const DEFAULT_GREETING: &str = "Hello there! This is the hosted server";

/// The largest greeting file read: a greeting is held in memory once and sent whole.
pub const MAX_GREETING_BYTES: u64 = 1 << 30;

/// Bytes sent to connections (a greeting, or a deny message), shared by all of them.
///
/// One word wide where an `Arc<[u8]>` takes two: every held connection keeps one, and
/// a held connection's size is what many thousands of them cost. (Reading the bytes
/// takes one more pointer than an `Arc<[u8]>` would.)
#[derive(Clone, PartialEq, Eq)]
pub struct Greeting(Arc<Box<[u8]>>);

impl Deref for Greeting {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Greeting {
    fn from(bytes: Vec<u8>) -> Self {
        Greeting(Arc::new(bytes.into_boxed_slice()))
    }
}

impl From<&[u8]> for Greeting {
    fn from(bytes: &[u8]) -> Self {
        Greeting::from(bytes.to_vec())
    }
}

impl From<&str> for Greeting {
    fn from(text: &str) -> Self {
        Greeting::from(text.as_bytes())
    }
}

impl fmt::Debug for Greeting {
    /// Its length: a greeting may be a gigabyte.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Greeting({} bytes)", self.len())
    }
}

/// Reads a greeting file once, at the size it has when opened, straight into the
/// shared allocation every connection will use (no second copy: a 1 GiB greeting
/// costs 1 GiB, also while it is read). Only regular files: a device such as
/// /dev/zero never ends, and a FIFO without a writer would block (it is opened
/// nonblocking, so that the check below can refuse it).
///
/// The file must stay as it was while it is read: if fewer or more bytes come than
/// its size at open, or its size or modification time differ afterwards, the read
/// fails rather than serve a mix of two versions. (Write a new greeting to another
/// file and rename it over the old one: a rename is atomic.)
///
/// # Errors
/// A [`Failure`] naming the path and the cause.
pub fn read_greeting_file(path: &Path) -> Result<Greeting, Failure> {
    let fail = |err: io::Error, hint| {
        Failure::new(
            format!("cannot read greeting file {}", path.display()),
            err,
            Some(hint),
        )
    };
    const CHECK_PATH: &str = "check the --message-file path and its permissions";
    let (mut file, before) = match open_regular(path) {
        Ok(opened) => opened,
        Err(OpenFailure::Io(err)) => return Err(fail(err, CHECK_PATH)),
        Err(OpenFailure::NotRegular) => {
            return Err(fail(
                not_regular(),
                "give --message-file a file, not a device, FIFO or directory",
            ))
        }
    };
    if before.len() > MAX_GREETING_BYTES {
        let err = io::Error::new(io::ErrorKind::InvalidInput, "larger than 1GiB");
        return Err(fail(
            err,
            "a greeting is held in memory and sent whole: use a smaller file",
        ));
    }
    read_unchanged(&mut file, &before).map_err(|err| {
        fail(
            err,
            "write the new greeting to another file, then rename it over this one",
        )
    })
}

/// Reads `file`, whose metadata at open was `before`, whole into one allocation, and
/// checks that it did not change meanwhile.
fn read_unchanged(file: &mut std::fs::File, before: &std::fs::Metadata) -> io::Result<Greeting> {
    let changed = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it {what} while being read"),
        )
    };
    let len = usize::try_from(before.len()).map_err(|_| changed("is too large"))?;
    // Allocated once at its final size (zeroed pages come from the kernel, not from a
    // memset), then filled in place by the read.
    let mut greeting = vec![0u8; len];
    file.read_exact(&mut greeting)
        .map_err(|err| match err.kind() {
            io::ErrorKind::UnexpectedEof => changed("shrank"),
            _ => err,
        })?;
    if file.read(&mut [0u8; 1])? > 0 {
        return Err(changed("grew"));
    }
    let after = file.metadata()?;
    if after.len() != before.len() || after.modified().ok() != before.modified().ok() {
        return Err(changed("changed"));
    }
    Ok(Greeting::from(greeting))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A file, opened and examined as a reload does, then changed by `change` before
    /// it is read.
    fn read_after(name: &str, change: impl FnOnce(&std::fs::File)) -> io::Result<usize> {
        let path = std::env::temp_dir().join(format!("greeter-{}-{name}", std::process::id()));
        std::fs::write(&path, vec![b'a'; 100_000]).unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let before = file.metadata().unwrap();
        let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        change(&writer);
        let read = read_unchanged(&mut file, &before);
        let _ = std::fs::remove_file(&path);
        // Its length, not its bytes, if it was read: a failure message stays short.
        read.map(|greeting| greeting.len())
    }

    #[test]
    fn a_greeting_file_that_changes_while_it_is_read_is_refused() {
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
