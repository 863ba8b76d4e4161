//! The greeting: the bytes every connection is sent from (shared, never copied), the
//! default one, and reading a greeting file once, checked, into them.

use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use crate::error::Failure;
use crate::files::{not_regular, open_regular, read_unchanged, OpenFailure};

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
    read_unchanged(&mut file, &before)
        .map(Greeting::from)
        .map_err(|err| {
            fail(
                err,
                "write the new greeting to another file, then rename it over this one",
            )
        })
}
