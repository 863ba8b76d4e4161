//! SIGHUP: read the settings again (the config file with `--config`, and every
//! greeting and address-list file, however it was named) with the checks of start-up,
//! and hand every worker what a reload may change, all at once. A failed reload
//! changes nothing; it never stops the server; neither does a config file that sets no
//! key when the running one set some (most likely caught being rewritten in place).
//! What needs new sockets or threads is named in a warning and waits for a restart.
//!
//! The files are read on a thread of its own ([`Reloader::spawn`]): a 1 GiB greeting
//! takes seconds to read, and the signal thread must stay free for SIGTERM and
//! SIGUSR1 meanwhile. One reload runs at a time; SIGHUPs during it make one more
//! reload after it, so the files are always read after the last signal.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use log::{info, warn};

use crate::config::{self, Config, Settings};
use crate::error::Failure;
use crate::metrics::ReloadCounts;
use crate::workers::WorkersView;

/// The log target of this module's lines: documented (docs/operations.md), so
/// fixed here rather than taken from wherever the code lives.
const LOG_TARGET: &str = "greeter::reload";

/// What a reload starts from, and what reloading has done.
#[derive(Debug)]
pub struct Reloader {
    /// The settings the server started with: their flags and environment stay, the
    /// files are read again, and what needs a restart is compared against them.
    settings: Settings,
    /// The configuration the workers run with now.
    running: Config,
    /// The outcomes so far.
    counts: Arc<ReloadCounts>,
    /// Whether the running configuration came from a config file that set keys: then
    /// a file that sets none is one caught being rewritten, not meant.
    running_file_has_keys: bool,
}

/// The outcome of one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// Every worker got the new configuration; the first listener's greeting has
    /// this many bytes.
    Swapped(usize),
    /// A file could not be used; nothing changed. The message says why.
    Kept(String),
    /// There is no file to reload (no `--config`, no greeting file).
    NothingToReload,
}

impl Reloader {
    /// A reloader for a server started with `settings`, running `running`.
    pub fn new(settings: Settings, running: Config) -> Self {
        Reloader {
            running_file_has_keys: settings.file_has_keys(),
            settings,
            running,
            counts: Arc::default(),
        }
    }

    /// The outcomes so far (shared with whoever reports them).
    pub fn counts(&self) -> Arc<ReloadCounts> {
        Arc::clone(&self.counts)
    }

    /// Reads the settings and greeting files again and, if every one is usable, hands
    /// every worker the new configuration for new connections. Logs one line (and a
    /// warning for each change that waits for a restart) and counts the outcome.
    pub fn reload(&mut self, workers: &WorkersView) -> Reloaded {
        let config_file = self
            .settings
            .config_path()
            .map(|path| path.display().to_string());
        let greeting_files = self.settings.greeting_files();
        // Without --config these are the files the flags and variables named; with it,
        // the file may name others, and is read anyway.
        let list_files = self.settings.list_files().join(", ");
        let geoip_db = (self.settings.server_args().geoip_db)
            .as_ref()
            .map(|path| path.display().to_string());
        if config_file.is_none()
            && greeting_files.iter().all(Option::is_none)
            && list_files.is_empty()
            && geoip_db.is_none()
        {
            info!(
                target: LOG_TARGET,
                "reload: nothing to reload (the greeting comes from --message or is the default)"
            );
            return Reloaded::NothingToReload;
        }
        let reread = self
            .settings
            .reread()
            .map_err(|err| err.to_string())
            .and_then(|newer| {
                if self.running_file_has_keys && !newer.file_has_keys() {
                    return Err(format!(
                        "{} has no keys (it is empty or only comments), but the running configuration came from it with keys: a file being rewritten in place reads so (write it to another file in the same directory, then rename it over this one; to run on every default, restart)",
                        config_file.as_deref().unwrap_or_default()
                    ));
                }
                let config =
                    config::build(&newer, Some(&self.running)).map_err(|err| err.to_string())?;
                Ok((newer, config))
            });
        let (newer, config) = match reread {
            Ok(reread) => reread,
            Err(err) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                if config_file.is_none() && list_files.is_empty() && geoip_db.is_none() {
                    warn!(target: LOG_TARGET, "reload: keeping the old greeting: {err}");
                } else {
                    warn!(target: LOG_TARGET, "reload: keeping the old configuration: {err}");
                }
                return Reloaded::Kept(err);
            }
        };
        self.running_file_has_keys = newer.file_has_keys();
        for change in self.settings.restart_only_changes(&newer) {
            warn!(target: LOG_TARGET, "reload: {change}");
        }
        let bytes: Vec<usize> = config
            .listeners
            .iter()
            .map(|listener| listener.greeting.len())
            .collect();
        let config = Arc::new(config);
        workers.reconfigure(Arc::clone(&config));
        self.running = Config::clone(&config);
        self.counts.ok.fetch_add(1, Ordering::Relaxed);
        match (&config_file, greeting_files.first()) {
            (Some(path), _) => info!(
                target: LOG_TARGET,
                "reload: configuration reloaded from {path}: listeners={} greeting_bytes={}",
                bytes.len(),
                bytes
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            (None, Some(Some(path))) => {
                info!(
                    target: LOG_TARGET,
                    "reload: greeting reloaded from {path}: {} bytes",
                    bytes[0]
                );
            }
            (None, _) if !list_files.is_empty() || geoip_db.is_some() => {}
            (None, _) => info!(target: LOG_TARGET, "reload: greetings reloaded"),
        }
        if config_file.is_none() && !list_files.is_empty() {
            let entries = config
                .listeners
                .first()
                .and_then(|listener| listener.policy.as_deref())
                .map_or(0, |policy| policy.list.len());
            info!(
                target: LOG_TARGET,
                "reload: address lists reloaded from {list_files}: entries={entries}"
            );
        }
        if let (Some(path), Some(db)) = (&geoip_db, &config.geoip) {
            info!(
                target: LOG_TARGET,
                "reload: geoip-db reloaded from {path}: type={}",
                db.database_type()
            );
        }
        Reloaded::Swapped(bytes.first().copied().unwrap_or(0))
    }
}

impl Reloader {
    /// Starts the reload thread, which reloads for `workers` each time it is asked
    /// to (see [`ReloadRequests::request`]), and returns the way to ask.
    ///
    /// # Errors
    /// If the thread cannot be started.
    pub fn spawn(self, workers: WorkersView) -> Result<ReloadRequests, Failure> {
        let requests = ReloadRequests::default();
        let pending = Arc::clone(&requests.pending);
        thread::Builder::new()
            .name("greeter-reload".to_owned())
            .spawn(move || {
                let mut reloader = self;
                loop {
                    pending.wait_and_take();
                    // systemd (Type=notify-reload) waits for READY=1 after RELOADING=1.
                    crate::notify::reloading();
                    let status = match reloader.reload(&workers) {
                        Reloaded::Swapped(_) => "reloaded".to_owned(),
                        Reloaded::Kept(err) => format!("kept the old configuration: {err}"),
                        Reloaded::NothingToReload => "nothing to reload".to_owned(),
                    };
                    crate::notify::reloaded(&status);
                }
            })
            .map_err(|err| Failure::new("cannot start the reload thread", err, None))?;
        Ok(requests)
    }
}

/// Asks the reload thread for a reload without waiting for it.
#[derive(Debug, Clone, Default)]
pub struct ReloadRequests {
    pending: Arc<Pending>,
}

impl ReloadRequests {
    /// Asks for a reload: the thread starts one now, or after the one it is running.
    /// Never blocks (requests made meanwhile are one request).
    pub fn request(&self) {
        let mut pending = self.pending.lock();
        *pending = true;
        drop(pending);
        self.pending.asked.notify_one();
    }
}

/// Whether a reload was asked for since the thread last took a request.
#[derive(Debug, Default)]
struct Pending {
    flag: Mutex<bool>,
    asked: Condvar,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.flag
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until a reload is asked for, and takes the request.
    fn wait_and_take(&self) {
        let mut pending = self.lock();
        while !*pending {
            pending = self
                .asked
                .wait(pending)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *pending = false;
    }
}
