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
}
