//! Unit tests of the settings: which layer wins, how values are checked as they enter,
//! and what a reload takes.

use std::sync::Arc;

use super::*;
use crate::config::build;
use clap::CommandFactory;

#[test]
fn every_flag_has_a_key_and_every_key_a_flag() {
    let command = ServerCli::command();
    let mut flags: Vec<&str> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| {
            !matches!(
                *long,
                "config" | "check-config" | "health-check" | "help" | "version"
            )
        })
        .collect();
    let mut names: Vec<&str> = KEYS.iter().map(|key| key.name).collect();
    flags.sort_unstable();
    names.sort_unstable();
    assert_eq!(flags, names);
}

fn load(argv: &[&str], env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let matches = ServerCli::command()
        .try_get_matches_from(std::iter::once("greeter-server").chain(argv.iter().copied()))
        .unwrap();
    Settings::load(&matches, &Environment::from_pairs(env.iter().copied()))
}

#[test]
fn a_flag_wins_over_the_environment() {
    let settings = load(&["--port", "1"], &[("GREETER_PORT", "2")]).unwrap();
    assert_eq!(settings.server_args().port, 1);
    assert_eq!(settings.top["port"].source, Source::Flag);
    let settings = load(&[], &[("GREETER_PORT", "2")]).unwrap();
    assert_eq!(settings.server_args().port, 2);
    assert_eq!(
        settings.top["port"].source,
        Source::Env("GREETER_PORT".into())
    );
}

#[test]
fn environment_values_are_checked_by_the_flags_parsers() {
    let err = load(&[], &[("GREETER_MAX_CONNECTIONS", "0")]).unwrap_err();
    assert_eq!(
        err.0,
        "GREETER_MAX_CONNECTIONS=\"0\": 0 is not in 1..=4294967295"
    );
    let err = load(&[], &[("GREETER_PORT", "tcp://10.0.0.1:8080")]).unwrap_err();
    assert!(err.0.contains("enableServiceLinks"), "{err}");
    let err = load(&[], &[("GREETER_PREGREET", "ban")]).unwrap_err();
    assert_eq!(
        err.0,
        "GREETER_PREGREET=\"ban\": invalid value 'ban' for '--pregreet <ACTION>' \
         [possible values: greet, drop, tarpit]"
    );
    let err = load(&[], &[("GREETER_LOG_CONNECTIONS", "maybe")]).unwrap_err();
    assert_eq!(
        err.0,
        "GREETER_LOG_CONNECTIONS=\"maybe\": write true or false"
    );
    let err = load(
        &[],
        &[("GREETER_MESSAGE", "a"), ("GREETER_MESSAGE_FILE", "/x")],
    )
    .unwrap_err();
    assert!(err.0.contains("both set"), "{err}");
}

#[test]
fn hosts_and_booleans_from_the_environment() {
    let settings = load(
        &[],
        &[
            ("GREETER_HOST", "127.0.0.1, ::1"),
            ("GREETER_PROXY_PROTOCOL", "1"),
        ],
    )
    .unwrap();
    let args = settings.server_args();
    assert_eq!(args.host, ["127.0.0.1", "::1"]);
    assert!(args.proxy_protocol);
    // Empty is unset; commas with nothing between them are refused (not printed as
    // an empty list that would not read back, while the default is served).
    let settings = load(&[], &[("GREETER_PORT", "")]).unwrap();
    assert_eq!(settings.top["port"].source, Source::Default);
    for (var, value) in [("GREETER_HOST", ","), ("GREETER_DENY", " , ,")] {
        let err = load(&[], &[(var, value)]).unwrap_err();
        assert!(
            err.0.starts_with(&format!("{var}={value:?} names nothing")),
            "{err}"
        );
    }
}

#[test]
fn a_misspelt_variable_is_warned_about_and_others_are_ignored() {
    let settings = load(
        &[],
        &[
            ("GREETER_MAX_CONECTIONS", "5"),
            ("GREETER_SERVICE_HOST", "10.0.0.1"),
        ],
    )
    .unwrap();
    assert_eq!(
        settings.warnings(),
        ["ignoring GREETER_MAX_CONECTIONS: no such setting (did you mean GREETER_MAX_CONNECTIONS?)"]
    );
}

#[test]
fn a_message_from_a_higher_layer_replaces_a_message_file() {
    let settings = load(
        &["--message", "hi"],
        &[("GREETER_MESSAGE_FILE", "/nonexistent")],
    )
    .unwrap();
    let config = build(&settings, None).unwrap();
    assert_eq!(&*config.listeners[0].greeting, b"hi");
}

#[test]
fn a_reload_takes_every_key_a_reload_applies_and_no_other() {
    let running = build(&load(&[], &[]).unwrap(), None).unwrap();
    let mut argv = Vec::new();
    for key in KEYS {
        let value = match (key.applies, key.name) {
            (Applies::AtRestart, _) => continue,
            _ if key.is_path() => continue,
            (_, "message" | "deny-message") => "changed",
            (_, "allow" | "deny") => "192.0.2.0/24",
            (_, "log-connections" | "tarpit") => "",
            (_, "drip") => "greeting",
            (_, "drip-interval") => "2s",
            (_, "max-rate-per-ip") => "5/s",
            (_, "greet-delay") => "500ms",
            (_, "pass-ttl") => "1h",
            (_, "pregreet") => "drop",
            (_, "deny-action" | "rate-action") => "tarpit",
            (_, name) if name.ends_with("-timeout") => "1s",
            _ => "5",
        };
        argv.push(format!("--{}", key.name));
        if !value.is_empty() {
            argv.push(value.to_owned());
        }
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let changed = load(&argv, &[]).unwrap();
    let reloaded = build(&changed, Some(&running)).unwrap();
    assert_eq!(
        format!("{reloaded:?}"),
        format!("{:?}", build(&changed, None).unwrap()),
        "a reload left out a setting it applies"
    );
    // What needs a restart stays as it runs.
    let restart = load(&["--port", "1", "--backlog", "7"], &[]).unwrap();
    let reloaded = build(&restart, Some(&running)).unwrap();
    assert_eq!(reloaded.listeners[0].addrs, running.listeners[0].addrs);
    assert_eq!(reloaded.backlog, running.backlog);
}

#[test]
fn listeners_that_inherit_one_list_share_its_table() {
    let file = std::env::temp_dir().join(format!("greeter-shared-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "deny = [\"192.0.2.0/24\"]\n[[listener]]\nport = 0\n[[listener]]\nport = 0\n\
         [[listener]]\nport = 0\ndeny = [\"198.51.100.0/24\"]\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let config = build(&load(&["--config", &path], &[]).unwrap(), None);
    let _ = std::fs::remove_file(&file);
    let config = config.unwrap();
    let policy = |index: usize| config.listeners[index].policy.clone().unwrap();
    assert!(
        Arc::ptr_eq(&policy(0).list, &policy(1).list),
        "one table for the same list"
    );
    assert!(
        !Arc::ptr_eq(&policy(0).list, &policy(2).list),
        "a listener's own list is its own"
    );
    assert!(!policy(2).list.admits("198.51.100.1".parse().unwrap()));
    assert!(
        policy(2).list.admits("192.0.2.1".parse().unwrap()),
        "its own list replaces the top one"
    );
}
