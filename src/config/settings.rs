//! The effective settings: every value with the layer it came from
//! (the `layers` module), the listeners (one per `[[listener]]` table, else
//! one), and each listener's typed [`ServerArgs`], parsed once from the winning
//! values and checked together. [`build`](super::build()) turns them into what the
//! loops run; [`Settings::to_toml`] prints them for `--check-config`.

use std::path::PathBuf;

use clap::{ArgMatches, Parser};

use crate::config::error::SettingsError;
use crate::config::file::ConfigFile;
use crate::config::flags::{parse_error_cause, ServerArgs, ServerCli};
use crate::config::keys::{self, Applies, FileType, KEYS};
use crate::config::layers::{
    self, command_line, environment, is_per_listener, Layered, Values, CONFIG_VAR,
};
pub use crate::config::layers::{Environment, Source};
use crate::config::listener_id::{self, ListenerId};

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
    pub(super) config_path: Option<PathBuf>,
    /// The top-level values (with every default).
    pub(super) top: Values,
    /// Per listener, its `host`, `port`, greeting and `proxy-protocol` (at least one).
    pub(super) listeners: Vec<Values>,
    /// Per listener, its values parsed by the flags' parser: the top-level values with
    /// its own over them.
    args: Vec<ServerArgs>,
    /// Whether the listeners come from `[[listener]]` tables.
    pub(super) from_tables: bool,
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

    /// The settings of these layers, with the config file at `config_path` read: the
    /// values merged, each listener's parsed, and what no single value's parser can
    /// check checked.
    fn layer(
        flags: Values,
        env: Values,
        defaults: Values,
        config_path: Option<PathBuf>,
        mut warnings: Vec<String>,
    ) -> Result<Settings, SettingsError> {
        let file = config_path.as_deref().map(ConfigFile::read).transpose()?;
        let file_has_keys = file
            .as_ref()
            .is_some_and(|file| !file.top.is_empty() || !file.listeners.is_empty());
        let Layered {
            top,
            listeners,
            from_tables,
        } = layers::merge(&flags, &env, &defaults, file.as_ref())?;
        let which = |index: usize| {
            if from_tables {
                format!(" (in [[listener]] {})", index + 1)
            } else {
                String::new()
            }
        };
        let mut args: Vec<ServerArgs> = Vec::with_capacity(listeners.len());
        for (index, own) in listeners.iter().enumerate() {
            let parsed = parse_args(&top, own)?;
            parsed
                .check_combination()
                .map_err(|cause| SettingsError(format!("{cause}{}", which(index))))?;
            if let Some(unused) = parsed.unused_by_tarpit() {
                warnings.push(format!("{unused}{}", which(index)));
            }
            if let Some(cause) = args.iter().find_map(|earlier| clash(earlier, &parsed)) {
                return Err(SettingsError(format!("{cause}{}", which(index))));
            }
            args.push(parsed);
        }
        Ok(Settings {
            flags,
            env,
            defaults,
            config_path,
            top,
            listeners,
            args,
            from_tables,
            warnings,
            file_has_keys,
        })
    }

    /// What was ignored but probably meant, one line each, to log at start-up.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The config file, if there is one.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    /// The typed top-level flags (those of the first listener, for its own keys):
    /// for what is not per listener, such as `workers` and `metrics`.
    pub fn server_args(&self) -> &ServerArgs {
        // There is always a listener: the top level's, or at least one table.
        &self.args[0]
    }

    /// Each listener's typed flags, in order: the top-level values with its own over
    /// them.
    pub fn listener_args(&self) -> &[ServerArgs] {
        &self.args
    }

    /// Which listener each of these settings' listeners is, in order (see
    /// [`ListenerId`]).
    pub(super) fn listener_ids(&self) -> Vec<ListenerId> {
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
}

/// The typed flags of a listener whose own values are `own`: the top-level values
/// with its own over them, parsed as a command line.
fn parse_args(top: &Values, own: &Values) -> Result<ServerArgs, SettingsError> {
    let mut argv = vec!["greeter-server".to_owned()];
    let inherited = top
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

impl ServerArgs {
    /// What a `--tarpit` listener's flags ask for that it does not do: a greet
    /// delay (and so the pregreet check made during it), since its clients are
    /// trapped at once.
    pub fn unused_by_tarpit(&self) -> Option<String> {
        (self.tarpit && !self.greet_delay.is_zero()).then(|| {
            format!(
                "greet-delay {} on a --tarpit listener is not used: its clients are trapped \
                 at once, with no delay and no pregreet check (drop greet-delay there, or \
                 trap pregreeters of an ordinary listener with --pregreet tarpit)",
                humantime::format_duration(self.greet_delay)
            )
        })
    }

    /// Checks what no single flag's parser can: that a greet delay leaves time to
    /// write the greeting.
    ///
    /// # Errors
    /// A phrase saying which values clash and how to fix them.
    pub fn check_combination(&self) -> Result<(), String> {
        let lead_problem = self
            .greeting
            .message
            .as_ref()
            .and_then(|text| crate::tarpit::lead_problem(text.as_bytes()));
        if let (true, crate::tarpit::Drip::Lines, Some(problem)) =
            (self.tarpit, self.drip, lead_problem)
        {
            return Err(format!(
                "the message of a --tarpit listener with --drip lines {problem} (give another \
                 message, or --drip greeting)"
            ));
        }
        if !self.greet_delay.is_zero() && self.greet_delay >= self.write_timeout {
            return Err(format!(
                "greet-delay {} is not shorter than write-timeout {}, which counts from \
                 accept (lower greet-delay or raise write-timeout)",
                humantime::format_duration(self.greet_delay),
                humantime::format_duration(self.write_timeout)
            ));
        }
        Ok(())
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

#[cfg(test)]
mod tests;
