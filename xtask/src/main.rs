//! `cargo run -p xtask -- generate`: writes greeter's man pages (`docs/man/`) and
//! shell completions (`docs/completions/`) from the clap definitions the binaries
//! parse with, so that they cannot drift from `--help`, and the Debian package's
//! variants of the deployment files (`docs/deploy/debian/`: the units with /usr/bin
//! paths, the jail disabled, the config file with every key commented at its
//! default or an example value). A test fails when what is shipped differs from what would be generated
//! now.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Command, CommandFactory};
use clap_complete::Shell;
use roff::{bold, italic, roman, Roff};

use greeter::cli::ClientCli;
use greeter::config::keys::{Applies, FileType, KEYS};
use greeter::config::ServerCli;
use greeter_load::cli::LoadCli;

fn main() -> ExitCode {
    let root = workspace_root();
    match std::env::args().nth(1).as_deref() {
        Some("generate") => {
            for (path, bytes) in generated() {
                let path = root.join(path);
                let written = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&path, bytes));
                if let Err(err) = written {
                    eprintln!("xtask: cannot write {}: {err}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: cargo run -p xtask -- generate   (man pages and completions)");
            ExitCode::from(2)
        }
    }
}

/// The repository's root (this crate is `xtask/` in it).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Every generated file: its path in the repository and its bytes.
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for command in commands() {
        let name = command.get_name().to_owned();
        files.push((
            PathBuf::from(format!("docs/man/{name}.1")),
            man_page(&command).into_bytes(),
        ));
        for (shell, file) in [
            (Shell::Bash, format!("{name}.bash")),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command.clone(), &name, &mut script);
            files.push((PathBuf::from(format!("docs/completions/{file}")), script));
        }
    }
    files.push((
        PathBuf::from("docs/man/greeter.toml.5"),
        config_page().into_bytes(),
    ));
    let root = workspace_root();
    let shipped = |path: &str| std::fs::read_to_string(root.join(path)).unwrap_or_default();
    let installed_paths = |unit: String| {
        unit.replace("/usr/local/bin/", "/usr/bin/")
            // The package keeps the docs under docs/, where README.md links them.
            .replace(
                "/usr/local/share/doc/greeter/operations.md",
                "/usr/share/doc/greeter/docs/operations.md",
            )
            .replace("/usr/local/share/doc/", "/usr/share/doc/")
            .replace(
                "# Install: see \"systemd socket activation\" in docs/operations.md (it installs\n\
                 # greeter-server, greeter-client and the operations.md that Documentation= names),\n\
                 # then: systemctl enable --now greeter.socket greeter.service\n",
                "# Installed by the greeter package, neither enabled nor started:\n\
                 #   systemctl enable --now greeter.socket greeter.service\n",
            )
    };
    for unit in ["greeter.service", "greeter.socket"] {
        files.push((
            PathBuf::from(format!("docs/deploy/debian/{unit}")),
            installed_paths(shipped(&format!("docs/deploy/{unit}"))).into_bytes(),
        ));
    }
    let jail = shipped("docs/deploy/fail2ban/jail.d/greeter.local").replace(
        "enabled      = true",
        "# Disabled as installed: set true (and add --log-connections to the unit) to use it.\n\
         enabled      = false",
    );
    files.push((
        PathBuf::from("docs/deploy/debian/jail.local"),
        jail.into_bytes(),
    ));
    files.push((
        PathBuf::from("docs/deploy/debian/greeter.toml"),
        default_config().into_bytes(),
    ));
    files
}

/// /etc/greeter/greeter.toml as the package installs it: every key, commented out,
/// at its default, with its flag's help. A key without a default is shown with the
/// example value of docs/deploy/greeter.toml, so that every line is a valid setting
/// once uncommented.
fn default_config() -> String {
    let server = ServerCli::command();
    let example = std::fs::read_to_string(workspace_root().join("docs/deploy/greeter.toml"))
        .unwrap_or_default();
    let mut out = String::from(
        "# greeter-server's configuration (greeter.toml(5)). Every key is shown commented\n\
         # out at its default (or, where it has none, with an example value): uncomment\n\
         # and change what you need, check with\n\
         #   greeter-server --config /etc/greeter/greeter.toml --check-config\n\
         # and apply with systemctl reload greeter (keys marked [restart]: restart).\n\
         # Write changes by rename: edit a copy in /etc/greeter, then mv it over this\n\
         # file (a file rewritten in place can be read half-written by a reload).\n\
         # Under socket activation (greeter.socket, port 17) host and port are not used.\n",
    );
    for key in KEYS {
        let arg = server
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.name));
        let help = arg
            .and_then(|arg| arg.get_help())
            .map(|help| help.to_string().replace('\n', " "))
            .unwrap_or_default();
        let default: Vec<String> = arg
            .map(|arg| {
                arg.get_default_values()
                    .iter()
                    .map(|value| value.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let restart = if key.applies == Applies::AtRestart {
            " [restart]"
        } else {
            ""
        };
        out.push('\n');
        for line in wrap(&format!("{help}{restart}"), 78) {
            out.push_str(&format!("# {line}\n"));
        }
        let value = match (key.file_type, default.first()) {
            (FileType::Boolean, _) => "false".to_owned(),
            (FileType::Integer, Some(value)) => value.clone(),
            (FileType::Hosts, Some(value)) => format!("[\"{value}\"]"),
            (_, Some(value)) => format!("\"{value}\""),
            (_, None) => {
                let value = example_value(&example, key.name).unwrap_or_else(|| {
                    format!(
                        "?   (no example for {} in docs/deploy/greeter.toml)",
                        key.name
                    )
                });
                out.push_str(&format!("# {} = {value}   {UNSET}\n", key.name));
                continue;
            }
        };
        out.push_str(&format!("# {} = {value}\n", key.name));
    }
    out
}

/// The comment after an example value in the packaged config.
const UNSET: &str = "# an example: unset by default";

/// The value `key` is given in `example` (docs/deploy/greeter.toml), set or commented
/// out: the text after `KEY = `, without the comment after it (two spaces and `#`).
fn example_value(example: &str, key: &str) -> Option<String> {
    example.lines().find_map(|line| {
        let line = line.strip_prefix("# ").unwrap_or(line);
        let value = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        let value = value.split("  #").next().unwrap_or(value).trim();
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// `text` cut into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let length = lines.last().map_or(0, String::len);
        if length > 0 && length + 1 + word.len() > width {
            lines.push(String::new());
        }
        if let Some(line) = lines.last_mut() {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

/// The date the pages give (`.TH`): fixed, so that generating twice gives the same bytes.
const PAGE_DATE: &str = "2026-12-02";

/// A command's man page: clap_mangen's title, name, description and options, a
/// SYNOPSIS that shows each flag's argument, and the sections clap has no place for
/// (signals, exit status, environment, files, see also).
fn man_page(command: &Command) -> String {
    let man = clap_mangen::Man::new(command.clone()).date(PAGE_DATE);
    let section = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut bytes = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = render(&mut bytes);
        without_preamble(&String::from_utf8_lossy(&bytes)).to_owned()
    };
    let mut page = String::from(PREAMBLE);
    page += &section(&|w| man.render_title(w));
    page += &section(&|w| man.render_name_section(w));
    page += without_preamble(&synopsis(command).render());
    page += &section(&|w| man.render_description_section(w));
    let (description, sections) = man_extra(command);
    page += without_preamble(&description.render());
    page += &section(&|w| man.render_options_section(w));
    page += without_preamble(&sections.render());
    code_as_bold(&page)
}

/// What roff puts first in every rendering (apostrophes typeset as such); a page
/// made of several renderings keeps one.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

fn without_preamble(roff: &str) -> &str {
    roff.strip_prefix(PREAMBLE).unwrap_or(roff)
}

/// Markdown's `code` in help texts (value descriptions, README-style phrases) as bold:
/// man shows backticks literally.
fn code_as_bold(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    for line in page.lines() {
        let parts: Vec<&str> = line.split('`').collect();
        if parts.len() % 2 == 1 {
            for (index, part) in parts.iter().enumerate() {
                if index % 2 == 1 {
                    out.push_str(&format!("\\fB{part}\\fR"));
                } else {
                    out.push_str(part);
                }
            }
        } else {
            // An odd backtick: left for the test to name.
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// SYNOPSIS: every flag with its argument, `[--port PORT]`, `[--host HOST]...` for
/// those that repeat, `[--send-proxy [VERSION]]` for an optional value.
fn synopsis(command: &Command) -> Roff {
    // Built, the command has its --help and --version too.
    let mut command = command.clone();
    command.build();
    let mut line = vec![bold(command.get_name())];
    for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
        let names = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => vec![
                bold(format!("-{short}")),
                roman("|"),
                bold(format!("--{long}")),
            ],
            (Some(short), None) => vec![bold(format!("-{short}"))],
            (None, Some(long)) => vec![bold(format!("--{long}"))],
            (None, None) => continue,
        };
        line.push(roman(" ["));
        line.extend(names);
        if arg.get_action().takes_values() {
            let value = arg
                .get_value_names()
                .map(|names| names.join(" "))
                .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
            let optional = arg
                .get_num_args()
                .is_some_and(|range| range.min_values() == 0);
            if optional {
                line.extend([roman(" ["), italic(value), roman("]")]);
            } else {
                line.extend([roman(" "), italic(value)]);
            }
        }
        line.push(roman("]"));
        if matches!(arg.get_action(), clap::ArgAction::Append) {
            line.push(roman("..."));
        }
    }
    // Left-adjusted and unhyphenated: a flag is never cut, nor spaced out.
    let mut roff = Roff::new();
    roff.control("SH", ["SYNOPSIS"])
        .control("nh", [] as [&str; 0])
        .control("ad", ["l"])
        .text(line)
        .control("ad", [] as [&str; 0])
        .control("hy", [] as [&str; 0]);
    roff
}

/// A section of tagged paragraphs: (tag, text) pairs, `code` in either made bold.
fn tagged(roff: &mut Roff, heading: &str, items: &[(&str, &str)]) {
    roff.control("SH", [heading]);
    for (tag, text) in items {
        roff.control("TP", [] as [&str; 0])
            .text([roman(*tag)])
            .text([roman(*text)]);
    }
}

/// What a command's page says beyond its flags: paragraphs for the end of
/// DESCRIPTION, and the sections after OPTIONS.
fn man_extra(command: &Command) -> (Roff, Roff) {
    let mut description = Roff::new();
    let mut sections = Roff::new();
    match command.get_name() {
        "greeter-server" => {
            for paragraph in [
                "Once it serves, it prints one line per listener on standard output, \
                 `listening on ADDR`, with the real address (so that `--port 0` works in \
                 scripts), and nothing else there; logs go to standard error. Started by \
                 systemd with sockets (see ENVIRONMENT), it serves them instead of binding.",
                "Every flag is also a key of the configuration file, greeter.toml(5), and \
                 an environment variable: `--max-connections 100`, `max-connections = 100`, \
                 `GREETER_MAX_CONNECTIONS=100`. Flags win over the environment, which wins \
                 over the file, which wins over the defaults. `[[listener]]` tables in the \
                 file serve several ports, each with its own host, port, greeting and \
                 proxy-protocol.",
            ] {
                description
                    .control("PP", [] as [&str; 0])
                    .text([roman(paragraph)]);
            }
            let signals = signals_of(command);
            let items: Vec<(&str, &str)> = signals
                .iter()
                .map(|(tag, text)| (tag.as_str(), text.as_str()))
                .collect();
            tagged(&mut sections, "SIGNALS", &items);
            tagged(
                &mut sections,
                "EXIT STATUS",
                &[
                    (
                        "0",
                        "Stopped by a signal (after the drain); `--check-config` found no \
                         problem; `--health-check` got exactly the greeting.",
                    ),
                    (
                        "1",
                        "A start-up error (the address is in use, a greeting file cannot be \
                         read, ...) or a failed worker; `--health-check` got no greeting or \
                         another; each as one line on standard error.",
                    ),
                    (
                        "2",
                        "A bad flag, `GREETER_*` variable or configuration file (one line \
                         naming it), or any problem `--check-config` finds.",
                    ),
                ],
            );
            tagged(
                &mut sections,
                "ENVIRONMENT",
                &[
                    ("`GREETER_CONFIG`", "The configuration file, as `--config`."),
                    (
                        "`GREETER_`KEY",
                        "Every flag, as `GREETER_` and its name upper-cased with `-` as `_` \
                         (`GREETER_MAX_CONNECTIONS=100`): it wins over the file, a flag wins \
                         over it.",
                    ),
                    (
                        "`RUST_LOG`",
                        "The log level: `info` by default; `debug` adds a line per \
                         connection (`--log-connections` gives those at `info`).",
                    ),
                    (
                        "`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`",
                        "Set by systemd's socket activation (greeter.socket): the sockets to \
                         serve instead of binding, matched to the listeners by name, else by \
                         address and port.",
                    ),
                    (
                        "`NOTIFY_SOCKET`, `WATCHDOG_USEC`",
                        "Set by systemd for `Type=notify`: the server reports `READY=1`, \
                         `RELOADING=1`, `STOPPING=1` and its status, and pings the watchdog \
                         while every event loop answers.",
                    ),
                ],
            );
            tagged(
                &mut sections,
                "FILES",
                &[
                    (
                        "/etc/greeter/greeter.toml",
                        "The configuration file the Debian package installs, every key \
                         commented out; greeter.service passes it with `--config`. The server \
                         reads no file unless `--config` or `GREETER_CONFIG` names one.",
                    ),
                    (
                        "/lib/systemd/system/greeter.service, /lib/systemd/system/greeter.socket",
                        "The units: port 17 as an unprivileged dynamic user (the package \
                         neither enables nor starts them).",
                    ),
                    (
                        "/etc/fail2ban/filter.d/greeter.conf, /etc/fail2ban/jail.d/greeter.local",
                        "A fail2ban filter for the `--log-connections` lines, and its jail \
                         (disabled).",
                    ),
                    (
                        "/usr/share/doc/greeter/docs/operations.md",
                        "Operations: systemd, workers, HAProxy in front, the limits to \
                         raise, upgrades, and every log line and metric.",
                    ),
                ],
            );
            see_also(
                &mut sections,
                &[
                    ("greeter.toml", "5"),
                    ("greeter-client", "1"),
                    ("greeter-load", "1"),
                    ("systemctl", "1"),
                    ("systemd.socket", "5"),
                ],
            );
        }
        "greeter-client" => {
            tagged(
                &mut sections,
                "EXIT STATUS",
                &[
                    (
                        "0",
                        "The server sent its greeting and closed the connection; the bytes \
                         are on standard output.",
                    ),
                    (
                        "1",
                        "No whole greeting: refused, timed out, reset, closed without \
                         anything, or cut off at `--max-bytes`; one line on standard error \
                         names the address and the cause.",
                    ),
                    ("2", "A bad flag."),
                ],
            );
            see_also(
                &mut sections,
                &[("greeter-server", "1"), ("greeter-load", "1")],
            );
        }
        "greeter-load" => {
            tagged(
                &mut sections,
                "OUTPUT",
                &[
                    (
                        "the table",
                        "Completed connections, errors by kind (refused, reset, timed out, \
                         short, wrong bytes, other), elapsed time, rate, and the \
                         connect-to-EOF latency percentiles in milliseconds, or `none` when \
                         no connection completed.",
                    ),
                    (
                        "`--json`",
                        "One JSON object with the same figures: `completed`, `errors_total`, \
                         `errors`, `elapsed_s`, `connections_per_s`, and `latency_us` \
                         (microseconds; `null` when no connection completed).",
                    ),
                ],
            );
            tagged(
                &mut sections,
                "EXIT STATUS",
                &[
                    (
                        "0",
                        "Every connection received the exact greeting and a clean end.",
                    ),
                    (
                        "1",
                        "A connection failed (the report counts them by kind), or the run \
                         could not start (one line on standard error).",
                    ),
                    ("2", "A bad flag."),
                ],
            );
            see_also(
                &mut sections,
                &[("greeter-server", "1"), ("greeter-client", "1")],
            );
        }
        _ => {}
    }
    (description, sections)
}

/// The signals `--help` lists (its text after the flags: a `Signals:` line, then
/// `  SIGNAL  what it does` with the text's continuation lines indented), as
/// (signals, text) pairs with the signals in `code`: one text for `--help` and
/// the page.
fn signals_of(command: &Command) -> Vec<(String, String)> {
    let help = command
        .get_after_help()
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut signals: Vec<(String, String)> = Vec::new();
    for line in help
        .lines()
        .skip_while(|line| *line != "Signals:")
        .skip(1)
        .take_while(|line| !line.is_empty())
    {
        match line
            .strip_prefix("  ")
            .filter(|rest| rest.starts_with("SIG"))
        {
            Some(item) => {
                let (names, text) = item.split_once("  ").unwrap_or((item, ""));
                let names = names.split(", ").map(|name| format!("`{name}`"));
                signals.push((names.collect::<Vec<_>>().join(", "), text.trim().to_owned()));
            }
            None => {
                if let Some((_, text)) = signals.last_mut() {
                    text.push(' ');
                    text.push_str(line.trim());
                }
            }
        }
    }
    for (_, text) in &mut signals {
        // Sentences, as the page's other sections are.
        if let Some(first) = text.get(..1) {
            *text = format!("{}{}.", first.to_uppercase(), &text[1..]);
        }
    }
    signals
}

/// SEE ALSO: bold names with their sections.
fn see_also(roff: &mut Roff, pages: &[(&str, &str)]) {
    let mut line = Vec::new();
    for (index, (page, section)) in pages.iter().enumerate() {
        if index > 0 {
            line.push(roman(", "));
        }
        line.push(bold(*page));
        line.push(roman(format!("({section})")));
    }
    // Unhyphenated: a page's name is never cut.
    roff.control("SH", ["SEE ALSO"])
        .control("nh", [] as [&str; 0])
        .text(line);
}

/// The three binaries' command lines.
fn commands() -> [Command; 3] {
    [
        ServerCli::command(),
        ClientCli::command(),
        LoadCli::command(),
    ]
}

/// greeter.toml(5): every key of the config file, with its flag's help and default,
/// from the same table `--check-config` and the reload use.
fn config_page() -> String {
    let server = ServerCli::command();
    let mut page = Roff::new();
    page.control(
        "TH",
        ["GREETER.TOML", "5", "2026-12-02", env!("CARGO_PKG_VERSION")],
    )
    .control("SH", ["NAME"])
    .text([roman(
        "greeter.toml - the configuration file of greeter-server",
    )])
    .control("SH", ["SYNOPSIS"])
    .text([
        bold("/etc/greeter/greeter.toml"),
        roman(" (given with "),
        bold("--config"),
        roman(" or GREETER_CONFIG)"),
    ])
    .control("SH", ["DESCRIPTION"])
    .text([roman(
        "A TOML file whose keys are greeter-server's long flags without the dashes, with \
             values as the flags write them (durations as strings, \"30s\"; sizes as integers \
             or strings, \"64KiB\"; lists as arrays). Flags win over GREETER_* environment \
             variables, which win over the file, which wins over the defaults. \
             [[listener]] tables serve several ports: each may set the keys marked per \
             listener for itself. greeter-server --check-config prints the effective \
             settings in this form, each value with where it came from. SIGHUP re-reads the \
             file: keys marked reload apply to new connections, the others wait for a \
             restart (with a warning). Paths of *-file keys are relative to the file's \
             directory. Write the file (and the greeting and list files it names) by \
             rename: write a new file in the same directory, then mv it over the old one. \
             A reload reads each file once; one rewritten in place (cp onto it, a shell \
             redirection, many editors) is truncated first and can be read empty or cut. \
             A file that changes while it is read, or a file with no keys where the \
             running configuration had some, is refused and changes nothing; a file cut \
             at a line boundary cannot always be told from a shorter one.",
    )])
    .control("SH", ["KEYS"]);
    for key in KEYS {
        let arg = server
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.name));
        let help = arg
            .and_then(|arg| arg.get_long_help().or(arg.get_help()))
            .map(|help| help.to_string().replace('\n', " "))
            .unwrap_or_default();
        let default: Vec<String> = arg
            .map(|arg| {
                arg.get_default_values()
                    .iter()
                    .map(|value| value.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let kind = match key.file_type {
            FileType::Integer => "integer",
            FileType::Boolean => "boolean",
            FileType::Text => "string",
            FileType::Size => "size",
            FileType::Hosts => "string or array of strings",
        };
        let mut facts = vec![kind.to_owned()];
        if !default.is_empty() {
            facts.push(format!("default {}", default.join(", ")));
        }
        facts.push(
            match key.applies {
                Applies::AtReload => "reload",
                Applies::AtRestart => "restart",
            }
            .to_owned(),
        );
        if key.per_listener {
            facts.push("per listener".to_owned());
        }
        page.control("TP", [] as [&str; 0])
            .text([
                bold(key.name),
                roman(" ("),
                italic(facts.join("; ")),
                roman(")"),
            ])
            .text([roman(help)]);
    }
    page.control("SH", ["EXAMPLE"])
        .control("nf", [] as [&str; 0])
        .text([roman(
            "max-connections = 20000\nwrite-timeout = \"10s\"\ndeny-file = \"deny.list\"\n\n[[listener]]\nport = 22\nmessage = \"SSH-2.0-OpenSSH_9.6\\r\\n\"\n\n[[listener]]\nport = 25\nmessage-file = \"smtp-banner.txt\"\nproxy-protocol = true",
        )])
        .control("fi", [] as [&str; 0]);
    tagged(
        &mut page,
        "FILES",
        &[
            (
                "/etc/greeter/greeter.toml",
                "The file the Debian package installs (every key commented out, at its \
                 default or with an example value), read by greeter.service.",
            ),
            (
                "/usr/share/doc/greeter/docs/deploy/greeter.toml",
                "An annotated example: every key, grouped, with [[listener]] tables.",
            ),
        ],
    );
    see_also(
        &mut page,
        &[
            ("greeter-server", "1"),
            ("greeter-client", "1"),
            ("greeter-load", "1"),
        ],
    );
    code_as_bold(&page.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_man_pages_and_completions_are_what_the_cli_generates() {
        let root = workspace_root();
        let mut stale = Vec::new();
        for (path, bytes) in generated() {
            if std::fs::read(root.join(&path)).ok().as_deref() != Some(&bytes[..]) {
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "{} differ from the CLI: run cargo run -p xtask -- generate and commit them",
            stale.join(", ")
        );
    }

    #[test]
    fn the_packaged_config_uncommented_is_every_default() {
        use greeter::config::settings::Environment;
        use greeter::config::Settings;
        let uncommented: String = default_config()
            .lines()
            .filter(|line| !line.ends_with(UNSET))
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| {
                KEYS.iter()
                    .any(|key| line.starts_with(&format!("{} = ", key.name)))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let path =
            std::env::temp_dir().join(format!("greeter-defaults-{}.toml", std::process::id()));
        std::fs::write(&path, &uncommented).unwrap();
        let load = |argv: &[&str]| {
            let matches = ServerCli::command()
                .try_get_matches_from(std::iter::once("greeter-server").chain(argv.iter().copied()))
                .unwrap();
            let settings = Settings::load(&matches, &Environment::default()).unwrap();
            format!("{:?}", settings.server_args())
        };
        let with_file = load(&["--config", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(&path);
        assert_eq!(with_file, load(&[]), "{uncommented}");
    }

    /// The generated man pages: file name and text.
    fn pages() -> Vec<(String, String)> {
        generated()
            .into_iter()
            .filter(|(path, _)| path.starts_with("docs/man"))
            .map(|(path, bytes)| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, String::from_utf8(bytes).unwrap())
            })
            .collect()
    }

    #[test]
    fn the_man_pages_have_the_sections_a_reader_looks_for_and_no_markdown() {
        let pages = pages();
        assert_eq!(pages.len(), 4);
        for (name, page) in &pages {
            assert!(!page.contains('`'), "{name}: a literal Markdown backtick");
            let sections: Vec<&str> = page
                .lines()
                .filter_map(|line| line.strip_prefix(".SH "))
                .map(|heading| heading.trim_matches('"'))
                .collect();
            let wanted: &[&str] = match name.as_str() {
                "greeter-server.1" => &[
                    "NAME",
                    "SYNOPSIS",
                    "DESCRIPTION",
                    "OPTIONS",
                    "SIGNALS",
                    "EXIT STATUS",
                    "ENVIRONMENT",
                    "FILES",
                    "SEE ALSO",
                ],
                "greeter.toml.5" => &[
                    "NAME",
                    "SYNOPSIS",
                    "DESCRIPTION",
                    "KEYS",
                    "FILES",
                    "SEE ALSO",
                ],
                _ => &[
                    "NAME",
                    "SYNOPSIS",
                    "DESCRIPTION",
                    "OPTIONS",
                    "EXIT STATUS",
                    "SEE ALSO",
                ],
            };
            for section in wanted {
                assert!(
                    sections.contains(section),
                    "{name} has no {section}: {sections:?}"
                );
            }
        }
        // The server's signals are those --help lists, each with its text.
        let signals = signals_of(&ServerCli::command());
        let names: Vec<&str> = signals.iter().map(|(names, _)| names.as_str()).collect();
        assert_eq!(
            names,
            ["`SIGINT`, `SIGTERM`", "`SIGHUP`", "`SIGUSR1`", "`SIGUSR2`"],
            "{signals:?}"
        );
        assert!(
            signals.iter().all(|(_, text)| text.len() > 10),
            "{signals:?}"
        );
        // Each SYNOPSIS names every flag with its argument.
        for command in commands() {
            let name = format!("{}.1", command.get_name());
            let page = &pages.iter().find(|(page, _)| *page == name).unwrap().1;
            let synopsis = page
                .split(".SH SYNOPSIS\n")
                .nth(1)
                .and_then(|rest| rest.split(".SH ").next())
                .unwrap();
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                let flag = format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"));
                let with_value = match arg.get_value_names() {
                    Some(names) if arg.get_action().takes_values() => {
                        format!("{flag} \\fI{}\\fR", names.join(" ").replace('-', "\\-"))
                    }
                    _ => flag.clone(),
                };
                assert!(
                    synopsis.contains(&with_value) || synopsis.contains(&format!("{flag} [\\fI")),
                    "{name}: SYNOPSIS lacks {with_value}:\n{synopsis}"
                );
            }
        }
    }

    /// Needs man-db's `man` (scripts/test.sh installs it as root; run by another user
    /// without it, test.sh skips the tests named man_db_*).
    #[test]
    fn man_db_renders_every_page_without_a_warning_at_80_columns() {
        for (name, _) in pages() {
            let path = workspace_root().join("docs/man").join(&name);
            let output = std::process::Command::new("man")
                .args(["--warnings", "-l"])
                .arg(&path)
                .env("MANWIDTH", "80")
                .stdin(std::process::Stdio::null())
                .output()
                .expect("man is installed (scripts/test.sh installs man-db)");
            let warnings = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{name}: {warnings}");
            assert_eq!(warnings, "", "{name}: man --warnings");
        }
    }

    #[test]
    fn the_config_page_has_every_key() {
        let page = config_page();
        for key in KEYS {
            assert!(
                page.contains(&format!("\\fB{}\\fR", key.name.replace('-', "\\-"))),
                "{}",
                key.name
            );
        }
    }

    #[test]
    fn a_rate_table_entry_costs_one_figure_everywhere() {
        // The figure `scripts/rate-table.sh` measures (bytes_per_entry), as --help
        // (and so greeter.toml(5)), the README and operations.md give it.
        let root = workspace_root();
        let figure = |text: &str, before: &str| {
            let at = text.find(before).unwrap_or_else(|| panic!("{before:?}"));
            let rest = &text[at + before.len()..];
            let start = rest.find("about ").expect("about N bytes") + 6;
            rest[start..]
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        let help = ServerCli::command()
            .get_arguments()
            .find(|arg| arg.get_long() == Some("rate-table-size"))
            .and_then(|arg| arg.get_help())
            .map(|help| help.to_string())
            .unwrap();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let operations = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
        let figures = [
            figure(&help, "remembers at most N sources"),
            figure(&readme, "| `--rate-table-size N` |"),
            figure(&operations, "forgotten source that returns"),
        ];
        assert!(figures.iter().all(|one| *one == figures[0]), "{figures:?}");
    }
}
