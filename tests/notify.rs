//! systemd's notify protocol: the test is the service manager. It binds a Unix
//! datagram socket, passes it as `NOTIFY_SOCKET`, and reads what greeter says through
//! start, watchdog, reload and stop.

mod util;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use util::*;

/// A service manager's notify socket (a file, removed on drop, or an abstract name).
struct Manager {
    socket: UnixDatagram,
    /// `NOTIFY_SOCKET`'s value for it.
    notify_socket: String,
    path: Option<PathBuf>,
}

impl Manager {
    fn new(name: &str) -> Self {
        // Short: a socket path has at most 107 bytes.
        let path = std::env::temp_dir().join(format!("greeter-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        let notify_socket = path.to_str().unwrap().to_owned();
        Manager {
            socket,
            notify_socket,
            path: Some(path),
        }
    }

    /// A socket in Linux's abstract namespace, `@name` in `NOTIFY_SOCKET` (as
    /// systemd's own tests and some container managers use it): no file at all.
    fn abstract_named(name: &str) -> Self {
        let name = format!("greeter-{}-{name}", std::process::id());
        let address = SocketAddr::from_abstract_name(&name).unwrap();
        let socket = UnixDatagram::bind_addr(&address).expect("bind the abstract notify socket");
        socket.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        Manager {
            socket,
            notify_socket: format!("@{name}"),
            path: None,
        }
    }

    fn path(&self) -> &str {
        &self.notify_socket
    }

    /// The next datagram, as text.
    fn next(&self) -> String {
        let mut buffer = [0u8; 4096];
        let len = self
            .socket
            .recv(&mut buffer)
            .expect("a notify datagram in time");
        String::from_utf8_lossy(&buffer[..len]).into_owned()
    }

    /// Skips datagrams until one starts with `prefix`, which it returns.
    #[track_caller]
    fn wait_for(&self, prefix: &str) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut skipped = Vec::new();
        while Instant::now() < deadline {
            let datagram = self.next();
            if datagram.starts_with(prefix) {
                return datagram;
            }
            skipped.push(datagram);
        }
        panic!("no datagram starting {prefix:?}; got {skipped:?}");
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[test]
fn ready_watchdog_reload_and_stop_are_told_to_the_service_manager() {
    let manager = Manager::new("sequence");
    let (command, _config) = ServerCommand::new(&[]).config("notify.toml", "port = 0\n");
    let mut server = command
        .env("NOTIFY_SOCKET", manager.path())
        .env("WATCHDOG_USEC", "400000")
        .spawn();
    assert_eq!(
        manager.next(),
        format!(
            "MAINPID={}\nREADY=1\nSTATUS=serving: held=0 accepted=0 greeting_bytes=38\n",
            server.pid()
        )
    );
    // Every 200 ms (half of WATCHDOG_USEC) while the loop answers.
    let started = Instant::now();
    manager.wait_for("WATCHDOG=1\n");
    manager.wait_for("WATCHDOG=1\n");
    assert!(started.elapsed() >= Duration::from_millis(150));

    let mut peer = connect(server.addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    server.signal("HUP");
    let reloading = manager.wait_for("RELOADING=1\n");
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(
        usec.parse::<u64>().is_ok_and(|usec| usec > 0),
        "{reloading:?}"
    );
    assert_eq!(manager.wait_for("READY=1\n"), "READY=1\nSTATUS=reloaded\n");

    server.signal("TERM");
    assert_eq!(
        manager.wait_for("STOPPING=1\n"),
        "STOPPING=1\nSTATUS=draining\n"
    );
    server.assert_exits_cleanly_logging("totals in_flight=0 accepted=1", STEP_TIMEOUT);
}

#[test]
fn without_a_watchdog_asked_for_no_pings_are_sent() {
    let manager = Manager::new("quiet");
    let mut server = ServerCommand::new(&[])
        .env("NOTIFY_SOCKET", manager.path())
        // Another process's watchdog: not this one's to ping.
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1")
        .spawn();
    assert!(manager.next().starts_with("MAINPID="));
    server.signal("TERM");
    // The next datagram is the stop: no ping came between.
    assert_eq!(manager.next(), "STOPPING=1\nSTATUS=draining\n");
    server.assert_exits_cleanly_logging("totals in_flight=0", STEP_TIMEOUT);
}

#[test]
fn an_abstract_notify_socket_hears_ready_reload_and_stop() {
    let manager = Manager::abstract_named("abstract");
    let mut server = ServerCommand::new(&[])
        .env("NOTIFY_SOCKET", manager.path())
        .spawn();
    assert_eq!(
        manager.next(),
        format!(
            "MAINPID={}\nREADY=1\nSTATUS=serving: held=0 accepted=0 greeting_bytes=38\n",
            server.pid()
        )
    );
    server.signal("HUP");
    assert!(manager
        .wait_for("RELOADING=1\n")
        .contains("MONOTONIC_USEC="));
    manager.wait_for("READY=1\n");
    server.signal("TERM");
    assert_eq!(
        manager.wait_for("STOPPING=1\n"),
        "STOPPING=1\nSTATUS=draining\n"
    );
    server.assert_exits_cleanly_logging("totals in_flight=0", STEP_TIMEOUT);
    let stderr = server.stderr();
    assert!(!stderr.contains("notify:"), "{stderr}");
}
