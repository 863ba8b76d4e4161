//! The layers of the settings: flags over environment (`GREETER_*`) over the config
//! file over the defaults, each value kept as flag text with where it came from.
//! Values are checked by the flags' own parsers as they enter ([`check_value`]), so
//! that what wins is a value the flags would take. With `[[listener]]` tables, each
//! table's own values go over the top-level ones (its defaults).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::config::error::SettingsError;
use crate::config::file::{ConfigFile, FileValue, ListenerTable};
use crate::config::flags::{check_value, empty_value};
use crate::config::keys::{self, FileType, Key, KEYS};
use crate::config::values::canonical_value;
use crate::error::quote;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The flag's default.
    Default,
    /// The config file.
    File,
    /// This environment variable.
    Env(String),
    /// A command-line flag.
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File => f.write_str("file"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// One setting's value as flag text (several for `host`), and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Value {
    /// The value as flag text.
    pub text: Vec<String>,
    /// Where it came from.
    pub source: Source,
    /// Its line in the config file, when it came from there.
    pub line: Option<usize>,
}

/// Values by key name.
pub(super) type Values = BTreeMap<&'static str, Value>;

/// The process's `GREETER_*` variables, read once.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub(super) vars: BTreeMap<String, OsString>,
}

impl Environment {
    /// The `GREETER_*` variables of this process.
    pub fn from_process() -> Self {
        Environment {
            vars: std::env::vars_os()
                .filter(|(name, _)| {
                    name.to_str()
                        .is_some_and(|name| name.starts_with("GREETER_"))
                })
                .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
                .collect(),
        }
    }

    /// These variables only (for tests and embedding programs).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Environment {
            vars: pairs
                .into_iter()
                .map(|(name, value)| (name.to_owned(), OsString::from(value)))
                .collect(),
        }
    }
}

/// The variable naming the config file, when `--config` does not.
pub(super) const CONFIG_VAR: &str = "GREETER_CONFIG";

/// Every layer's values, merged: the top-level values (with every default) and, per
/// listener, its own (at least one listener).
pub(super) struct Layered {
    /// The top-level values, each the one of the highest layer that sets it.
    pub top: Values,
    /// Per listener, its `host`, `port`, greeting and `proxy-protocol` (and what else
    /// it may set for itself), over what it inherits.
    pub listeners: Vec<Values>,
    /// Whether the listeners come from `[[listener]]` tables.
    pub from_tables: bool,
}

/// Merges the layers: for each key the value of the highest layer that sets it, one
/// greeting, and the listeners (one per `[[listener]]` table of `file`, else the top
/// level's one).
///
/// # Errors
/// Two greetings in one layer, a top-level `host` or `port` beside tables, or a table
/// without a port.
pub(super) fn merge(
    flags: &Values,
    env: &Values,
    defaults: &Values,
    file: Option<&ConfigFile>,
) -> Result<Layered, SettingsError> {
    let mut file_top = Values::new();
    for value in file.iter().flat_map(|file| &file.top) {
        file_top.insert(value.key.name, from_file(value));
    }
    let mut top = Values::new();
    for key in KEYS {
        let winner = [flags, env, &file_top, defaults]
            .into_iter()
            .find_map(|layer| layer.get(key.name));
        if let Some(value) = winner {
            top.insert(key.name, value.clone());
        }
    }
    one_greeting(&mut top, file)?;
    let tables = file.map_or(&[][..], |file| &file.listeners[..]);
    let from_tables = !tables.is_empty();
    let listeners = if from_tables {
        let file = file.map_or_else(PathBuf::new, |file| file.path.clone());
        refuse_top_level_address(&top, &file)?;
        tables
            .iter()
            .map(|table| listener_values(&top, defaults, table, &file))
            .collect::<Result<_, _>>()?
    } else {
        vec![per_listener(&top)]
    };
    Ok(Layered {
        top,
        listeners,
        from_tables,
    })
}

/// Whether `name` is a key a listener may set for itself.
pub(super) fn is_per_listener(name: &str) -> bool {
    keys::find(name).is_some_and(|key| key.per_listener)
}

/// The top-level values a listener inherits (all of its keys but `host` and `port`,
/// which are its own).
fn per_listener(top: &Values) -> Values {
    top.iter()
        .filter(|(name, _)| is_per_listener(name))
        .map(|(name, value)| (*name, value.clone()))
        .collect()
}

/// A file value as a layer's value.
fn from_file(value: &FileValue) -> Value {
    Value {
        text: value.values.clone(),
        source: Source::File,
        line: Some(value.line),
    }
}

/// The flags given and the defaults, from clap's matches.
pub(super) fn command_line(matches: &ArgMatches) -> Result<(Values, Values), SettingsError> {
    let (mut flags, mut defaults) = (Values::new(), Values::new());
    for key in KEYS {
        let id = key.name.replace('-', "_");
        let (layer, source) = match matches.value_source(&id) {
            Some(ValueSource::CommandLine) => (&mut flags, Source::Flag),
            Some(ValueSource::DefaultValue) => (&mut defaults, Source::Default),
            _ => continue,
        };
        let text = if key.file_type == FileType::Boolean {
            vec![(source == Source::Flag).to_string()]
        } else {
            let raw = matches.get_raw(&id).into_iter().flatten();
            raw.map(|text| {
                let text = text.to_str().ok_or_else(|| {
                    SettingsError(format!("--{} is not UTF-8 (give a UTF-8 value)", key.name))
                })?;
                canonical_value(key, text, Path::new(""))
                    .map_err(|cause| SettingsError(format!("--{}: {cause}", key.name)))
            })
            .collect::<Result<_, _>>()?
        };
        if let Some(cause) = text.iter().find_map(|text| empty_value(key.name, text)) {
            return Err(SettingsError(format!("cannot use --{}: {cause}", key.name)));
        }
        layer.insert(
            key.name,
            Value {
                text,
                source,
                line: None,
            },
        );
    }
    Ok((flags, defaults))
}

/// The `GREETER_*` variables' values, and a warning for each unknown variable that
/// looks like a misspelt known one. An empty variable counts as unset; unknown
/// variables are ignored (a platform may set its own, such as Kubernetes'
/// `GREETER_SERVICE_HOST`).
pub(super) fn environment(env: &Environment) -> Result<(Values, Vec<String>), SettingsError> {
    let mut values = Values::new();
    for key in KEYS {
        let var = keys::env_var(key.name);
        let Some(raw) = env.vars.get(&var) else {
            continue;
        };
        let text = raw
            .to_str()
            .ok_or_else(|| SettingsError(format!("{var} is not UTF-8 (give a UTF-8 value)")))?;
        if text.is_empty() {
            continue;
        }
        let text = env_value(key, &var, text)?;
        values.insert(
            key.name,
            Value {
                text,
                source: Source::Env(var),
                line: None,
            },
        );
    }
    let known: Vec<String> = KEYS
        .iter()
        .map(|key| keys::env_var(key.name))
        .chain([CONFIG_VAR.to_owned()])
        .collect();
    let warnings = env
        .vars
        .keys()
        .filter(|var| !known.contains(var))
        .filter_map(|var| {
            // Compared without the prefix, which every candidate shares.
            let suffix = |name: &'_ str| name.trim_start_matches("GREETER_").to_owned();
            let suffixes: Vec<String> = known.iter().map(|name| suffix(name)).collect();
            let meant = keys::closest(&suffix(var), suffixes.iter().map(String::as_str))?;
            Some(format!(
                "ignoring {var}: no such setting (did you mean GREETER_{meant}?)"
            ))
        })
        .collect();
    Ok((values, warnings))
}

/// One variable's value as flag text, checked.
fn env_value(key: &Key, var: &str, text: &str) -> Result<Vec<String>, SettingsError> {
    match key.file_type {
        FileType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(vec!["true".into()]),
            "false" | "0" | "no" | "off" => Ok(vec!["false".into()]),
            _ => Err(SettingsError(format!(
                "{var}={}: write true or false",
                quote(text.as_bytes())
            ))),
        },
        file_type => {
            let texts: Vec<String> = if file_type == FileType::Hosts {
                text.split(',')
                    .map(str::trim)
                    .filter(|host| !host.is_empty())
                    .map(str::to_owned)
                    .collect()
            } else {
                vec![text.to_owned()]
            };
            if texts.is_empty() {
                // Not unset (that is an empty variable), and not a list the file could
                // write: the server would run with the default instead.
                return Err(SettingsError(format!(
                    "{var}={} names nothing between its commas (give one value or \
                     several separated by commas, or leave {var} empty to unset it)",
                    quote(text.as_bytes())
                )));
            }
            for one in &texts {
                check_value(key.name, one).map_err(|cause| {
                    // Kubernetes sets GREETER_PORT=tcp://IP:PORT for a Service named
                    // greeter in the same namespace.
                    let hint = if text.starts_with("tcp://") {
                        " (Kubernetes sets this for a Service named greeter: set enableServiceLinks: false in the pod spec, or name the Service otherwise)"
                    } else {
                        ""
                    };
                    SettingsError(format!("{var}={}: {cause}{hint}", quote(text.as_bytes())))
                })?;
            }
            texts
                .iter()
                .map(|one| {
                    canonical_value(key, one, Path::new("")).map_err(|cause| {
                        SettingsError(format!("{var}={}: {cause}", quote(text.as_bytes())))
                    })
                })
                .collect()
        }
    }
}

/// Keeps one greeting: `message` or `message-file`, whichever the higher layer set.
/// One layer setting both is an error.
fn one_greeting(top: &mut Values, file: Option<&ConfigFile>) -> Result<(), SettingsError> {
    let (Some(message), Some(message_file)) = (top.get("message"), top.get("message-file")) else {
        return Ok(());
    };
    let rank = |source: &Source| match source {
        Source::Default => 0,
        Source::File => 1,
        Source::Env(_) => 2,
        Source::Flag => 3,
    };
    let dropped = match rank(&message.source).cmp(&rank(&message_file.source)) {
        std::cmp::Ordering::Greater => "message-file",
        std::cmp::Ordering::Less => "message",
        std::cmp::Ordering::Equal => {
            return Err(SettingsError(match (&message.source, file) {
                (Source::File, Some(file)) => format!(
                    "{}:{}: message and message-file are both set (give one)",
                    file.path.display(),
                    message.line.max(message_file.line).unwrap_or(1)
                ),
                _ => "GREETER_MESSAGE and GREETER_MESSAGE_FILE are both set (give one)".into(),
            }))
        }
    };
    top.remove(dropped);
    Ok(())
}

/// With `[[listener]]` tables, the top level may not set `host` or `port`: which
/// listener would they be for?
fn refuse_top_level_address(top: &Values, file: &Path) -> Result<(), SettingsError> {
    for name in ["host", "port"] {
        let Some(value) = top.get(name) else {
            continue;
        };
        let what = match &value.source {
            Source::Default => continue,
            Source::Flag => format!("--{name}"),
            Source::Env(var) => var.clone(),
            Source::File => format!(
                "{}:{}: {name} at the top level",
                file.display(),
                value.line.unwrap_or(1)
            ),
        };
        return Err(SettingsError(format!(
            "{what} cannot be used with the [[listener]] tables of {} (give each listener its {name})",
            file.display()
        )));
    }
    Ok(())
}

/// One `[[listener]]` table's values: its own over the top-level ones, its host by
/// default the flags' default; a port it must give.
fn listener_values(
    top: &Values,
    defaults: &Values,
    table: &ListenerTable,
    file: &Path,
) -> Result<Values, SettingsError> {
    let mut values = per_listener(top);
    values.remove("port");
    if let Some(host) = defaults.get("host") {
        values.insert("host", host.clone());
    }
    let own: Values = table
        .values
        .iter()
        .map(|value| (value.key.name, from_file(value)))
        .collect();
    let at = |line: usize| format!("{}:{line}", file.display());
    if own.contains_key("message") || own.contains_key("message-file") {
        if own.contains_key("message") && own.contains_key("message-file") {
            return Err(SettingsError(format!(
                "{}: this [[listener]] sets both message and message-file (give one)",
                at(table.line)
            )));
        }
        values.remove("message");
        values.remove("message-file");
    }
    values.extend(own);
    if !values.contains_key("port") {
        return Err(SettingsError(format!(
            "{}: this [[listener]] has no port (give it port = N)",
            at(table.line)
        )));
    }
    Ok(values)
}
