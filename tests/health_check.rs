//! `greeter-server --health-check`: a container's HEALTHCHECK, made by the server
//! binary from the same flags, environment and config file as the server it checks.

mod util;

use std::process::{Command, Output};

use util::*;

/// `greeter-server --health-check ARGS` with `env` and no GREETER_* variable of the
/// test's environment.
fn health_check(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary("greeter-server"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GREETER_") {
            command.env_remove(name);
        }
    }
    command
        .arg("--health-check")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run greeter-server --health-check")
}

/// Its exit code and stderr, which must be one line when it is not empty.
fn outcome(output: &Output) -> (Option<i32>, String) {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.lines().count() <= 1, "more than one line: {stderr}");
    (output.status.code(), stderr)
}

/// Healthy: the port from the environment, the greeting from a config file, as the
/// server reads them; a wrong greeting or nothing listening is unhealthy (exit 1).
#[test]
fn the_check_passes_on_the_configured_greeting_and_fails_otherwise() {
    let (command, config) = ServerCommand::new(&[]).config(
        "health-check.toml",
        "host = \"127.0.0.1\"\nport = 0\nmessage = \"checked greeting\"\n",
    );
    let server = command.spawn();
    let port = server.addr.port().to_string();
    let config = config.to_str().unwrap();
    let env = [("GREETER_CONFIG", config), ("GREETER_PORT", port.as_str())];
    let healthy = health_check(&[], &env);
    assert_eq!(outcome(&healthy), (Some(0), String::new()));
    assert!(String::from_utf8_lossy(&healthy.stdout).contains("healthy"));

    // A flag wins over the file, as for the server: not the greeting it sends.
    let wrong = health_check(&["--message", "checked greetings"], &env);
    let (code, line) = outcome(&wrong);
    assert_eq!(code, Some(1), "{line}");
    assert!(
        line.contains("sent 16 bytes that are not the 17-byte greeting (only its beginning)"),
        "{line}"
    );
    let wrong = health_check(&["--message", "checked greetin"], &env);
    let (code, line) = outcome(&wrong);
    assert_eq!(code, Some(1), "{line}");
    assert!(
        line.contains("sent more than the 15-byte greeting"),
        "{line}"
    );
    let wrong = health_check(&["--message", "Checked greeting"], &env);
    let (code, line) = outcome(&wrong);
    assert_eq!(code, Some(1), "{line}");
    assert!(
        line.contains(
            "sent 16 bytes that are not the 16-byte greeting (they differ from byte 0 on)"
        ),
        "{line}"
    );

    let unused = free_port().to_string();
    let (code, line) = outcome(&health_check(&["--port", &unused], &[]));
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains("cannot connect to 127.0.0.1:"), "{line}");
}

/// A listener that takes a PROXY header gets one; its greeting follows.
#[test]
fn a_proxy_protocol_listener_is_sent_a_header() {
    let server = spawn_server(&["--proxy-protocol", "--message", "behind a proxy"]);
    let port = server.addr.port().to_string();
    let checked = health_check(
        &[
            "--proxy-protocol",
            "--message",
            "behind a proxy",
            "--port",
            &port,
        ],
        &[],
    );
    assert_eq!(outcome(&checked), (Some(0), String::new()));
}

/// A bad setting is a usage error (exit 2), as for the server.
#[test]
fn a_bad_configuration_is_exit_2() {
    let (code, line) = outcome(&health_check(
        &["--config", "/nonexistent/greeter.toml"],
        &[],
    ));
    assert_eq!(code, Some(2), "{line}");
    let (code, line) = outcome(&health_check(&[], &[("GREETER_PORT", "x")]));
    assert_eq!(code, Some(2), "{line}");
}
