//! `--check-config`'s printing: the effective settings as a config file, every key
//! with a comment saying where its value came from. Fed back with `--config`, it
//! gives the same settings.

use std::fmt::Write as _;

use crate::config::keys::{FileType, Key, KEYS};
use crate::config::layers::Values;
use crate::config::settings::Settings;
use crate::config::values::normalise_path;
use crate::greeting::DEFAULT_GREETING;

impl Settings {
    /// The effective settings as a config file: every key with a comment saying where
    /// its value came from (`# default`, `# file`, `# env GREETER_PORT`, `# flag`).
    /// Fed back with `--config`, it gives the same settings.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let from = self
            .config_path
            .as_deref()
            .map(|path| {
                // Absolute, as every path printed: the same from any directory.
                let shown = std::env::current_dir()
                    .map_or_else(|_| path.to_owned(), |here| normalise_path(&here.join(path)));
                format!(
                    " (config file {})",
                    comment_text(&shown.display().to_string())
                )
            })
            .unwrap_or_default();
        let _ = writeln!(out, "# greeter-server's effective configuration{from}.");
        let _ = writeln!(out, "# After each value: where it came from.");
        for key in KEYS {
            if self.from_tables && matches!(key.name, "host" | "port") {
                continue;
            }
            write_value(&mut out, key, &self.top);
        }
        if self.from_tables {
            for listener in &self.listeners {
                let _ = writeln!(out, "\n[[listener]]");
                for key in KEYS.iter().filter(|key| key.per_listener) {
                    write_value(&mut out, key, listener);
                }
            }
        }
        out
    }
}

/// `text` as a one-line TOML string, escaped as need be.
fn toml_string(text: &str) -> String {
    use toml_writer::ToTomlValue;
    toml_writer::TomlStringBuilder::new(text)
        .as_basic()
        .to_toml_value()
}

/// `text` fit for a comment: a control character (a newline would end the comment
/// and start a line of garbage) escaped.
fn comment_text(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// `key = value  # source`, or a comment saying it is not set.
fn write_value(out: &mut String, key: &Key, values: &Values) {
    let Some(value) = values.get(key.name) else {
        if key.name == "message" && !values.contains_key("message-file") {
            let default = toml_string(DEFAULT_GREETING);
            let _ = writeln!(out, "message = {default}  # default");
        } else {
            let _ = writeln!(out, "# {} is not set", key.name);
        }
        return;
    };
    let string = |text: &String| toml_string(text);
    let literal = match key.file_type {
        FileType::Integer | FileType::Boolean => value.text.join(""),
        FileType::Size
            if value
                .text
                .iter()
                .all(|text| text.bytes().all(|b| b.is_ascii_digit())) =>
        {
            value.text.join("")
        }
        FileType::Size | FileType::Text => value.text.iter().map(string).collect(),
        FileType::Hosts => format!(
            "[{}]",
            value.text.iter().map(string).collect::<Vec<_>>().join(", ")
        ),
    };
    let _ = writeln!(out, "{} = {literal}  # {}", key.name, value.source);
}
