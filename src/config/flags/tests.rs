//! Unit tests of the flags as clap parses them: units, ranges and conflicts.

use std::time::Duration;

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ServerArgs,
}

fn parse(argv: &[&str]) -> Result<ServerArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("greeter-server").chain(argv.iter().copied()))
        .map(|cli| cli.args)
}

#[test]
fn durations_take_human_units() {
    let args = parse(&["--write-timeout", "250ms", "--drain-timeout", "1m"]).unwrap();
    assert_eq!(args.write_timeout, Duration::from_millis(250));
    assert_eq!(args.drain_timeout, Duration::from_secs(60));
    assert!(parse(&["--write-timeout", "soon"]).is_err());
}

#[test]
fn workers_and_per_ip_limit_parse() {
    let args = parse(&["--workers", "0", "--max-per-ip", "3"]).unwrap();
    assert_eq!(args.workers, 0);
    assert_eq!(args.max_per_ip, Some(3));
    assert_eq!(parse(&[]).unwrap().workers, 1);
    assert!(parse(&["--max-per-ip", "0"]).is_err());
}

#[test]
fn message_and_message_file_conflict() {
    let err = parse(&["--message", "hi", "--message-file", "/tmp/x"])
        .err()
        .unwrap();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
}

#[test]
fn a_send_buffer_takes_binary_units() {
    let args = parse(&["--send-buffer", "64KiB"]).unwrap();
    assert_eq!(args.send_buffer, Some(65536));
}

#[test]
fn negative_numbers_are_out_of_range_not_unknown_flags() {
    for flag in [
        "--max-connections",
        "--backlog",
        "--max-per-ip",
        "--workers",
        "--port",
    ] {
        let err = parse(&[flag, "-1"]).err().unwrap();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::ValueValidation,
            "{flag}: {err}"
        );
        assert!(
            err.to_string().contains("'-1'") || err.to_string().contains("-1 is not"),
            "{flag}: {err}"
        );
    }
}

#[test]
fn zero_limits_are_rejected() {
    assert!(parse(&["--max-connections", "0"]).is_err());
    assert!(parse(&["--backlog", "0"]).is_err());
    assert!(parse(&["--max-delayed", "0"]).is_err());
    assert!(parse(&["--pass-table-size", "0"]).is_err());
}
