//! `greeter-client`: prints exactly what it received, and fails with one clear line.

mod util;

use std::io::Write;
use std::net::TcpListener;
use std::thread;

use greeter::Config;
use socket2::SockRef;
use util::*;

#[test]
fn client_prints_the_greeting_exactly() {
    let server = start_server(default_config());
    let port = server.addr.port().to_string();
    let (status, stdout, stderr) = run_binary("greeter-client", &["--port", &port]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    // stdout is a pipe here, so no newline is added.
    assert_eq!(stdout, b"Hello there! This is the hosted server");
}

#[test]
fn client_prints_a_multi_megabyte_greeting_whole() {
    let greeting = large_greeting(6 * 1024 * 1024 + 7);
    let server = start_server(config_with(&greeting));
    let port = server.addr.port().to_string();
    let (status, stdout, stderr) = run_binary("greeter-client", &["--port", &port]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_same_bytes(&stdout, &greeting);
}

#[test]
fn client_reports_refused_connection() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (status, stdout, stderr) = run_binary("greeter-client", &["--port", &port.to_string()]);
    assert_eq!(status.code(), Some(1));
    assert!(stdout.is_empty());
    assert_eq!(
        stderr.trim_end(),
        format!("greeter-client: cannot connect to 127.0.0.1:{port}: connection refused")
    );
}

#[test]
fn client_times_out_on_a_silent_server() {
    // The kernel completes the handshake from the backlog; nobody ever writes.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let (status, _, stderr) =
        run_binary("greeter-client", &["--port", &port, "--timeout", "300ms"]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.starts_with(&format!(
            "greeter-client: timed out reading from 127.0.0.1:{port}: nothing received for 300ms"
        )),
        "{stderr}"
    );
}

#[test]
fn client_reports_reset_mid_greeting() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let resetter = thread::spawn(move || {
        let (mut stream, client) = listener.accept().unwrap();
        stream.write_all(b"Hello th").unwrap();
        // Mid-greeting: the client has the first bytes (nothing of ours is
        // unacknowledged) and has read them (nothing waits in its receive queue) when
        // the reset comes.
        let (std::net::SocketAddr::V4(client), std::net::SocketAddr::V4(server)) =
            (client, stream.local_addr().unwrap())
        else {
            panic!("IPv4 loopback");
        };
        wait_until("the client to read the first bytes", || {
            let delivered = tcp_queues(server, client).is_some_and(|(unacked, _)| unacked == 0);
            delivered && tcp_queues(client, server).is_some_and(|(_, unread)| unread == 0)
        });
        // Linger 0: close sends a reset instead of a FIN.
        SockRef::from(&stream)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
    });
    let (status, stdout, stderr) = run_binary("greeter-client", &["--port", &port]);
    resetter.join().unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(stdout.is_empty(), "an incomplete greeting is not printed");
    assert!(
        stderr.starts_with(&format!(
            "greeter-client: connection reset by 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}

#[test]
fn client_cuts_off_a_server_that_sends_too_much() {
    let server = start_server(default_config());
    let port = server.addr.port().to_string();
    let (status, stdout, stderr) =
        run_binary("greeter-client", &["--port", &port, "--max-bytes", "10"]);
    assert_eq!(status.code(), Some(1));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("sent more than 10 bytes; cut off"),
        "{stderr}"
    );
}

#[test]
fn client_rejects_bad_flags_with_exit_2() {
    let (status, _, stderr) = run_binary("greeter-client", &["--timeout", "forever"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("error:"), "{stderr}");
}

#[test]
fn client_fails_when_the_server_closes_without_sending_anything() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let closer = thread::spawn(move || drop(listener.accept().unwrap()));
    let (status, stdout, stderr) = run_binary("greeter-client", &["--port", &port]);
    closer.join().unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(
        stderr.trim_end(),
        format!("greeter-client: 127.0.0.1:{port} closed the connection without sending anything")
    );
}

#[test]
fn client_refuses_port_0_as_a_usage_error_worded_as_the_servers() {
    for port in ["0", "-1", "65536"] {
        let (status, _, stderr) = run_binary("greeter-client", &["--port", port]);
        assert_eq!(status.code(), Some(2), "--port {port}: {stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: invalid value '{port}' for '--port <PORT>': "
            )),
            "--port {port}: {stderr}"
        );
    }
    let (_, _, stderr) = run_binary("greeter-client", &["--port", "0"]);
    assert!(stderr.contains("0 is not in 1..=65535"), "{stderr}");
}

#[test]
fn client_rejects_a_zero_timeout() {
    let (status, _, stderr) = run_binary("greeter-client", &["--timeout", "0s"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
}

#[test]
fn client_takes_a_bracketed_ipv6_host_as_its_messages_print_it() {
    let server = start_server_on(Config::new("[::1]:0".parse().unwrap()));
    let port = server.addr.port().to_string();
    let (status, stdout, stderr) =
        run_binary("greeter-client", &["--host", "[::1]", "--port", &port]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, b"Hello there! This is the hosted server");
}
