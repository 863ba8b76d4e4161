//! SIGHUP: re-read `--message-file` with the checks of start-up and hand the new
//! greeting to every worker. A failed reload keeps the old greeting; it never stops
//! the server.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use log::{info, warn};

use crate::cli::GreetingArgs;
use crate::workers::RunningWorkers;

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
    pub fn reload(&self, workers: &RunningWorkers) -> Reloaded {
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
