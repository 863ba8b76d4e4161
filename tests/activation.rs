//! systemd socket activation: the server serves the listening socket passed as fd 3
//! (LISTEN_FDS/LISTEN_PID), and refuses clearly what is not one. Uses
//! `systemd-socket-activate` (Debian's systemd package; scripts/test.sh installs it).

mod util;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use util::*;

/// `systemd-socket-activate` listening on a free loopback port, ready to start
/// greeter-server with `args` on the first connection.
struct Activator {
    child: Child,
    port: u16,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Activator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn activate(extra: &[&str], args: &[&str]) -> Activator {
    // systemd-socket-activate needs a port number: take a free one from the kernel.
    // Another test could grab it in between, so try a few.
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("systemd-socket-activate")
            .args(extra)
            .args(["-l", &format!("127.0.0.1:{port}"), binary("greeter-server")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("systemd-socket-activate is installed (scripts/test.sh installs systemd)");
        let stderr = lines_of(child.stderr.take().unwrap());
        match stderr.recv_timeout(STEP_TIMEOUT) {
            Ok(line) if line.starts_with("Listening on") => {
                return Activator {
                    child,
                    port,
                    stderr,
                }
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    panic!("systemd-socket-activate could not listen on a free port");
}

fn lines_until(stderr: &mpsc::Receiver<String>, needle: &str) -> String {
    let mut seen = String::new();
    while let Ok(line) = stderr.recv_timeout(STEP_TIMEOUT) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(needle) {
            return seen;
        }
    }
    panic!("no {needle:?} in:\n{seen}");
}

#[test]
fn systemd_server_serves_the_socket_systemd_passes() {
    let activator = activate(&[], &[]);
    let addr = format!("127.0.0.1:{}", activator.port).parse().unwrap();
    // The first connection starts the server, which then greets it from fd 3.
    let mut peer = connect(addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    lines_until(&activator.stderr, "(socket passed by systemd)");
    let mut peer = connect(addr);
    assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
}

#[test]
fn systemd_two_workers_share_the_passed_socket() {
    let activator = activate(&[], &["--workers", "2"]);
    let addr = format!("127.0.0.1:{}", activator.port).parse().unwrap();
    for _ in 0..50 {
        let mut peer = connect(addr);
        assert_eq!(read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);
    }
    lines_until(&activator.stderr, "workers=2");
}

#[test]
fn systemd_a_passed_socket_that_is_not_listening_is_a_clear_error() {
    // With --accept, systemd-socket-activate passes each accepted connection instead.
    let activator = activate(&["--accept"], &[]);
    let addr = format!("127.0.0.1:{}", activator.port).parse().unwrap();
    let _peer = connect(addr);
    let log = lines_until(&activator.stderr, "greeter-server:");
    assert!(
        log.contains(
            "greeter-server: cannot serve the socket passed by systemd (fd 3): \
             it is a TCP socket but not a listening one"
        ),
        "{log}"
    );
}

#[test]
fn systemd_a_passed_fd_that_is_not_a_socket_is_a_clear_error_and_exit_1() {
    let output = Command::new("sh")
        .args([
            "-c",
            "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" 3</dev/null",
            binary("greeter-server"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "greeter-server: cannot serve the socket passed by systemd (fd 3): fd 3 is not a socket"
        ),
        "{stderr}"
    );
}

#[test]
fn systemd_the_documented_units_verify() {
    // systemd-analyze checks every directive; the binary path must exist, so point the
    // units at the one this test run built.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for unit in ["greeter.socket", "greeter.service"] {
        let text = std::fs::read_to_string(format!("docs/deploy/{unit}")).unwrap();
        let path = dir.join(unit);
        std::fs::write(
            &path,
            text.replace("/usr/local/bin/greeter-server", binary("greeter-server")),
        )
        .unwrap();
        paths.push(path);
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze is installed (scripts/test.sh installs systemd)");
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{complaints}");
    assert!(complaints.trim().is_empty(), "{complaints}");
    let service = std::fs::read_to_string("docs/deploy/greeter.service").unwrap();
    // A broken config file is caught before a start or restart touches the server.
    assert!(
        service.contains(
            "ExecStartPre=/usr/local/bin/greeter-server --config /etc/greeter/greeter.toml --check-config"
        ),
        "greeter.service does not check its config first"
    );
    for hardening in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=\n",
        "LimitNOFILE=",
    ] {
        assert!(
            service.contains(hardening),
            "greeter.service lacks {hardening:?}"
        );
    }
}

#[test]
fn systemd_two_passed_sockets_are_both_served() {
    let second = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let activator = activate(&["-l", &second.to_string()], &["--workers", "2"]);
    let first: std::net::SocketAddr = format!("127.0.0.1:{}", activator.port).parse().unwrap();
    for addr in [first, second, first, second] {
        let mut peer = connect(addr);
        assert_eq!(
            read_to_eof(&mut peer).unwrap(),
            DEFAULT_GREETING,
            "from {addr}"
        );
    }
    lines_until(&activator.stderr, "(socket passed by systemd)");
}

#[test]
fn systemd_each_passed_socket_serves_the_greeting_of_its_listener() {
    let second = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Written once the first port is known: the server starts at the first connection.
    let config = temp_file("activation.toml", b"");
    let activator = activate(&["-l", &second.to_string()], &["--config", config.arg()]);
    let first: std::net::SocketAddr = format!("127.0.0.1:{}", activator.port).parse().unwrap();
    std::fs::write(
        &config,
        format!(
            "[[listener]]\nport = {}\nmessage = \"second\"\n\n[[listener]]\nport = {}\nmessage = \"first\"\n",
            second.port(),
            first.port()
        ),
    )
    .unwrap();
    for (addr, greeting) in [(first, b"first"), (second, b"secon"), (first, b"first")] {
        let mut peer = connect(addr);
        let received = read_to_eof(&mut peer).unwrap();
        assert!(received.starts_with(greeting), "from {addr}: {received:?}");
    }
    lines_until(&activator.stderr, "(socket passed by systemd)");
}

#[test]
fn systemd_sockets_named_by_file_descriptor_name_serve_the_listener_of_that_name() {
    let second = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The sockets are passed in the order -l gives them: the second, then the first.
    let config = temp_file(
        "activation-named.toml",
        b"[[listener]]\nname = \"first\"\nport = 0\nmessage = \"first\"\n\n\
          [[listener]]\nname = \"second\"\nport = 0\nmessage = \"second\"\n",
    );
    let activator = activate(
        &["--fdname=second:first", "-l", &second.to_string()],
        &["--config", config.arg()],
    );
    let first: std::net::SocketAddr = format!("127.0.0.1:{}", activator.port).parse().unwrap();
    for (addr, greeting) in [
        (first, &b"first"[..]),
        (second, b"second"),
        (first, b"first"),
    ] {
        let mut peer = connect(addr);
        assert_eq!(read_to_eof(&mut peer).unwrap(), greeting, "from {addr}");
    }
    lines_until(&activator.stderr, "(socket passed by systemd)");
}

#[test]
fn systemd_a_passed_socket_that_no_listener_names_is_a_clear_error() {
    let config = temp_file("activation-unnamed.toml", b"");
    let activator = activate(&[], &["--config", config.arg()]);
    let other = if activator.port == 1 {
        2
    } else {
        activator.port - 1
    };
    std::fs::write(
        &config,
        format!("[[listener]]\nport = {other}\n\n[[listener]]\nport = 0\n"),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", activator.port).parse().unwrap();
    let _peer = connect(addr);
    let log = lines_until(&activator.stderr, "greeter-server:");
    assert!(
        log.contains(&format!(
            "greeter-server: cannot serve the socket on 127.0.0.1:{} passed by systemd: \
             no listener has its name, or its address and port",
            activator.port
        )),
        "{log}"
    );
}
