//! A problem with the settings, as one line: what the flags, the environment, the
//! config file and the checks of the layers and the listeners all report, below every
//! other room of the settings so that each can say it.

use std::fmt;

use crate::error::Failure;

/// A problem with the flags, the environment or the config file, as one line (the
/// program stops with exit code 2, as for a bad flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

impl SettingsError {
    /// As a [`Failure`], for the callers that stop on those.
    pub fn into_failure(self) -> Failure {
        Failure::new(
            "invalid configuration",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, self.0),
            None,
        )
    }
}
