//! Unit tests of the build: what a start makes of the flags, and what a reload keeps.

use std::sync::Arc;
use std::time::Duration;

use clap::CommandFactory;

use super::*;
use crate::config::flags::ServerCli;
use crate::config::settings::Environment;

/// The settings of this command line, with no environment.
fn settings(argv: &[&str]) -> Result<Settings, SettingsError> {
    let matches = ServerCli::command()
        .try_get_matches_from(std::iter::once("greeter-server").chain(argv.iter().copied()))
        .unwrap();
    Settings::load(&matches, &Environment::default())
}

/// What a start of this command line runs, or its error as one line.
fn config(argv: &[&str]) -> Result<Config, String> {
    let settings = settings(argv).map_err(|err| err.to_string())?;
    build(&settings, None).map_err(|err| err.to_string())
}

#[test]
fn defaults_match_the_documented_ones() {
    let config = config(&[]).unwrap();
    assert_eq!(
        config.listeners[0].addrs,
        ["127.0.0.1:8080".parse().unwrap()]
    );
    assert_eq!(
        &*config.listeners[0].greeting,
        b"Hello there! This is the hosted server"
    );
    assert_eq!(config.max_connections, 10_000);
    assert_eq!(config.write_timeout, Duration::from_secs(30));
    assert_eq!(config.backlog, 1024);
    assert_eq!(config.drain_timeout, Duration::from_secs(10));
}

#[test]
fn ipv6_hosts_parse() {
    let config = config(&["--host", "::1", "--port", "0"]).unwrap();
    assert_eq!(config.listeners[0].addrs, ["[::1]:0".parse().unwrap()]);
}

#[test]
fn limits_and_the_send_buffer_reach_the_config() {
    let config = config(&["--max-per-ip", "3", "--send-buffer", "64KiB"]).unwrap();
    assert_eq!(config.max_per_ip, Some(3));
    assert_eq!(config.send_buffer, Some(65536));
}

#[test]
fn an_empty_message_is_refused_in_greeters_words() {
    // clap lets it through, for the settings (a usage error, exit 2) or the
    // greeting's load to refuse in one line.
    assert_eq!(
        config(&["--message", ""]).unwrap_err(),
        "cannot use --message: the greeting is empty (give a non-empty greeting)"
    );
}

#[test]
fn max_delayed_defaults_to_max_connections() {
    let config300 = config(&["--max-connections", "300"]).unwrap();
    assert_eq!(config300.max_delayed, 300);
    let config40 = config(&["--max-connections", "300", "--max-delayed", "40"]).unwrap();
    assert_eq!(config40.max_delayed, 40);
}

#[test]
fn the_pass_table_comes_with_a_delay_and_a_reload_keeps_it_if_unchanged() {
    let policy = |argv: &[&str], running: Option<&Policy>| {
        let settings = settings(argv).unwrap();
        Policies::default()
            .get(settings.server_args(), running)
            .unwrap()
    };
    assert!(policy(&["--deny", "192.0.2.0/24"], None)
        .unwrap()
        .pass
        .is_none());
    assert!(policy(&["--greet-delay", "1s", "--pass-ttl", "0s"], None)
        .unwrap()
        .pass
        .is_none());
    let running = policy(&["--greet-delay", "1s"], None).unwrap();
    let kept = policy(
        &["--greet-delay", "2s", "--pregreet", "drop"],
        Some(&running),
    );
    let (old, new) = (
        running.pass.as_ref().unwrap(),
        kept.unwrap().pass.clone().unwrap(),
    );
    assert!(Arc::ptr_eq(old, &new), "same pass settings: the same table");
    for changed in [
        ["--pass-ttl", "1h"],
        ["--pass-table-size", "5"],
        ["--rate-prefix-v4", "24"],
    ] {
        let argv = [&["--greet-delay", "1s"][..], &changed[..]].concat();
        let new = policy(&argv, Some(&running)).unwrap().pass.clone().unwrap();
        assert!(!Arc::ptr_eq(old, &new), "{changed:?}: a new table");
    }
}

#[test]
fn message_is_taken_byte_for_byte() {
    let config = config(&["--message", "héllo\n"]).unwrap();
    assert_eq!(&*config.listeners[0].greeting, "héllo\n".as_bytes());
}

#[test]
fn missing_message_file_names_the_path_and_cause() {
    assert_eq!(
        config(&["--message-file", "/nonexistent/greeting.txt"]).unwrap_err(),
        "cannot read greeting file /nonexistent/greeting.txt: no such file or directory \
         (check the --message-file path and its permissions)"
    );
}
