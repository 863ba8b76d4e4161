//! The config file (`--config`): TOML, read once per start or reload. Every key is
//! checked against [`KEYS`] (a misspelt one gets a suggestion), every value against
//! its TOML type and then the flag's own parser, and every error names the file and
//! line: `greeter.toml:7: unknown key max-conections (did you mean
//! max-connections?)`.

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::config::error::SettingsError;
use crate::config::flags::check_value;
use crate::config::keys::{self, FileType, Key, KEYS};
use crate::config::values::canonical_value;
use crate::files::{open_regular, read_unchanged, OpenFailure};

/// The largest config file read: far beyond any real one, so that a wrong path (a
/// log, a device) fails at once instead of filling memory.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A config file, read and checked.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Where it was read from, as given.
    pub path: PathBuf,
    /// Its top-level values, in file order.
    pub top: Vec<FileValue>,
    /// Its `[[listener]]` tables, in order.
    pub listeners: Vec<ListenerTable>,
}

/// One value the file sets, as a flag would take it.
#[derive(Debug, Clone)]
pub struct FileValue {
    /// The key it sets.
    pub key: &'static Key,
    /// Its value as flag text: one, or several for `host`.
    pub values: Vec<String>,
    /// The line it is on.
    pub line: usize,
}

/// One `[[listener]]` table.
#[derive(Debug, Clone)]
pub struct ListenerTable {
    /// The line of its header.
    pub line: usize,
    /// The values it sets for itself, in file order.
    pub values: Vec<FileValue>,
}

impl ConfigFile {
    /// Reads and checks the file at `path`. Relative paths in it (`message-file`,
    /// `deny-file`, ...) are taken relative to the file's directory, as a file in /etc
    /// means, and every path is made absolute and normalised.
    ///
    /// # Errors
    /// A one-line [`SettingsError`] naming the file (and the line, for what is in it).
    pub fn read(path: &Path) -> Result<ConfigFile, SettingsError> {
        let text = read_text(path)?;
        let at = |offset: usize| Location {
            path,
            line: line_of(&text, offset),
        };
        let document = DeTable::parse(&text).map_err(|err| {
            let line = err.span().map_or(1, |span| line_of(&text, span.start));
            let message = err.message().trim().replace('\n', " ");
            SettingsError(format!("{}:{line}: {message}", path.display()))
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut file = ConfigFile {
            path: path.to_owned(),
            top: Vec::new(),
            listeners: Vec::new(),
        };
        for (name, value) in document.get_ref() {
            let where_ = at(name.span().start);
            if name.get_ref() == "listener" {
                file.listeners = listener_tables(value, &at, base)?;
                continue;
            }
            let key = known_key(name.get_ref(), &where_)?;
            file.top.push(file_value(key, value, &at, base)?);
        }
        Ok(file)
    }
}

/// Where something is in the file, for its error.
struct Location<'a> {
    path: &'a Path,
    line: usize,
}

impl Location<'_> {
    fn error(&self, message: impl std::fmt::Display) -> SettingsError {
        SettingsError(format!("{}:{}: {message}", self.path.display(), self.line))
    }
}

/// The file's text: a regular file of at most [`MAX_FILE_BYTES`], in UTF-8.
fn read_text(path: &Path) -> Result<String, SettingsError> {
    let (mut file, before) = match open_regular(path) {
        Ok(opened) => opened,
        Err(OpenFailure::Io(err)) => {
            return Err(cannot_read(
                path,
                crate::error::describe_io_error(&err) + " (check the --config path)",
            ))
        }
        Err(OpenFailure::NotRegular) => {
            return Err(cannot_read(
                path,
                "not a regular file (give --config a TOML file)".into(),
            ))
        }
    };
    text_of(path, &mut file, &before)
}

/// `cannot read config file PATH: CAUSE`.
fn cannot_read(path: &Path, cause: String) -> SettingsError {
    SettingsError(format!(
        "cannot read config file {}: {cause}",
        path.display()
    ))
}

/// The text of `file` (the config file at `path`, whose metadata at open was
/// `before`), refused if it changed while it was read: a reload during a rewrite in
/// place must not install half a file (the greeting files' guard).
fn text_of(path: &Path, file: &mut File, before: &Metadata) -> Result<String, SettingsError> {
    if before.len() > MAX_FILE_BYTES {
        return Err(cannot_read(
            path,
            "larger than 1MiB: is this the config file?".into(),
        ));
    }
    let bytes = read_unchanged(file, before).map_err(|err| {
        cannot_read(
            path,
            crate::error::describe_io_error(&err)
                + " (write the new file in the same directory, then rename it over this one)",
        )
    })?;
    String::from_utf8(bytes).map_err(|err| {
        cannot_read(
            path,
            format!(
                "not UTF-8 (a TOML file is UTF-8; the first bad byte is at offset {})",
                err.utf8_error().valid_up_to()
            ),
        )
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key called `name`, or the error for an unknown one with the likeliest meant.
fn known_key(name: &str, at: &Location<'_>) -> Result<&'static Key, SettingsError> {
    keys::find(name).ok_or_else(|| {
        let names = KEYS.iter().map(|key| key.name).chain(["listener"]);
        let shown = crate::error::bare_or_quoted(name);
        match keys::closest(name, names) {
            Some(meant) => at.error(format_args!("unknown key {shown} (did you mean {meant}?)")),
            None => at.error(format_args!(
                "unknown key {shown} (the keys are the long flags of greeter-server --help)"
            )),
        }
    })
}

/// The `[[listener]]` tables.
fn listener_tables<'p>(
    value: &Spanned<DeValue<'_>>,
    at: &impl Fn(usize) -> Location<'p>,
    base: &Path,
) -> Result<Vec<ListenerTable>, SettingsError> {
    let here = at(value.span().start);
    let DeValue::Array(tables) = value.get_ref() else {
        return Err(
            here.error("listener must be [[listener]] tables (double brackets), one per listener")
        );
    };
    let mut listeners = Vec::with_capacity(tables.len());
    for table in tables {
        let line = at(table.span().start).line;
        let DeValue::Table(entries) = table.get_ref() else {
            return Err(at(table.span().start).error("each listener must be a table"));
        };
        let mut values = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            let where_ = at(name.span().start);
            let key = known_key(name.get_ref(), &where_)?;
            if !key.per_listener {
                return Err(where_.error(format_args!(
                    "{} cannot be set per listener (set it at the top level, before the first [[listener]])",
                    key.name
                )));
            }
            values.push(file_value(key, value, at, base)?);
        }
        listeners.push(ListenerTable { line, values });
    }
    Ok(listeners)
}

/// The value of `key`, type-checked and checked by the flag's parser, as flag text.
fn file_value<'p>(
    key: &'static Key,
    value: &Spanned<DeValue<'_>>,
    at: &impl Fn(usize) -> Location<'p>,
    base: &Path,
) -> Result<FileValue, SettingsError> {
    let here = at(value.span().start);
    let wrong_type = |expected: &str, example: &str| {
        here.error(format_args!(
            "{} must be {expected}, not {} (write {} = {example})",
            key.name,
            describe(value.get_ref()),
            key.name
        ))
    };
    let values = match (key.file_type, value.get_ref()) {
        (FileType::Boolean, DeValue::Boolean(yes)) => vec![yes.to_string()],
        (FileType::Boolean, _) => return Err(wrong_type("true or false", "true")),
        (FileType::Integer | FileType::Size, DeValue::Integer(number)) => {
            match i128::from_str_radix(number.as_str(), number.radix()) {
                Ok(number) => vec![number.to_string()],
                Err(_) => {
                    return Err(here.error(format_args!("{}: the number is out of range", key.name)))
                }
            }
        }
        (FileType::Integer, _) => return Err(wrong_type("an integer", "100")),
        (FileType::Text | FileType::Size | FileType::Hosts, DeValue::String(text)) => {
            vec![text.to_string()]
        }
        (FileType::Size, _) => return Err(wrong_type("a size", "\"64KiB\"")),
        (FileType::Hosts, DeValue::Array(items)) => {
            let hosts: Option<Vec<String>> = items
                .iter()
                .map(|item| item.get_ref().as_str().map(str::to_owned))
                .collect();
            match hosts {
                Some(hosts) if !hosts.is_empty() => hosts,
                _ => {
                    return Err(wrong_type(
                        "a string or a non-empty array of strings",
                        "[\"127.0.0.1\", \"::1\"]",
                    ))
                }
            }
        }
        (FileType::Hosts, _) => {
            return Err(wrong_type(
                "a string or an array of strings",
                "\"127.0.0.1\"",
            ))
        }
        (FileType::Text, _) => return Err(wrong_type("a string", "\"...\"")),
    };
    let mut values = values;
    if key.file_type != FileType::Boolean {
        values = values
            .iter()
            .map(|text| {
                check_value(key.name, text)
                    .and_then(|()| canonical_value(key, text, base))
                    .map_err(|cause| here.error(format_args!("{}: {cause}", key.name)))
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(FileValue {
        key,
        values,
        line: here.line,
    })
}

/// A TOML value's type, for an error message.
fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<ConfigFile, String> {
        // One file per call: tests run in parallel.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("greeter-file-{}-{call}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let read = ConfigFile::read(&path)
            .map_err(|err| err.to_string().replace(&path.display().to_string(), "FILE"));
        let _ = std::fs::remove_file(&path);
        read
    }

    #[test]
    fn values_become_flag_text() {
        let file = read(
            "port = 2222\nhost = [\"127.0.0.1\", \"::1\"]\nsend-buffer = \"64KiB\"\n\
             log-connections = true\nwrite-timeout = \"1m\"\n",
        )
        .unwrap();
        let values: Vec<(&str, Vec<String>, usize)> = file
            .top
            .iter()
            .map(|value| (value.key.name, value.values.clone(), value.line))
            .collect();
        assert!(
            values.contains(&("port", vec!["2222".into()], 1)),
            "{values:?}"
        );
        assert!(values.contains(&("host", vec!["127.0.0.1".into(), "::1".into()], 2)));
        assert!(values.contains(&("send-buffer", vec!["64KiB".into()], 3)));
        assert!(values.contains(&("log-connections", vec!["true".into()], 4)));
        assert!(values.contains(&("write-timeout", vec!["1m".into()], 5)));
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let cases = [
            ("port = 1\n\n\nmax-conections = 5\n", "FILE:4: unknown key max-conections (did you mean max-connections?)"),
            ("max-connections = \"lots\"\n", "FILE:1: max-connections must be an integer, not a string (write max-connections = 100)"),
            ("\nmax-connections = 0\n", "FILE:2: max-connections: 0 is not in 1..=4294967295"),
            ("write-timeout = \"soon\"\n", "FILE:1: write-timeout: expected number at 0 (write durations like 250ms, 10s or 1m)"),
            ("proxy-protocol = \"yes\"\n", "FILE:1: proxy-protocol must be true or false, not a string (write proxy-protocol = true)"),
            ("port = 99999999999999999999999\n", "FILE:1: "),
            ("port = \n", "FILE:1: "),
            ("[[listener]]\nport = 1\nworkers = 2\n", "FILE:3: workers cannot be set per listener"),
            ("[listener]\nport = 1\n", "FILE:1: listener must be [[listener]] tables"),
            ("colour = 1\n", "FILE:1: unknown key colour (the keys are the long flags"),
        ];
        for (text, expected) in cases {
            let err = read(text).unwrap_err();
            assert!(err.starts_with(expected), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
    }

    #[test]
    fn message_files_are_found_beside_the_config_file() {
        let file = read("message-file = \"banner.txt\"\n").unwrap();
        let expected = std::env::temp_dir().join("banner.txt");
        assert_eq!(file.top[0].values, [expected.display().to_string()]);
    }

    #[test]
    fn no_file_a_user_can_write_panics() {
        let deep = format!("host = {}{}\n", "[".repeat(5000), "]".repeat(5000));
        let long_key = format!("{} = 1\n", "k".repeat(100_000));
        let inputs = [
            deep.as_str(),
            long_key.as_str(),
            "port = {a = 1}\n",
            "port = 1.5\n",
            "port = nan\n",
            "port = 1979-05-27T07:32:00Z\n",
            "port = -1\n",
            "port = 0x1F90\n",
            "send-buffer = -5\n",
            "send-buffer = 99999999999999999\n",
            "host = []\n",
            "host = [1, 2]\n",
            "listener = [1, 2]\n",
            "listener = \"x\"\n",
            "[[listener]]\n[listener.inner]\nport = 1\n",
            "[[listener]]\nlistener = 1\n",
            "[port]\n",
            "message = \"\\u0000\"\n",
            "\u{feff}port = 1\n",
            "ключ = 1\n",
            "=\n",
            "\"\"\"\n",
        ];
        for input in inputs {
            if let Err(err) = read(input) {
                assert!(!err.contains('\n'), "{input:?}: {err}");
            }
        }
        assert_eq!(read("port = 0x1F90\n").unwrap().top[0].values, ["8080"]);
    }

    #[test]
    fn a_file_that_changes_while_it_is_read_is_refused() {
        let path =
            std::env::temp_dir().join(format!("greeter-file-{}-grew.toml", std::process::id()));
        std::fs::write(&path, "port = 2222\n").unwrap();
        let (mut file, before) = open_regular(&path).map_err(|_| ()).unwrap();
        // Rewritten in place after it was opened, as `cat >` or a config tool does.
        std::fs::write(&path, "port = 2222\ndeny = [\"192.0.2.0/24\"]\n").unwrap();
        let read = text_of(&path, &mut file, &before);
        let _ = std::fs::remove_file(&path);
        let err = read.unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cannot read config file {}: it grew while being read (write the new file in the same directory, then rename it over this one)",
                path.display()
            )
        );
    }

    #[test]
    fn an_error_quotes_at_most_the_start_of_a_long_value() {
        let long = "x".repeat(5_000);
        let inputs = [
            format!("{long} = 1\n"),
            format!("log-format = \"{long}\"\n"),
            format!("pregreet = \"a\\nb{long}\"\n"),
            format!("send-buffer = \"{long}\"\n"),
            format!("max-rate-per-ip = \"{long}\"\n"),
            format!("metrics = \"{long}\"\n"),
            format!("deny = \"{long}\"\n"),
            format!("port = \"{long}\"\n"),
            format!("\"{long}\" = 1\n"),
            format!("port = 1\n{long}\n"),
        ];
        for input in &inputs {
            let err = read(input).unwrap_err();
            assert!(
                err.len() < 400 && !err.contains('\n'),
                "{} bytes: {}",
                err.len(),
                &err[..err.len().min(400)]
            );
        }
        assert_eq!(
            read(&inputs[0]).unwrap_err(),
            format!(
                "FILE:1: unknown key \"{}\"... (5000 bytes) (the keys are the long flags of greeter-server --help)",
                "x".repeat(100)
            )
        );
    }
}
