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
        let mut page = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = clap_mangen::Man::new(command.clone())
            .date("2026-12-02")
            .render(&mut page);
        files.push((PathBuf::from(format!("docs/man/{name}.1")), page));
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
        .control("fi", [] as [&str; 0])
        .control("SH", ["SEE ALSO"])
        .text([bold("greeter-server"), roman("(1), "), bold("greeter-client"), roman("(1), "), bold("greeter-load"), roman("(1)")]);
    page.render()
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
            format!("{:?}", settings.server_args().unwrap())
        };
        let with_file = load(&["--config", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(&path);
        assert_eq!(with_file, load(&[]), "{uncommented}");
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
