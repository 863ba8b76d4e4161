//! The settings in layers: flags over environment (`GREETER_*`) over the config file
//! over the defaults, each value kept with where it came from. Values are flag text,
//! checked by the flags' own parsers as they enter ([`check_value`]), so that the
//! typed [`ServerArgs`] of each listener is the flags' parse of the winning values.
//!
//! With `[[listener]]` tables there is one listener per table: its own `host`, `port`,
//! greeting and `proxy-protocol`, over the top-level values (its defaults). Without,
//! the top-level values are the one listener.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::parser::ValueSource;
use clap::{ArgMatches, Parser};

use crate::access::AccessList;
use crate::admission::Policy;
use crate::config::file::ConfigFile;
use crate::config::flags::{check_value, empty_value, parse_error_cause, ServerArgs, ServerCli};
use crate::config::keys::{self, Applies, FileType, Key, KEYS};
use crate::config::listener_id::{self, ListenerId};
use crate::config::{canonical_value, normalise_path, Config, DEFAULT_GREETING};
use crate::error::{quote, Failure};
use crate::rate::RateTable;

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
struct Value {
    text: Vec<String>,
    source: Source,
    /// Its line in the config file, when it came from there.
    line: Option<usize>,
}

/// Values by key name.
type Values = BTreeMap<&'static str, Value>;

/// The process's `GREETER_*` variables, read once.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, OsString>,
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
const CONFIG_VAR: &str = "GREETER_CONFIG";

/// The effective settings: every value with its source, and the listeners.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The command line's values, kept for a reload (which re-reads only the file).
    flags: Values,
    /// The environment's values, read once at start-up.
    env: Values,
    /// The flags' defaults.
    defaults: Values,
    /// The config file, if there is one.
    config_path: Option<PathBuf>,
    /// The top-level values (with every default).
    top: Values,
    /// Per listener, its `host`, `port`, greeting and `proxy-protocol` (at least one).
    listeners: Vec<Values>,
    /// Whether the listeners come from `[[listener]]` tables.
    from_tables: bool,
    /// What was ignored but probably meant (a misspelt `GREETER_` variable).
    warnings: Vec<String>,
    /// Whether the config file set any key (a file that is empty or only comments
    /// sets none; so does a file caught being rewritten in place).
    file_has_keys: bool,
}

impl Settings {
    /// The settings of a command line (`matches`, from [`ServerCli`]'s command), the
    /// environment and the config file they name (`--config`, else
    /// `GREETER_CONFIG`).
    ///
    /// # Errors
    /// The first problem, as one line naming the flag, variable, or file and line.
    pub fn load(matches: &ArgMatches, env: &Environment) -> Result<Settings, SettingsError> {
        let (flags, defaults) = command_line(matches)?;
        let (env_values, warnings) = environment(env)?;
        let config_path = match matches.get_one::<PathBuf>("config") {
            Some(path) => Some(path.clone()),
            None => match env.vars.get(CONFIG_VAR) {
                Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
                _ => None,
            },
        };
        Settings::layer(flags, env_values, defaults, config_path, warnings)
    }

    /// The settings again, with the config file read anew (the flags and the
    /// environment are those of start-up): what SIGHUP applies.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn reread(&self) -> Result<Settings, SettingsError> {
        Settings::layer(
            self.flags.clone(),
            self.env.clone(),
            self.defaults.clone(),
            self.config_path.clone(),
            Vec::new(),
        )
    }

    fn layer(
        flags: Values,
        env: Values,
        defaults: Values,
        config_path: Option<PathBuf>,
        warnings: Vec<String>,
    ) -> Result<Settings, SettingsError> {
        let file = config_path.as_deref().map(ConfigFile::read).transpose()?;
        let file_has_keys = file
            .as_ref()
            .is_some_and(|file| !file.top.is_empty() || !file.listeners.is_empty());
        let mut file_top = Values::new();
        for value in file.iter().flat_map(|file| &file.top) {
            file_top.insert(value.key.name, from_file(value));
        }
        let mut top = Values::new();
        for key in KEYS {
            let winner = [&flags, &env, &file_top, &defaults]
                .into_iter()
                .find_map(|layer| layer.get(key.name));
            if let Some(value) = winner {
                top.insert(key.name, value.clone());
            }
        }
        one_greeting(&mut top, file.as_ref())?;
        let tables = file.as_ref().map_or(&[][..], |file| &file.listeners[..]);
        let from_tables = file.as_ref().is_some_and(|file| !file.listeners.is_empty());
        let listeners = if from_tables {
            let file = file
                .as_ref()
                .map_or_else(PathBuf::new, |file| file.path.clone());
            refuse_top_level_address(&top, &file)?;
            tables
                .iter()
                .map(|table| listener_values(&top, &defaults, table, &file))
                .collect::<Result<_, _>>()?
        } else {
            vec![per_listener(&top)]
        };
        let settings = Settings {
            flags,
            env,
            defaults,
            config_path,
            top,
            listeners,
            from_tables,
            warnings,
            file_has_keys,
        };
        let mut checked: Vec<ServerArgs> = Vec::with_capacity(settings.listeners.len());
        for index in 0..settings.listeners.len() {
            let args = settings.args_for(index)?;
            let which = || {
                if settings.from_tables {
                    format!(" (in [[listener]] {})", index + 1)
                } else {
                    String::new()
                }
            };
            args.check_combination()
                .map_err(|cause| SettingsError(format!("{cause}{}", which())))?;
            if let Some(cause) = checked.iter().find_map(|earlier| clash(earlier, &args)) {
                return Err(SettingsError(format!("{cause}{}", which())));
            }
            checked.push(args);
        }
        Ok(settings)
    }

    /// What was ignored but probably meant, one line each, to log at start-up.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The config file, if there is one.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    /// The typed flags of listener `index`: the top-level values with its own over
    /// them.
    fn args_for(&self, index: usize) -> Result<ServerArgs, SettingsError> {
        let mut argv = vec!["greeter-server".to_owned()];
        let own = &self.listeners[index];
        let inherited = self
            .top
            .iter()
            .filter(|(name, _)| !own.contains_key(*name) && !is_per_listener(name));
        for (name, value) in own.iter().chain(inherited) {
            match keys::find(name).map(|key| key.file_type) {
                Some(FileType::Boolean) => {
                    if value.text.first().is_some_and(|text| text == "true") {
                        argv.push(format!("--{name}"));
                    }
                }
                _ => argv.extend(value.text.iter().map(|text| format!("--{name}={text}"))),
            }
        }
        ServerCli::try_parse_from(argv)
            .map(|cli| cli.server)
            .map_err(|err| SettingsError(parse_error_cause(&err)))
    }

    /// The typed top-level flags (those of the first listener, for its own keys):
    /// for what is not per listener, such as `workers` and `metrics`.
    ///
    /// # Errors
    /// Only if a value that was checked does not parse (a bug).
    pub fn server_args(&self) -> Result<ServerArgs, SettingsError> {
        self.args_for(0)
    }

    /// The checked [`Config`]: every listener's hosts resolved and greeting loaded.
    ///
    /// # Errors
    /// A [`Failure`] naming the host or greeting file that cannot be used.
    pub fn to_config(&self) -> Result<Config, Failure> {
        let mut config: Option<Config> = None;
        let mut policies = Policies::default();
        for (index, id) in self.listener_ids().into_iter().enumerate() {
            let args = self.args_for(index).map_err(SettingsError::into_failure)?;
            let policy = policies.get(&args, None)?;
            let mut one = args.into_config_with(policy)?;
            one.listeners[0].id = id;
            match &mut config {
                Some(config) => config.listeners.append(&mut one.listeners),
                None => config = Some(one),
            }
        }
        config.ok_or_else(|| SettingsError("no listener".into()).into_failure())
    }

    /// Which listener each of these settings' listeners is, in order (see
    /// [`ListenerId`]).
    fn listener_ids(&self) -> Vec<ListenerId> {
        let first = |values: &Values, name: &str| {
            values
                .get(name)
                .and_then(|value| value.text.first())
                .cloned()
        };
        let hosts: Vec<Vec<String>> = self
            .listeners
            .iter()
            .map(|values| {
                values
                    .get("host")
                    .map(|value| value.text.clone())
                    .unwrap_or_default()
            })
            .collect();
        listener_id::ids(self.listeners.iter().zip(&hosts).map(|(values, hosts)| {
            // Checked by the port's parser as it entered.
            let port = first(values, "port").and_then(|port| port.parse().ok());
            (first(values, "name"), &hosts[..], port.unwrap_or(0))
        }))
    }

    /// The config a reload hands the running server: `running`, with what a reload
    /// may change (greetings, policies, limits, timeouts, logging) taken from these
    /// settings. Each running listener takes the table that is the same listener (by
    /// name, else by hosts and port: [`ListenerId`]), never the one at its position;
    /// one whose table is gone keeps its last settings, and a new table waits for a
    /// restart ([`Settings::restart_only_changes`] names both).
    ///
    /// # Errors
    /// A [`Failure`] naming the greeting or list file that cannot be used, or two
    /// tables that are one running listener.
    pub fn reload_into(&self, running: &Config) -> Result<Config, Failure> {
        let mut next = running.clone();
        let running_ids: Vec<ListenerId> = running.listeners.iter().map(|l| l.id.clone()).collect();
        let matched = listener_id::match_tables(&running_ids, &self.listener_ids())
            .map_err(|cause| SettingsError(cause).into_failure())?;
        let mut policies = Policies::default();
        for (listener, table) in next.listeners.iter_mut().zip(matched) {
            // Gone: it keeps its last settings.
            let Some(index) = table else { continue };
            let args = self.args_for(index).map_err(SettingsError::into_failure)?;
            listener.greeting = args.greeting.load()?;
            listener.policy = policies.get(&args, listener.policy.as_deref())?;
        }
        self.server_args()
            .map_err(SettingsError::into_failure)?
            .apply_reloadable(&mut next);
        Ok(next)
    }

    /// The greeting files a reload re-reads, per listener (`None`: a `message`, or
    /// the default).
    pub fn greeting_files(&self) -> Vec<Option<&str>> {
        self.listeners
            .iter()
            .map(|values| {
                values
                    .get("message-file")
                    .and_then(|value| value.text.first())
                    .map(String::as_str)
            })
            .collect()
    }

    /// Whether the config file set any key (`false` without one).
    pub fn file_has_keys(&self) -> bool {
        self.file_has_keys
    }

    /// The address-list files (`allow-file`, `deny-file`) a reload re-reads, of every
    /// listener, each once, however they were named (flag, variable or file).
    pub fn list_files(&self) -> Vec<&str> {
        let mut files: Vec<&str> = Vec::new();
        for values in &self.listeners {
            for name in ["allow-file", "deny-file"] {
                for path in values.get(name).into_iter().flat_map(|value| &value.text) {
                    if !files.contains(&path.as_str()) {
                        files.push(path);
                    }
                }
            }
        }
        files
    }

    /// One warning for each setting that differs in `newer` but needs new sockets or
    /// threads, so that a reload cannot apply it.
    pub fn restart_only_changes(&self, newer: &Settings) -> Vec<String> {
        let file = newer.config_path.as_deref().map_or_else(
            || "the configuration".to_owned(),
            |path| path.display().to_string(),
        );
        let text = |values: &Values, name: &str| values.get(name).map(|value| value.text.clone());
        let mut changes = Vec::new();
        for key in KEYS.iter().filter(|key| key.applies == Applies::AtRestart) {
            if !key.per_listener && text(&self.top, key.name) != text(&newer.top, key.name) {
                changes.push(format!(
                    "{} changed in {file}; it takes effect at the next restart",
                    key.name
                ));
            }
        }
        let (ids, newer_ids) = (self.listener_ids(), newer.listener_ids());
        // Two tables that are one listener fail the reload itself (reload_into).
        let matched = listener_id::match_tables(&ids, &newer_ids).unwrap_or_default();
        let which = |key: &str, id: &ListenerId| {
            if self.from_tables || newer.from_tables {
                format!("{key} of the listener {}", id.describe())
            } else {
                key.to_owned()
            }
        };
        for ((old, id), table) in self.listeners.iter().zip(&ids).zip(&matched) {
            let Some(new) = table.map(|index| &newer.listeners[index]) else {
                changes.push(format!(
                    "the listener {} is gone from {file}; its sockets keep its last settings until the next restart",
                    id.describe()
                ));
                continue;
            };
            for key in KEYS
                .iter()
                .filter(|key| key.per_listener && key.applies == Applies::AtRestart)
            {
                if text(old, key.name) != text(new, key.name) {
                    changes.push(format!(
                        "{} changed in {file}; it takes effect at the next restart",
                        which(key.name, id)
                    ));
                }
            }
        }
        for (index, id) in newer_ids.iter().enumerate() {
            if !matched.contains(&Some(index)) {
                changes.push(format!(
                    "the listener {} is new in {file}; it takes effect at the next restart",
                    id.describe()
                ));
            }
        }
        changes
    }

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

/// The parts of access policies built so far that listeners share: the lists, by
/// what they are built from (listeners that inherit the same lists, a 500,000-entry
/// deny file say, share one table instead of each reading and building its own), and
/// the rate table of each `rate-group`. Any other rate table is its listener's own: a
/// source's rate on one port says nothing of its rate on another.
#[derive(Default)]
struct Policies {
    lists: Vec<(ListInputs, Arc<AccessList>)>,
    rate_groups: Vec<(String, Arc<RateTable>)>,
}

/// What an access list is built from.
#[derive(PartialEq)]
struct ListInputs {
    allow: Vec<String>,
    deny: Vec<String>,
    allow_files: Vec<PathBuf>,
    deny_files: Vec<PathBuf>,
}

impl Policies {
    /// The policy of `args`: its lists shared with listeners that name the same, its
    /// rate table its group's, else the one of `running` (the policy it replaces, at a
    /// reload) if its settings are the same, else a new one; its pass table its own,
    /// kept from `running` in the same way.
    fn get(
        &mut self,
        args: &ServerArgs,
        running: Option<&Policy>,
    ) -> Result<Option<Arc<Policy>>, Failure> {
        let inputs = ListInputs {
            allow: args.allow.clone(),
            deny: args.deny.clone(),
            allow_files: args.allow_file.clone(),
            deny_files: args.deny_file.clone(),
        };
        let list = match self.lists.iter().find(|(built, _)| *built == inputs) {
            Some((_, list)) => Arc::clone(list),
            None => {
                let list = Arc::new(args.access_list(running.map(|policy| &*policy.list))?);
                self.lists.push((inputs, Arc::clone(&list)));
                list
            }
        };
        let rate = args.rate_settings().map(|settings| {
            let group = args.rate_group.as_ref().and_then(|group| {
                let found = self.rate_groups.iter().find(|(name, _)| name == group);
                found.map(|(_, table)| Arc::clone(table))
            });
            // A group's listeners have the same settings (checked with the settings).
            group.unwrap_or_else(|| {
                let table = running
                    .and_then(|policy| policy.rate_table_if(&settings))
                    .unwrap_or_else(|| Arc::new(RateTable::new(settings)));
                if let Some(group) = &args.rate_group {
                    self.rate_groups.push((group.clone(), Arc::clone(&table)));
                }
                table
            })
        });
        Ok(args.policy_with(list, rate, args.pass_table(running)))
    }
}

/// What makes listener `later` impossible beside listener `earlier`, if anything: the
/// same name (names identify listeners), or the same rate group with other rate
/// settings (a group shares one table).
fn clash(earlier: &ServerArgs, later: &ServerArgs) -> Option<String> {
    if let (Some(name), Some(other)) = (&earlier.name, &later.name) {
        if name == other {
            return Some(format!(
                "two listeners are named {name:?} (a name identifies one listener: give each its own)"
            ));
        }
    }
    match (&earlier.rate_group, &later.rate_group) {
        (Some(group), Some(other))
            if group == other && earlier.rate_settings() != later.rate_settings() =>
        {
            Some(format!(
                "the listeners of rate group {group:?} have different rate settings (they share one \
                 table: give them the same max-rate-per-ip, rate-prefix-v4, rate-prefix-v6 and \
                 rate-table-size)"
            ))
        }
        _ => None,
    }
}

/// Whether `name` is a key a listener may set for itself.
fn is_per_listener(name: &str) -> bool {
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
fn from_file(value: &crate::config::file::FileValue) -> Value {
    Value {
        text: value.values.clone(),
        source: Source::File,
        line: Some(value.line),
    }
}

/// The flags given and the defaults, from clap's matches.
fn command_line(matches: &ArgMatches) -> Result<(Values, Values), SettingsError> {
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
fn environment(env: &Environment) -> Result<(Values, Vec<String>), SettingsError> {
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
fn refuse_top_level_address(top: &Values, file: &std::path::Path) -> Result<(), SettingsError> {
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
    table: &crate::config::file::ListenerTable,
    file: &std::path::Path,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_flag_has_a_key_and_every_key_a_flag() {
        let command = ServerCli::command();
        let mut flags: Vec<&str> = command
            .get_arguments()
            .filter_map(|arg| arg.get_long())
            .filter(|long| {
                !matches!(
                    *long,
                    "config" | "check-config" | "health-check" | "help" | "version"
                )
            })
            .collect();
        let mut names: Vec<&str> = KEYS.iter().map(|key| key.name).collect();
        flags.sort_unstable();
        names.sort_unstable();
        assert_eq!(flags, names);
    }

    fn load(argv: &[&str], env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let matches = ServerCli::command()
            .try_get_matches_from(std::iter::once("greeter-server").chain(argv.iter().copied()))
            .unwrap();
        Settings::load(&matches, &Environment::from_pairs(env.iter().copied()))
    }

    #[test]
    fn a_flag_wins_over_the_environment() {
        let settings = load(&["--port", "1"], &[("GREETER_PORT", "2")]).unwrap();
        assert_eq!(settings.server_args().unwrap().port, 1);
        assert_eq!(settings.top["port"].source, Source::Flag);
        let settings = load(&[], &[("GREETER_PORT", "2")]).unwrap();
        assert_eq!(settings.server_args().unwrap().port, 2);
        assert_eq!(
            settings.top["port"].source,
            Source::Env("GREETER_PORT".into())
        );
    }

    #[test]
    fn environment_values_are_checked_by_the_flags_parsers() {
        let err = load(&[], &[("GREETER_MAX_CONNECTIONS", "0")]).unwrap_err();
        assert_eq!(
            err.0,
            "GREETER_MAX_CONNECTIONS=\"0\": 0 is not in 1..=4294967295"
        );
        let err = load(&[], &[("GREETER_PORT", "tcp://10.0.0.1:8080")]).unwrap_err();
        assert!(err.0.contains("enableServiceLinks"), "{err}");
        let err = load(&[], &[("GREETER_PREGREET", "ban")]).unwrap_err();
        assert_eq!(
            err.0,
            "GREETER_PREGREET=\"ban\": invalid value 'ban' for '--pregreet <ACTION>' \
             [possible values: greet, drop]"
        );
        let err = load(&[], &[("GREETER_LOG_CONNECTIONS", "maybe")]).unwrap_err();
        assert_eq!(
            err.0,
            "GREETER_LOG_CONNECTIONS=\"maybe\": write true or false"
        );
        let err = load(
            &[],
            &[("GREETER_MESSAGE", "a"), ("GREETER_MESSAGE_FILE", "/x")],
        )
        .unwrap_err();
        assert!(err.0.contains("both set"), "{err}");
    }

    #[test]
    fn hosts_and_booleans_from_the_environment() {
        let settings = load(
            &[],
            &[
                ("GREETER_HOST", "127.0.0.1, ::1"),
                ("GREETER_PROXY_PROTOCOL", "1"),
            ],
        )
        .unwrap();
        let args = settings.server_args().unwrap();
        assert_eq!(args.host, ["127.0.0.1", "::1"]);
        assert!(args.proxy_protocol);
        // Empty is unset; commas with nothing between them are refused (not printed as
        // an empty list that would not read back, while the default is served).
        let settings = load(&[], &[("GREETER_PORT", "")]).unwrap();
        assert_eq!(settings.top["port"].source, Source::Default);
        for (var, value) in [("GREETER_HOST", ","), ("GREETER_DENY", " , ,")] {
            let err = load(&[], &[(var, value)]).unwrap_err();
            assert!(
                err.0.starts_with(&format!("{var}={value:?} names nothing")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_misspelt_variable_is_warned_about_and_others_are_ignored() {
        let settings = load(
            &[],
            &[
                ("GREETER_MAX_CONECTIONS", "5"),
                ("GREETER_SERVICE_HOST", "10.0.0.1"),
            ],
        )
        .unwrap();
        assert_eq!(
            settings.warnings(),
            ["ignoring GREETER_MAX_CONECTIONS: no such setting (did you mean GREETER_MAX_CONNECTIONS?)"]
        );
    }

    #[test]
    fn a_message_from_a_higher_layer_replaces_a_message_file() {
        let settings = load(
            &["--message", "hi"],
            &[("GREETER_MESSAGE_FILE", "/nonexistent")],
        )
        .unwrap();
        let config = settings.to_config().unwrap();
        assert_eq!(&*config.listeners[0].greeting, b"hi");
    }

    #[test]
    fn a_reload_takes_every_key_a_reload_applies_and_no_other() {
        let running = load(&[], &[]).unwrap().to_config().unwrap();
        let mut argv = Vec::new();
        for key in KEYS {
            let value = match (key.applies, key.name) {
                (Applies::AtRestart, _) => continue,
                (_, name) if name.ends_with("-file") => continue,
                (_, "message" | "deny-message") => "changed",
                (_, "allow" | "deny") => "192.0.2.0/24",
                (_, "log-connections") => "",
                (_, "max-rate-per-ip") => "5/s",
                (_, "greet-delay") => "500ms",
                (_, "pass-ttl") => "1h",
                (_, "pregreet") => "drop",
                (_, name) if name.ends_with("-timeout") => "1s",
                _ => "5",
            };
            argv.push(format!("--{}", key.name));
            if !value.is_empty() {
                argv.push(value.to_owned());
            }
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let changed = load(&argv, &[]).unwrap();
        let reloaded = changed.reload_into(&running).unwrap();
        assert_eq!(
            format!("{reloaded:?}"),
            format!("{:?}", changed.to_config().unwrap()),
            "a reload left out a setting it applies"
        );
        // What needs a restart stays as it runs.
        let restart = load(&["--port", "1", "--backlog", "7"], &[]).unwrap();
        let reloaded = restart.reload_into(&running).unwrap();
        assert_eq!(reloaded.listeners[0].addrs, running.listeners[0].addrs);
        assert_eq!(reloaded.backlog, running.backlog);
    }

    #[test]
    fn listeners_that_inherit_one_list_share_its_table() {
        let file = std::env::temp_dir().join(format!("greeter-shared-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            "deny = [\"192.0.2.0/24\"]\n[[listener]]\nport = 0\n[[listener]]\nport = 0\n\
             [[listener]]\nport = 0\ndeny = [\"198.51.100.0/24\"]\n",
        )
        .unwrap();
        let path = file.display().to_string();
        let config = load(&["--config", &path], &[]).unwrap().to_config();
        let _ = std::fs::remove_file(&file);
        let config = config.unwrap();
        let policy = |index: usize| config.listeners[index].policy.clone().unwrap();
        assert!(
            Arc::ptr_eq(&policy(0).list, &policy(1).list),
            "one table for the same list"
        );
        assert!(
            !Arc::ptr_eq(&policy(0).list, &policy(2).list),
            "a listener's own list is its own"
        );
        assert!(!policy(2).list.admits("198.51.100.1".parse().unwrap()));
        assert!(
            policy(2).list.admits("192.0.2.1".parse().unwrap()),
            "its own list replaces the top one"
        );
    }
}
