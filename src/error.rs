//! One-line, actionable error messages for failures that stop a program.

use std::fmt;
use std::io;

/// A failure that stops the program, at start-up or when a worker fails: what was
/// attempted, what the system said, and (where one helps) how to fix it.
///
/// It displays as one line, e.g. `cannot listen on 127.0.0.1:8080: address already in
/// use (another process holds this port: stop it, or pick another --port)`.
#[derive(Debug)]
pub struct Failure {
    /// The operation and its subject, e.g. `cannot listen on [::]:22`.
    context: String,
    /// What the operating system answered.
    source: io::Error,
    /// A hint naming the fix, when the cause is a common one.
    hint: Option<&'static str>,
}

impl Failure {
    /// Wraps `source` with the operation that failed (`context`) and an optional hint.
    pub fn new(context: impl Into<String>, source: io::Error, hint: Option<&'static str>) -> Self {
        Failure {
            context: context.into(),
            source,
            hint,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, describe_io_error(&self.source))?;
        if let Some(hint) = self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The system's description of an I/O error as a lower-case phrase, without the
/// `(os error N)` suffix, so that it reads well inside a sentence:
/// `address already in use`, `no such file or directory`.
pub fn describe_io_error(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match (err.raw_os_error(), text.find(" (os error")) {
        (Some(_), Some(cut)) => &text[..cut],
        _ => text.as_str(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// How many bytes of a bad input an error quotes: enough to recognise it, never a
/// flood of it (postscreen's rule). A one-line JSON blocklist given as a list file
/// must not become a multi-megabyte error line.
pub const QUOTED_BYTES: usize = 100;

/// `bytes` as an error quotes them: in double quotes, escaped as `{:?}` escapes text
/// (control characters, quotes, backslashes), a byte that is not UTF-8 as `\xNN`; at
/// most the first [`QUOTED_BYTES`] (cut at a character), then `...` and the whole
/// length: `"{\"deny\": [\"192.0.2.1\", ..."... (5242880 bytes)`.
pub fn quote(bytes: &[u8]) -> String {
    let (mut out, cut) = quote_start(bytes);
    if cut {
        out.push_str(&format!(" ({} bytes)", bytes.len()));
    }
    out
}

/// As [`quote`], for the start of something longer (a line cut at a limit): `...`
/// after the quote if `bytes` are more than it shows, no length. Also says whether
/// they were.
pub fn quote_start(bytes: &[u8]) -> (String, bool) {
    let mut shown = bytes.len().min(QUOTED_BYTES);
    // Back off to the start of a character rather than cut one in two (a UTF-8
    // character is at most 4 bytes: at most 3 continuation bytes to skip).
    for _ in 0..3 {
        if shown < bytes.len() && shown > 0 && bytes[shown] & 0xC0 == 0x80 {
            shown -= 1;
        }
    }
    let mut out = String::with_capacity(shown + 32);
    out.push('"');
    for chunk in bytes[..shown].utf8_chunks() {
        let text = format!("{:?}", chunk.valid());
        out.push_str(&text[1..text.len() - 1]);
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out.push('"');
    let cut = shown < bytes.len();
    if cut {
        out.push_str("...");
    }
    (out, cut)
}

/// `text` bare when it is short and `{:?}` would escape nothing in it, else
/// [`quote`]d: for messages that name a value unquoted (`unknown key colour`), so that
/// a megabyte or a control character never reaches an error line as it is.
pub fn bare_or_quoted(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= QUOTED_BYTES && format!("{text:?}").len() == text.len() + 2 {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(quote(text.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_a_lower_case_phrase() {
        let err = io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(describe_io_error(&err), "address already in use");
    }

    #[test]
    fn custom_errors_keep_their_text() {
        let err = io::Error::new(io::ErrorKind::TimedOut, "Connect timed out");
        assert_eq!(describe_io_error(&err), "connect timed out");
    }

    #[test]
    fn startup_error_is_one_line_with_context_cause_and_hint() {
        let err = Failure::new(
            "cannot listen on 127.0.0.1:80",
            io::Error::from_raw_os_error(libc::EACCES),
            Some("use a port above 1023"),
        );
        let text = err.to_string();
        assert_eq!(
            text,
            "cannot listen on 127.0.0.1:80: permission denied (use a port above 1023)"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn a_quote_is_escaped_and_cut() {
        assert_eq!(quote(b"10.0.0.300"), "\"10.0.0.300\"");
        assert_eq!(quote(b"a\"b\\c\r\n\x00"), "\"a\\\"b\\\\c\\r\\n\\0\"");
        assert_eq!(quote(b"caf\xc3\xa9 \xff"), "\"caf\u{e9} \\xff\"");
        let long = vec![b'x'; 5_000_000];
        let quoted = quote(&long);
        assert_eq!(
            quoted,
            format!("\"{}\"... (5000000 bytes)", "x".repeat(QUOTED_BYTES))
        );
        // A character astride the cut is left out whole, never split into \xNN.
        let mut accented = vec![b'x'; QUOTED_BYTES - 1];
        accented.extend_from_slice("\u{e9}\u{e9}".as_bytes());
        let quoted = quote(&accented);
        assert!(quoted.ends_with("x\"... (103 bytes)"), "{quoted}");
        assert_eq!(bare_or_quoted("colour"), "colour");
        assert_eq!(bare_or_quoted("a\nb"), "\"a\\nb\"");
        assert!(bare_or_quoted(&"k".repeat(100_000)).ends_with("... (100000 bytes)"));
    }
}
