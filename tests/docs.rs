//! What a newcomer reads first: README's tables render as tables and name every flag,
//! its commands are the right ones, the README the package installs links only files
//! the package installs, and `scripts/test.sh --help` names what the script runs.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use clap::CommandFactory;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The Markdown files a reader meets.
const MARKDOWN: &[&str] = &[
    "README.md",
    "CHANGELOG.md",
    "docs/architecture.md",
    "docs/operations.md",
    "docs/performance.md",
];

#[test]
fn every_markdown_table_is_one_block_without_a_blank_line_inside() {
    for path in MARKDOWN {
        let text = read(path);
        let lines: Vec<&str> = text.lines().collect();
        let mut in_code = false;
        for (index, line) in lines.iter().enumerate() {
            if line.starts_with("```") {
                in_code = !in_code;
            }
            if in_code || !line.starts_with('|') {
                continue;
            }
            // A row continues the table above it, or starts one: a header followed by
            // its |---| line. Anything else renders as a paragraph of pipes.
            let continues = index > 0 && lines[index - 1].starts_with('|');
            let starts = lines
                .get(index + 1)
                .is_some_and(|next| next.starts_with("|---") || next.starts_with("| ---"));
            assert!(
                continues || starts,
                "{path}:{}: a table row outside a table (a blank line inside the table?): {line}",
                index + 1
            );
        }
    }
}

#[test]
fn the_readme_flag_table_names_every_server_flag() {
    let readme = read("README.md");
    let section = readme
        .split("\n## Server flags\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Server flags section");
    let first_cells: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split(" | ").next())
        .collect();
    for arg in greeter::config::ServerCli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let flag = format!("--{long}");
        assert!(
            first_cells.iter().any(|cell| cell
                .split(", `")
                .any(|name| name.split(['`', ' ']).next() == Some(&flag))),
            "README's server flag table has no row for --{long}"
        );
    }
}

#[test]
fn the_readme_installs_from_the_lock_file() {
    let readme = read("README.md");
    let installs: Vec<&str> = readme
        .lines()
        .filter(|line| line.starts_with("cargo install --") && line.contains("--path"))
        .collect();
    assert!(installs.len() >= 2, "{installs:?}");
    for line in installs {
        assert!(line.contains("--locked"), "without Cargo.lock: {line}");
    }
}

/// The files the Debian package installs (Cargo.toml's [package.metadata.deb]
/// assets), as paths under `/`.
fn packaged_files() -> BTreeSet<PathBuf> {
    let manifest = read("Cargo.toml");
    let assets = manifest
        .split("\nassets = [\n")
        .nth(1)
        .and_then(|rest| rest.split("\n]").next())
        .expect("Cargo.toml lists the package's assets");
    assets
        .lines()
        .filter(|line| line.trim_start().starts_with('['))
        .map(|line| {
            let fields: Vec<&str> = line.split('"').collect();
            let (source, target) = (fields[1], fields[3]);
            let name = Path::new(source).file_name().unwrap();
            match target.strip_suffix('/') {
                Some(dir) => Path::new(dir).join(name),
                None => PathBuf::from(target),
            }
        })
        .collect()
}

/// `path` with its `..` and `.` taken out.
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The relative link targets of a Markdown text (`[text](target)`, without
/// `#fragment`); addresses with a scheme are left out.
fn relative_links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|target| !target.contains("://") && !target.starts_with('#'))
        .map(|target| target.split('#').next().unwrap_or(target).to_owned())
        .collect()
}

#[test]
fn every_relative_link_of_the_installed_readme_names_an_installed_file() {
    let installed = packaged_files();
    let doc = Path::new("usr/share/doc/greeter");
    assert!(installed.contains(&doc.join("README.md")), "{installed:?}");
    let links = relative_links(&read("README.md"));
    assert!(links.len() >= 4, "{links:?}");
    for link in links {
        let target = normalized(&doc.join(&link));
        assert!(
            installed.contains(&target),
            "README links {link}, which the package does not install (at /{})",
            target.display()
        );
    }
    // The docs it links link each other: those resolve too, where they are installed.
    for path in [
        "docs/architecture.md",
        "docs/operations.md",
        "docs/performance.md",
    ] {
        let at = doc.join(path);
        for link in relative_links(&read(path)) {
            let target = normalized(&at.parent().unwrap().join(&link));
            assert!(
                installed.contains(&target),
                "{path} links {link}, which the package does not install"
            );
        }
    }
}

#[test]
fn test_sh_help_names_every_script_it_runs_and_claims_no_stale_time() {
    let script = read("scripts/test.sh");
    let output = std::process::Command::new("bash")
        .args(["scripts/test.sh", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let run: BTreeSet<&str> = script
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("scripts/"))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(run.len() >= 7, "{run:?}");
    for name in run {
        assert!(
            help.contains(name),
            "scripts/test.sh --help does not name {name}"
        );
    }
    // How long it takes depends on the machine and the suite: the help gives no
    // figure to go stale (README has a measured one, dated).
    let words: Vec<&str> = help.split_whitespace().collect();
    for pair in words.windows(2) {
        let figure = pair[0].chars().all(|c| c.is_ascii_digit()) || pair[0] == "a";
        let unit = pair[1].starts_with("second") || pair[1].starts_with("minute");
        assert!(
            !(figure && unit),
            "a time in scripts/test.sh --help: {pair:?}"
        );
    }
}

#[test]
fn the_proxy_timeout_says_it_runs_from_the_deferred_accept() {
    let help = greeter::config::ServerCli::command()
        .get_arguments()
        .find(|arg| arg.get_long() == Some("proxy-timeout"))
        .and_then(|arg| arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(help.contains("from the accept"), "{help}");
    assert!(help.contains("about 1s"), "{help}");
    let readme = read("README.md");
    let row = readme
        .lines()
        .find(|line| line.starts_with("| `--proxy-timeout"))
        .expect("README's --proxy-timeout row");
    assert!(
        row.contains("from the accept") && row.contains("about 1 s"),
        "{row}"
    );
}

/// The module names `src/lib.rs` declares (`mod x;` and `pub mod x;`).
fn declared_modules(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or(line.strip_prefix("mod "))?;
            Some(rest.strip_suffix(';')?.to_owned())
        })
        .collect()
}

#[test]
fn the_lib_layout_names_every_module_and_architecture_md_every_source_file() {
    let lib = read("src/lib.rs");
    let layout: String = lib
        .lines()
        .skip_while(|line| !line.starts_with("//! # Layout"))
        .take_while(|line| line.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let modules = declared_modules(&lib);
    assert!(modules.len() > 30, "read too few modules: {modules:?}");
    for module in &modules {
        assert!(
            layout.contains(&format!("[`{module}`]"))
                || layout.contains(&format!("`{module}` (internal")),
            "src/lib.rs's Layout does not name the module {module}"
        );
    }
    // Every source file of the library is where docs/architecture.md says a step or a
    // seam lives: named itself, or its folder is.
    let architecture = read("docs/architecture.md");
    let mut unnamed = Vec::new();
    let mut folders = vec![PathBuf::from("src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.to_string_lossy().into_owned();
            if path.is_dir() {
                folders.push(path);
            } else if name.ends_with(".rs")
                && !name.ends_with("tests.rs")
                && !name.ends_with("/mod.rs")
                && !name.ends_with("src/lib.rs")
                && !architecture.contains(&format!("`{name}`"))
                && !path
                    .parent()
                    .is_some_and(|dir| architecture.contains(&format!("`{}/`", dir.display())))
            {
                unnamed.push(name);
            }
        }
    }
    unnamed.sort();
    assert!(
        unnamed.is_empty(),
        "docs/architecture.md does not say what these files hold: {unnamed:?}"
    );
}
