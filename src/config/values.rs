//! The values only the server's settings take, parsed and put in one form: a path
//! made absolute, an integer in decimal (what `--check-config` prints and the server
//! runs with), the `--metrics` address, a listener's name. The values the client's
//! flags take too are [`crate::parse`]'s.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Component, Path, PathBuf};

use crate::config::keys::{FileType, Key};
use crate::config::listener_id::PORT_ZERO_FD_PREFIX;
use crate::error::{bare_or_quoted, quote};
use crate::parse::unbracket;

/// A checked value of `key` in the one form the server runs with and `--check-config`
/// prints, wherever it was written: an integer in decimal (`0100`, `+100`: `100`), a
/// path absolute and normalised (relative to `relative_to`, itself relative to the
/// current directory; see [`normalise_path`]); anything else as it is.
///
/// # Errors
/// A phrase saying why a path cannot be used: it is empty, the current directory
/// cannot be read, or the absolute path is not UTF-8.
pub fn canonical_value(key: &Key, text: &str, relative_to: &Path) -> Result<String, String> {
    let all_digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let integer =
        key.file_type == FileType::Integer || (key.file_type == FileType::Size && all_digits);
    if integer {
        // Checked by the flag's parser already, so it parses; kept as it is if not.
        return Ok(text
            .parse::<i128>()
            .map_or_else(|_| text.to_owned(), |n| n.to_string()));
    }
    if !key.is_path() {
        return Ok(text.to_owned());
    }
    if text.is_empty() {
        return Err("the path is empty (give a file's path)".to_owned());
    }
    let mut joined = relative_to.join(text);
    if joined.is_relative() {
        let here = std::env::current_dir().map_err(|err| {
            format!(
                "cannot make {text} absolute: cannot read the current directory: {} (give an absolute path)",
                crate::error::describe_io_error(&err)
            )
        })?;
        joined = here.join(joined);
    }
    normalise_path(&joined)
        .into_os_string()
        .into_string()
        .map_err(|_| format!("the absolute path of {text} is not UTF-8 (give an absolute path)"))
}

/// `path` normalised lexically, as the file need not exist: `.` and repeated or
/// trailing `/` dropped, each `..` taking off the component before it (never above
/// the root). Symbolic links are not followed, so `link/..` is the directory that holds
/// `link`, here and when the server opens the path (it opens this one).
pub fn normalise_path(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            Component::Prefix(_) | Component::RootDir | Component::Normal(_) => {
                normal.push(component);
            }
        }
    }
    normal
}

/// Parses `--metrics`: an address with its port (`127.0.0.1:9464`, `[::1]:9464`), or a
/// host name with one (`localhost:9464`: the first address it resolves to).
///
/// # Errors
/// A message fit for clap's usage error saying what is missing or what did not
/// resolve.
pub fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if unbracket(text).parse::<IpAddr>().is_ok() {
        return Err(format!(
            "{} has no port: write ADDRESS:PORT, e.g. 127.0.0.1:9464",
            bare_or_quoted(text)
        ));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "{} has no port: write HOST:PORT, e.g. 127.0.0.1:9464 or localhost:9464",
            bare_or_quoted(text)
        ));
    };
    let port: u16 = port.parse().map_err(|_| {
        format!(
            "{} is not a port (write HOST:PORT, e.g. localhost:9464)",
            quote(port.as_bytes())
        )
    })?;
    let resolved = (unbracket(host), port).to_socket_addrs().map_err(|err| {
        format!(
            "cannot resolve {}: {err} (give an address, e.g. 127.0.0.1:{port})",
            bare_or_quoted(host)
        )
    })?;
    resolved.into_iter().next().ok_or_else(|| {
        format!(
            "{} has no address (give one, e.g. 127.0.0.1:{port})",
            bare_or_quoted(host)
        )
    })
}

/// The most bytes a listener's or rate group's name may have.
pub const MAX_NAME_BYTES: usize = 64;

/// Parses a listener's or rate group's name: what a `LISTEN_FDNAMES` entry may hold.
///
/// # Errors
/// A phrase fit for clap's usage error saying what is wrong.
pub fn parse_name(text: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    // The names an upgrade gives other sockets (the LISTEN_FDS protocol's fd_name).
    let reserved = matches!(text, "listener" | "metrics" | "upgrade-report")
        || text.starts_with(PORT_ZERO_FD_PREFIX);
    if reserved {
        return Err(format!(
            "{text:?} is a name greeter gives sockets of its own (choose another)"
        ));
    }
    if text.is_empty() || text.len() > MAX_NAME_BYTES || !text.chars().all(allowed) {
        // Quoted (escaped) and cut: the text may be anything a user typed.
        let shown: String = text.chars().take(MAX_NAME_BYTES + 1).collect();
        return Err(format!(
            "{shown:?} is not a name (1 to {MAX_NAME_BYTES} letters, digits, '.', '_' or '-')"
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys;

    #[test]
    fn values_take_one_form_wherever_they_are_written() {
        let key = |name| keys::find(name).unwrap();
        let here = Path::new("/etc/greeter");
        let canonical = |name, text| canonical_value(key(name), text, here);
        assert_eq!(canonical("max-connections", "0100"), Ok("100".into()));
        assert_eq!(canonical("rate-prefix-v6", "+048"), Ok("48".into()));
        assert_eq!(canonical("send-buffer", "065536"), Ok("65536".into()));
        assert_eq!(canonical("send-buffer", "064KiB"), Ok("064KiB".into()));
        assert_eq!(canonical("write-timeout", "030s"), Ok("030s".into()));
        assert_eq!(
            canonical("deny-file", "./lists//../deny.list"),
            Ok("/etc/greeter/deny.list".into())
        );
        assert_eq!(
            canonical("pid-file", "/run/./x/../../../greeter.pid"),
            Ok("/greeter.pid".into())
        );
        assert!(canonical("message-file", "").unwrap_err().contains("empty"));
        let relative = canonical_value(key("allow-file"), "a/./b", Path::new("")).unwrap();
        assert_eq!(
            Path::new(&relative),
            std::env::current_dir().unwrap().join("a/b")
        );
    }

    #[test]
    fn metrics_takes_an_address_or_a_name_with_a_port() {
        assert_eq!(
            parse_metrics_addr("127.0.0.1:9464"),
            Ok("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(
            parse_metrics_addr("[::1]:9464"),
            Ok("[::1]:9464".parse().unwrap())
        );
        let named = parse_metrics_addr("localhost:9464").unwrap();
        assert!(named.ip().is_loopback() && named.port() == 9464, "{named}");
        for (text, says) in [
            ("127.0.0.1", "127.0.0.1 has no port: write ADDRESS:PORT"),
            ("::1", "::1 has no port"),
            ("localhost", "localhost has no port: write HOST:PORT"),
            ("localhost:http", "\"http\" is not a port"),
        ] {
            let err = parse_metrics_addr(text).unwrap_err();
            assert!(err.starts_with(says), "{text}: {err}");
        }
    }
}
