//! An upgrade where its shell is missing (a `FROM scratch` image has no `/bin/sh`):
//! refused with one warning, and the server serves on. In-process, with the shell
//! pointed at a path that does not exist, so no container is needed; a test binary of
//! its own, since it installs the process's one logger to read the warning.

mod util;

use std::path::PathBuf;
use std::sync::Mutex;

use greeter::config::settings::Environment;
use greeter::config::{ServerCli, Settings};
use greeter::supervisor::{Request, Supervisor};
use greeter::upgrade::UpgradeCommand;
use greeter::{fdlimit, startup};
use util::*;

/// Every log line, as `LEVEL message`.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            LINES.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

fn lines_containing(needle: &str) -> Vec<String> {
    let lines = LINES.lock().unwrap();
    lines
        .iter()
        .filter(|line| line.contains(needle))
        .cloned()
        .collect()
}

#[test]
fn an_upgrade_without_a_shell_is_refused_and_the_server_serves_on() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    use clap::CommandFactory;
    let matches = ServerCli::command()
        .try_get_matches_from(["greeter-server", "--port", "0"])
        .unwrap();
    let settings = Settings::load(&matches, &Environment::default()).unwrap();
    let server = startup::prepare(settings, fdlimit::raise_to_hard_limit()).unwrap();
    let mut supervisor = Supervisor::new().unwrap();
    supervisor.enable_upgrades(UpgradeCommand {
        exe: PathBuf::from(binary("greeter-server")),
        args: vec!["--port".into(), "0".into()],
        shell: PathBuf::from("/nonexistent/bin/sh"),
    });
    let requests = supervisor.requests();
    let (serving, started) = std::sync::mpsc::channel();
    let running = std::thread::spawn(move || {
        supervisor.run(server, |serving_now| {
            let _ = serving.send(serving_now.addrs[0]);
        })
    });
    let addr = started.recv_timeout(STEP_TIMEOUT).unwrap();

    requests.send(Request::Upgrade);
    let refused = "upgrade: refused: /nonexistent/bin/sh is missing (in a container, replace the container instead)";
    wait_until("the refusal", || !lines_containing(refused).is_empty());
    assert_eq!(lines_containing(refused), vec![format!("WARN {refused}")]);
    // Nothing was started, and this process still greets.
    assert!(lines_containing("upgrade: started").is_empty());
    let mut peer = connect(addr);
    assert_same_bytes(&read_to_eof(&mut peer).unwrap(), DEFAULT_GREETING);

    requests.send(Request::Drain);
    let totals = running.join().unwrap().unwrap();
    assert_eq!(totals.greeted(), 1, "{totals}");
}
