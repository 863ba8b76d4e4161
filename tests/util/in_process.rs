//! A server on its own thread inside the test process, on port 0: the real loop,
//! observed through its published snapshots.

use std::io;
use std::net::SocketAddr;
use std::thread::{self, JoinHandle};

use greeter::{Config, Server, ServerHandle, Snapshot, Totals};

use super::wait_until;

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
pub fn start_server(config: Config) -> TestServer {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..config
    };
    start_server_on(config)
}

/// Starts an in-process server on `config.listen` as given (e.g. `[::1]:0`).
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
        let thread = self.thread.take().unwrap();
        wait_until("the server to stop", || thread.is_finished());
        thread
            .join()
            .expect("server thread panicked")
            .expect("server loop failed")
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
