//! What the loops run: the checked [`Config`], its listeners each with their
//! addresses, greeting and policy. Made by [`build`](super::build()) from the
//! settings, at start and at every reload; the loops read it and never re-validate
//! anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::Policy;
use crate::config::listener_id::ListenerId;
use crate::geoip::GeoIp;
use crate::greeting::{Greeting, DEFAULT_GREETING};
use crate::tarpit::{DripSettings, Tarpit};

/// Everything the server needs, checked: the listeners with their greetings, and the
/// limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to listen on, in the order given (at least one listener).
    pub listeners: Vec<ListenerConfig>,
    /// How many connections may be held at once (writing or lingering), besides the
    /// delayed ones.
    pub max_connections: usize,
    /// How many connections may wait out their `--greet-delay` at once (not counted
    /// in `max_connections`); a client that would be delayed beyond it is closed at
    /// once (`delay-full`).
    pub max_delayed: usize,
    /// How long a peer has, from accept, to take the whole greeting.
    pub write_timeout: Duration,
    /// The listen backlog passed to `listen(2)`.
    pub backlog: i32,
    /// How long a shutdown waits for in-flight greetings.
    pub drain_timeout: Duration,
    /// How long a lingering close waits for the peer's EOF.
    pub linger_timeout: Duration,
    /// How many connections one client address may hold at once; `None`: no limit.
    pub max_per_ip: Option<u32>,
    /// `SO_SNDBUF` for the listening sockets, inherited by every accepted one; `None`:
    /// the kernel's autotuning.
    pub send_buffer: Option<usize>,
    /// How long a connection has, from accept, to send its PROXY header.
    pub proxy_timeout: Duration,
    /// The level of the per-connection `ACCEPT` and `CLOSE` lines: info with
    /// `--log-connections`, else debug.
    pub connection_log_level: log::Level,
    /// `--max-trapped`: how many clients a worker may hold trapped at once (not
    /// counted in `max_connections`).
    pub max_trapped: usize,
    /// `--max-trapped-per-ip`: how many of them one address may be; `None`: no limit.
    pub max_trapped_per_ip: Option<u32>,
    /// `--trap-timeout`: how long a trap may last; `None`: forever.
    pub trap_timeout: Option<Duration>,
    /// `--geoip-db`: the country database trapped clients are looked up in, read at
    /// start and at each reload, shared by the workers; `None`: no lookup.
    pub geoip: Option<Arc<GeoIp>>,
}

/// One listener: its addresses (a host name gives all of its own) and what the
/// connections it accepts get.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Which listener it is, across reloads and upgrades (its name, or its hosts and
    /// port): how a new config's table is matched to the sockets that serve it.
    pub id: ListenerId,
    /// Where to listen, in the order given (at least one address, one port).
    pub addrs: Vec<SocketAddr>,
    /// The greeting, loaded once and shared by every connection (never copied).
    pub greeting: Greeting,
    /// Whether every connection starts with a PROXY protocol header to read first.
    pub proxy_protocol: bool,
    /// Who is greeted and how (`--allow`, `--deny`, the rate, the greet delay, the
    /// deny message); `None`: everyone, at once.
    pub policy: Option<Arc<Policy>>,
    /// `--tarpit`: its clients are trapped instead of greeted; `None`: greeted.
    pub tarpit: Option<Arc<Tarpit>>,
    /// The trap of the clients its policy traps (`--deny-action`, `--rate-action`,
    /// `--pregreet tarpit`); `None`: it traps no one.
    pub trap: Option<Arc<Tarpit>>,
    /// How its trapped clients are dripped.
    pub drip: DripSettings,
}

impl Config {
    /// The defaults of `greeter-server`, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Config {
            listeners: vec![ListenerConfig {
                id: ListenerId::new(None, &[listen.ip().to_string()], listen.port()),
                addrs: vec![listen],
                greeting: Greeting::from(DEFAULT_GREETING),
                proxy_protocol: false,
                policy: None,
                tarpit: None,
                trap: None,
                drip: DripSettings::default(),
            }],
            max_connections: 10_000,
            max_delayed: 10_000,
            write_timeout: Duration::from_secs(30),
            backlog: 1024,
            drain_timeout: Duration::from_secs(10),
            linger_timeout: Duration::from_secs(2),
            max_per_ip: None,
            send_buffer: None,
            proxy_timeout: Duration::from_secs(3),
            connection_log_level: log::Level::Debug,
            max_trapped: 4096,
            max_trapped_per_ip: None,
            trap_timeout: None,
            geoip: None,
        }
    }

    /// Gives every listener this greeting.
    pub fn with_greeting(mut self, greeting: impl Into<Greeting>) -> Self {
        let greeting = greeting.into();
        for listener in &mut self.listeners {
            listener.greeting = greeting.clone();
        }
        self
    }

    /// Makes every listener expect a PROXY protocol header first.
    pub fn with_proxy_protocol(mut self) -> Self {
        for listener in &mut self.listeners {
            listener.proxy_protocol = true;
        }
        self
    }

    /// Whether any listener expects PROXY protocol headers.
    pub fn any_proxy_protocol(&self) -> bool {
        self.listeners
            .iter()
            .any(|listener| listener.proxy_protocol)
    }
}
