//! SIGHUP: re-read `--message-file` with the checks of start-up and hand the new
//! greeting to every worker. A failed reload keeps the old greeting; it never stops
//! the server.
//!
//! The file is read on a thread of its own ([`Reloader::spawn`]): a 1 GiB greeting
//! takes seconds to read, and the signal thread must stay free for SIGTERM and
//! SIGUSR1 meanwhile. One reload runs at a time; SIGHUPs during it make one more
//! reload after it, so the file is always read after the last signal.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use log::{info, warn};

use crate::cli::GreetingArgs;
use crate::error::Failure;
use crate::workers::WorkersView;

/// Reloads counted by outcome, for the metrics.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    /// Reloads that swapped the greeting.
    pub ok: AtomicU64,
    /// Reloads that kept the old greeting because the file could not be used.
    pub failed: AtomicU64,
}

/// Where the greeting came from, and what reloading it has done.
#[derive(Debug)]
pub struct Reloader {
    /// The greeting file; `None` when the greeting came from `--message` or is the
    /// default, which leaves nothing to reload.
    file: Option<PathBuf>,
    /// The outcomes so far.
    counts: Arc<ReloadCounts>,
}

/// The outcome of one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// Every worker got a greeting of this many bytes.
    Swapped(usize),
    /// The file could not be used; the old greeting stays. The message says why.
    Kept(String),
    /// There is no file to reload.
    NothingToReload,
}

impl Reloader {
    /// A reloader for the greeting `args` describe.
    pub fn new(args: &GreetingArgs) -> Self {
        Reloader {
            file: args.message_file.clone(),
            counts: Arc::default(),
        }
    }

    /// The outcomes so far (shared with whoever reports them).
    pub fn counts(&self) -> Arc<ReloadCounts> {
        Arc::clone(&self.counts)
    }

    /// Re-reads the greeting file and, if it is usable, swaps every worker's greeting
    /// for new connections. Logs one line and counts the outcome.
    pub fn reload(&self, workers: &WorkersView) -> Reloaded {
        let Some(path) = &self.file else {
            info!(
                "reload: nothing to reload (the greeting comes from --message or is the default)"
            );
            return Reloaded::NothingToReload;
        };
        let source = GreetingArgs {
            message: None,
            message_file: Some(path.clone()),
        };
        match source.load() {
            Ok(greeting) => {
                let bytes = greeting.len();
                workers.replace_greeting(greeting);
                self.counts.ok.fetch_add(1, Ordering::Relaxed);
                info!(
                    "reload: greeting reloaded from {}: {bytes} bytes",
                    path.display()
                );
                Reloaded::Swapped(bytes)
            }
            Err(err) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                warn!("reload: keeping the old greeting: {err}");
                Reloaded::Kept(err.to_string())
            }
        }
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
            .spawn(move || loop {
                pending.wait_and_take();
                self.reload(&workers);
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
