//! Every setting's name, in one table: the long flag, the config-file key and the
//! environment variable are the same name in three spellings (`--max-connections`,
//! `max-connections`, `GREETER_MAX_CONNECTIONS`). Defaults, help and value parsing
//! stay with the flags' definitions in [`crate::config::flags`]; this table adds what
//! only the file and reload need: how a value is written in TOML, whether a
//! `[[listener]]` may set it, and whether a reload can apply it.

/// How a key's value is written in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A TOML integer (`port = 2222`).
    Integer,
    /// A TOML boolean (`proxy-protocol = true`).
    Boolean,
    /// A TOML string, as the flag takes it (`write-timeout = "30s"`).
    Text,
    /// A byte size: an integer, or a string with a unit (`send-buffer = "64KiB"`).
    Size,
    /// A string, or an array of strings for several (`host = ["127.0.0.1", "::1"]`,
    /// `deny = ["192.0.2.0/24"]`).
    Hosts,
}

/// When a changed value takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// A SIGHUP applies it to new connections.
    AtReload,
    /// It needs new sockets or threads: a reload warns and keeps the old value.
    AtRestart,
}

/// One setting.
#[derive(Debug)]
pub struct Key {
    /// The name: the long flag without `--`, and the config-file key.
    pub name: &'static str,
    /// How the file writes its value.
    pub file_type: FileType,
    /// Whether a reload applies a change.
    pub applies: Applies,
    /// Whether a `[[listener]]` table may set it for that listener alone.
    pub per_listener: bool,
}

const fn key(name: &'static str, file_type: FileType, applies: Applies) -> Key {
    Key {
        name,
        file_type,
        applies,
        per_listener: false,
    }
}

const fn listener_key(name: &'static str, file_type: FileType, applies: Applies) -> Key {
    Key {
        name,
        file_type,
        applies,
        per_listener: true,
    }
}

use Applies::{AtReload, AtRestart};
use FileType::{Boolean, Hosts, Integer, Size, Text};

/// Every setting, in the order `--check-config` prints them.
pub const KEYS: &[Key] = &[
    listener_key("host", Hosts, AtRestart),
    listener_key("port", Integer, AtRestart),
    listener_key("name", Text, AtRestart),
    listener_key("message", Text, AtReload),
    listener_key("message-file", Text, AtReload),
    listener_key("proxy-protocol", Boolean, AtRestart),
    listener_key("allow", Hosts, AtReload),
    listener_key("deny", Hosts, AtReload),
    listener_key("allow-file", Hosts, AtReload),
    listener_key("deny-file", Hosts, AtReload),
    listener_key("deny-message", Text, AtReload),
    listener_key("deny-action", Text, AtReload),
    listener_key("max-rate-per-ip", Text, AtReload),
    listener_key("rate-prefix-v4", Integer, AtReload),
    listener_key("rate-prefix-v6", Integer, AtReload),
    listener_key("rate-table-size", Integer, AtReload),
    listener_key("rate-group", Text, AtReload),
    listener_key("rate-action", Text, AtReload),
    listener_key("greet-delay", Text, AtReload),
    listener_key("pregreet", Text, AtReload),
    listener_key("pass-ttl", Text, AtReload),
    listener_key("pass-table-size", Integer, AtReload),
    listener_key("tarpit", Boolean, AtReload),
    listener_key("drip", Text, AtReload),
    listener_key("drip-line-length", Integer, AtReload),
    listener_key("drip-interval", Text, AtReload),
    listener_key("drip-bytes", Integer, AtReload),
    key("max-connections", Integer, AtReload),
    key("max-delayed", Integer, AtReload),
    key("max-per-ip", Integer, AtReload),
    key("max-trapped", Integer, AtReload),
    key("max-trapped-per-ip", Integer, AtReload),
    key("trap-timeout", Text, AtReload),
    key("geoip-db", Text, AtReload),
    key("write-timeout", Text, AtReload),
    key("linger-timeout", Text, AtReload),
    key("drain-timeout", Text, AtReload),
    key("shutdown-delay", Text, AtRestart),
    key("proxy-timeout", Text, AtReload),
    key("log-connections", Boolean, AtReload),
    key("log-format", Text, AtRestart),
    key("backlog", Integer, AtRestart),
    key("send-buffer", Size, AtRestart),
    key("workers", Integer, AtRestart),
    key("metrics", Text, AtRestart),
    key("upgrade-timeout", Text, AtRestart),
    key("pid-file", Text, AtRestart),
];

impl Key {
    /// Whether its value names a file (`message-file`, `pid-file`, `geoip-db`, ...):
    /// taken relative to the config file's directory when written there, made
    /// absolute and normalised wherever it comes from.
    pub fn is_path(&self) -> bool {
        self.name.ends_with("-file") || self.name == "geoip-db"
    }
}

/// The key named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|key| key.name == name)
}

/// The environment variable of key `name`: `GREETER_` and the name upper-cased, with
/// `_` for `-` (`GREETER_MAX_CONNECTIONS`).
pub fn env_var(name: &str) -> String {
    format!("GREETER_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// The candidate most like `typed`, if one is close enough to be what was meant
/// (`max-conections`: `max-connections`).
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(typed, candidate), candidate))
        .filter(|(similarity, _)| *similarity > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_are_the_names_upper_cased() {
        assert_eq!(env_var("max-connections"), "GREETER_MAX_CONNECTIONS");
        assert_eq!(env_var("port"), "GREETER_PORT");
    }

    #[test]
    fn a_misspelt_key_finds_the_one_meant() {
        let names = || KEYS.iter().map(|key| key.name);
        assert_eq!(closest("max-conections", names()), Some("max-connections"));
        assert_eq!(closest("mesage", names()), Some("message"));
        assert_eq!(closest("colour", names()), None);
    }
}
