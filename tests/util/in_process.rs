//! Servers on their own threads inside the test process, on port 0: one loop
//! (`TestServer`) or all of `greeter-server` but its signals (`Supervised`), observed
//! through their published snapshots.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use clap::CommandFactory;
use clap::Parser;
use greeter::config::settings::Environment;
use greeter::config::{ServerCli, Settings};
use greeter::supervisor::{Request, Requests, Supervisor};
use greeter::workers::WorkersView;
use greeter::{fdlimit, startup, Config, Failure, Server, ServerHandle, Snapshot, Totals};

use super::{wait_until, STEP_TIMEOUT};

/// The server's defaults, listening on 127.0.0.1 port 0.
pub fn default_config() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap())
}

/// The default configuration with `greeting` (listen address set by `start_server`).
pub fn config_with(greeting: &[u8]) -> Config {
    default_config().with_greeting(greeting.to_vec())
}

/// A server running on its own thread inside the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: ServerHandle,
    thread: Option<JoinHandle<io::Result<Totals>>>,
}

/// Starts an in-process server with `config` on 127.0.0.1, port 0.
pub fn start_server(mut config: Config) -> TestServer {
    for listener in &mut config.listeners {
        listener.addrs = vec!["127.0.0.1:0".parse().unwrap()];
    }
    start_server_on(config)
}

/// Starts an in-process server on its listeners' addresses as given (e.g. `[::1]:0`).
pub fn start_server_on(config: Config) -> TestServer {
    let server = Server::bind(config).expect("bind the test server");
    let addr = server.local_addr();
    let shutdown = server.handle();
    let thread = Some(thread::spawn(move || server.run()));
    TestServer {
        addr,
        shutdown,
        thread,
    }
}

impl TestServer {
    /// The server's totals and held connections as of its last loop round.
    pub fn snapshot(&self) -> Snapshot {
        self.shutdown.snapshot()
    }

    /// Shuts the server down gracefully and returns its totals.
    pub fn stop(mut self) -> Totals {
        self.shutdown.shutdown().expect("wake the server");
        join_server(self.thread.take().unwrap())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.shutdown.shutdown();
            let _ = thread.join();
        }
    }
}

/// A whole server as `greeter-server` runs it (its flags, workers, reload thread and
/// metrics) inside the test process: driven by supervisor requests instead of
/// signals, and watched through its workers' published snapshots instead of log lines.
pub struct Supervised {
    /// The addresses it listens on, in order.
    pub addrs: Vec<SocketAddr>,
    /// The metrics endpoint's address, with `--metrics`.
    pub metrics: Option<SocketAddr>,
    /// Its workers' published state.
    pub view: WorkersView,
    /// Where to send what a signal would ask.
    pub requests: Requests,
    thread: Option<JoinHandle<Result<Totals, Failure>>>,
}

/// Starts `greeter-server --port 0 ARGS` in-process, as the binary would (without
/// its logging and signals), and waits until it serves.
pub fn supervise(args: &[&str]) -> Supervised {
    let argv: Vec<&str> = ["--port", "0"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    supervise_exactly(&argv)
}

/// Starts `greeter-server ARGS` in-process (no `--port 0` added: for a config file
/// with `[[listener]]` tables), with no `GREETER_*` variables, and waits until it
/// serves.
pub fn supervise_exactly(args: &[&str]) -> Supervised {
    let argv = std::iter::once("greeter-server").chain(args.iter().copied());
    let matches = ServerCli::command()
        .try_get_matches_from(argv)
        .expect("valid flags");
    let settings = Settings::load(&matches, &Environment::default()).expect("valid settings");
    let server = startup::prepare(settings, fdlimit::raise_to_hard_limit()).expect("start");
    let supervisor = Supervisor::new().expect("a supervisor");
    let requests = supervisor.requests();
    let (serving, started) = mpsc::channel();
    let thread = thread::spawn(move || {
        supervisor.run(server, |started| {
            let _ = serving.send(started);
        })
    });
    let serving = started
        .recv_timeout(STEP_TIMEOUT)
        .expect("the server to serve");
    Supervised {
        addrs: serving.addrs,
        metrics: serving.metrics,
        view: serving.view,
        requests,
        thread: Some(thread),
    }
}

impl Supervised {
    /// The (first) address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Its workers' totals and held connections, summed, as of their last rounds.
    pub fn snapshot(&self) -> Snapshot {
        self.view.snapshot()
    }

    /// Waits until its workers hold exactly `count` connections.
    #[track_caller]
    pub fn wait_for_in_flight(&self, count: usize) {
        wait_until(&format!("{count} in flight"), || {
            self.snapshot().held == count
        });
    }

    /// Asks for a drain (what SIGTERM asks) and returns the totals once every worker
    /// has stopped.
    pub fn stop(mut self) -> Totals {
        self.requests.send(Request::Drain);
        join_server(self.thread.take().unwrap())
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.requests.send(Request::StopNow);
            let _ = thread.join();
        }
    }
}

/// Waits (bounded) for a server's thread to end and returns what it returned.
#[track_caller]
fn join_server<T, E: std::fmt::Debug>(thread: JoinHandle<Result<T, E>>) -> T {
    wait_until("the server to stop", || thread.is_finished());
    thread
        .join()
        .expect("the server thread panicked")
        .expect("the server failed")
}
