//! Who is greeted: the `--allow` and `--deny` lists (and their files), matched by
//! longest prefix. The most specific entry that contains the client's address
//! decides; an allow and a deny entry of the same block: deny. An address no entry
//! contains is allowed if there are no allow entries, and denied otherwise. An
//! IPv4-mapped IPv6 client (`::ffff:192.0.2.1`) is matched as its IPv4 address.
//!
//! The table is built once (at start-up, or on the reload thread) into a prefix trie
//! (`prefix-trie`: about 50 bytes an entry, a lookup in about 100 ns at 500,000
//! entries), and the loops share it through an `Arc`; looking an address up takes no
//! lock and allocates nothing.

use std::fs::{File, Metadata};
use std::io::{self, BufRead, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use crate::error::{quote, quote_start, Failure};
use crate::files::{check_unchanged, not_regular, open_regular, OpenFailure};

/// The longest line a list file may have, without its newline: an entry is at most
/// 43 bytes (an IPv6 CIDR block) and a comment a sentence. A longer line is not a list
/// (a one-line JSON blocklist, a binary file given by mistake), and reading it whole
/// would hold all of it.
pub const MAX_LINE_BYTES: usize = 4096;

/// A UTF-8 byte-order mark, which some Windows editors write at the start of a file.
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// What an entry says of the addresses it contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Allow,
    Deny,
}

/// The `--allow` and `--deny` entries of one listener, ready to be matched.
#[derive(Debug, Default)]
pub struct AccessList {
    v4: PrefixMap<Ipv4Net, Rule>,
    v6: PrefixMap<Ipv6Net, Rule>,
    /// Whether any entry allows: then an address no entry contains is denied.
    allow_listed: bool,
    /// The list files that gave it entries: at a reload, one of them found empty is a
    /// file caught while it is rewritten (see [`AccessList::reload`]).
    files_with_entries: Vec<PathBuf>,
}

/// Where a listener's entries come from.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// `--allow` entries.
    pub allow: &'a [String],
    /// `--deny` entries.
    pub deny: &'a [String],
    /// `--allow-file` files.
    pub allow_files: &'a [PathBuf],
    /// `--deny-file` files.
    pub deny_files: &'a [PathBuf],
}

impl Sources<'_> {
    /// Whether there is no entry anywhere (then nobody is refused).
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
            && self.deny.is_empty()
            && self.allow_files.is_empty()
            && self.deny_files.is_empty()
    }
}

impl AccessList {
    /// Builds the list from its entries and files: allows first, so that a deny of
    /// the same block replaces the allow.
    ///
    /// # Errors
    /// A [`Failure`] naming the file and line of an entry that is not an address or
    /// a CIDR block, or the file that cannot be read.
    pub fn load(sources: Sources<'_>) -> Result<AccessList, Failure> {
        AccessList::reload(sources, None)
    }

    /// As [`AccessList::load`], replacing `running`: a list file that is empty (0
    /// bytes) now but gave `running` entries is refused, since `cp`, `cat >` and most
    /// editors empty a file before they write it, and a reload in that moment would
    /// drop every entry. (A list emptied on purpose keeps a comment line.)
    ///
    /// # Errors
    /// As [`AccessList::load`], and a [`Failure`] naming such a file.
    pub fn reload(
        sources: Sources<'_>,
        running: Option<&AccessList>,
    ) -> Result<AccessList, Failure> {
        let mut list = AccessList::default();
        for (rule, entries, files, kind) in [
            (Rule::Allow, sources.allow, sources.allow_files, "allow"),
            (Rule::Deny, sources.deny, sources.deny_files, "deny"),
        ] {
            for entry in entries {
                // Checked by the flag's parser already.
                let net = parse_entry(entry).map_err(|err| {
                    Failure::new(
                        format!("cannot use --{kind} {entry}"),
                        io::Error::new(io::ErrorKind::InvalidInput, err),
                        None,
                    )
                })?;
                list.insert(net, rule);
            }
            for path in files {
                let had_entries = running.is_some_and(|running| {
                    running.files_with_entries.iter().any(|had| had == path)
                });
                list.load_file(path, rule, kind, had_entries)?;
            }
        }
        Ok(list)
    }

    fn insert(&mut self, net: IpNet, rule: Rule) {
        if rule == Rule::Allow {
            self.allow_listed = true;
        }
        match net {
            IpNet::V4(net) => {
                self.v4.insert(net, rule);
            }
            IpNet::V6(net) => {
                self.v6.insert(net, rule);
            }
        }
    }

    /// Adds every entry of the file at `path` (see [`AccessList::read_list`]); one
    /// that `had_entries` at the last load must not be empty.
    fn load_file(
        &mut self,
        path: &Path,
        rule: Rule,
        kind: &str,
        had_entries: bool,
    ) -> Result<(), Failure> {
        let fail = |err: io::Error, hint| {
            Failure::new(
                format!("cannot use {kind} file {}", path.display()),
                err,
                Some(hint),
            )
        };
        let (file, before) = match open_regular(path) {
            Ok(opened) => opened,
            Err(OpenFailure::Io(err)) => {
                return Err(fail(err, "check the path and its permissions"))
            }
            Err(OpenFailure::NotRegular) => {
                let hint = "give a file with one address or CIDR block a line";
                return Err(fail(not_regular(), hint));
            }
        };
        if had_entries && before.len() == 0 {
            let err = io::Error::new(
                io::ErrorKind::InvalidData,
                "it is empty, while the running list has entries from it (a file caught while it is rewritten?)",
            );
            return Err(fail(
                err,
                "write the new list to another file in the same directory, then rename it over this one; to empty a list, leave a comment line in it",
            ));
        }
        let before_entries = self.len();
        self.read_list(&file, &before, rule)
            .map_err(|(err, hint)| fail(err, hint))?;
        if self.len() > before_entries {
            self.files_with_entries.push(path.to_owned());
        }
        Ok(())
    }

    /// Adds every entry of `file`, whose metadata at open was `before`: one a line,
    /// `#` starts a comment, blank lines are skipped, a UTF-8 byte-order mark at the
    /// start is skipped (as the TOML config's is). Read as a stream: reading holds
    /// the table and one line of at most [`MAX_LINE_BYTES`], whatever the file
    /// holds. A file that changed while it was read is refused, as a greeting file is.
    ///
    /// On error: what is wrong (with the line number for a bad line), and the hint.
    fn read_list(
        &mut self,
        file: &File,
        before: &Metadata,
        rule: Rule,
    ) -> Result<(), (io::Error, &'static str)> {
        let mut reader = io::BufReader::new(file);
        // One buffer for every line; a line longer than the limit is never held whole.
        let mut line = Vec::with_capacity(MAX_LINE_BYTES + 1);
        let mut read: u64 = 0;
        let mut number = 0usize;
        loop {
            line.clear();
            let len = (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|err| (err, "check that the file can be read"))?;
            if len == 0 {
                break;
            }
            read += len as u64;
            number += 1;
            let bad_line = |cause: String| {
                let err = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("line {number}: {cause}"),
                );
                (err, "one address or CIDR block a line, e.g. 192.0.2.0/24 or 2001:db8::/32; # starts a comment")
            };
            let mut text = match line.strip_suffix(b"\n") {
                Some(text) => text,
                None if len > MAX_LINE_BYTES => {
                    return Err(bad_line(format!(
                        "longer than {MAX_LINE_BYTES} bytes, starting {}",
                        quote_start(&line).0
                    )))
                }
                None => &line[..],
            };
            if number == 1 {
                text = text.strip_prefix(BYTE_ORDER_MARK).unwrap_or(text);
            }
            let text = std::str::from_utf8(text).map_err(|err| {
                bad_line(format!(
                    "not UTF-8 (at byte {} of the line): {}",
                    err.valid_up_to() + 1,
                    quote(text)
                ))
            })?;
            let entry = text.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            let net = parse_entry(entry).map_err(bad_line)?;
            self.insert(net, rule);
        }
        check_unchanged(file, before, read).map_err(|err| {
            let hint = "write the new list to another file in the same directory, then rename it over this one";
            (err, hint)
        })
    }

    /// How many entries it holds (an allow and a deny of one block count once).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a client at `ip` is greeted.
    #[inline]
    pub fn admits(&self, ip: IpAddr) -> bool {
        match self.rule(ip) {
            Some(rule) => rule == Rule::Allow,
            None => !self.allow_listed,
        }
    }

    /// Whether an allow entry is what decides for `ip` (the most specific entry that
    /// contains it allows): such a client is never trapped.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.rule(ip) == Some(Rule::Allow)
    }

    /// The rule of the most specific entry that contains `ip`, if any.
    #[inline]
    fn rule(&self, ip: IpAddr) -> Option<Rule> {
        match canonical(ip) {
            IpAddr::V4(ip) => self.v4.get_lpm(&Ipv4Net::from(ip)).map(|(_, rule)| *rule),
            IpAddr::V6(ip) => self.v6.get_lpm(&Ipv6Net::from(ip)).map(|(_, rule)| *rule),
        }
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address; any other as it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses an entry: an address (a /32 or /128) or a CIDR block (`192.0.2.0/24`;
/// host bits are cleared, `192.0.2.7/24` is `192.0.2.0/24`). An IPv4-mapped IPv6
/// block of at least /96 is its IPv4 block.
///
/// # Errors
/// A phrase saying what the text is not.
pub fn parse_entry(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(format!(
                    "{} is not an address or a CIDR block (write e.g. 192.0.2.0/24, 2001:db8::/32 or 192.0.2.7)",
                    quote(text.as_bytes())
                ))
            }
        },
    };
    Ok(match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        net => net,
    })
}

/// [`parse_entry`] as a flag's value parser: the entry's text, checked.
///
/// # Errors
/// As [`parse_entry`].
pub fn parse_entry_flag(text: &str) -> Result<String, String> {
    parse_entry(text).map(|_| text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(allow: &[&str], deny: &[&str]) -> AccessList {
        let owned = |entries: &[&str]| {
            entries
                .iter()
                .map(|entry| (*entry).to_owned())
                .collect::<Vec<_>>()
        };
        let (allow, deny) = (owned(allow), owned(deny));
        AccessList::load(Sources {
            allow: &allow,
            deny: &deny,
            allow_files: &[],
            deny_files: &[],
        })
        .unwrap()
    }

    fn admits(list: &AccessList, ip: &str) -> bool {
        list.admits(ip.parse().unwrap())
    }

    #[test]
    fn the_most_specific_entry_decides() {
        let list = list(&["10.0.0.0/8", "10.1.2.0/24"], &["10.1.0.0/16", "10.1.2.3"]);
        assert!(admits(&list, "10.9.9.9"), "in the /8 only");
        assert!(
            !admits(&list, "10.1.9.9"),
            "the /16 deny is more specific than the /8"
        );
        assert!(
            admits(&list, "10.1.2.4"),
            "the /24 allow beats the /16 deny"
        );
        assert!(
            !admits(&list, "10.1.2.3"),
            "the /32 deny beats the /24 allow"
        );
        assert!(
            !admits(&list, "192.0.2.1"),
            "an allow list denies what it does not name"
        );
    }

    #[test]
    fn a_deny_list_alone_allows_the_rest_and_a_tie_denies() {
        let only_deny = list(&[], &["192.0.2.0/24"]);
        assert!(!admits(&only_deny, "192.0.2.200"));
        assert!(admits(&only_deny, "192.0.3.1"));
        assert!(admits(&only_deny, "2001:db8::1"));
        let tie = list(&["192.0.2.0/24"], &["192.0.2.0/24"]);
        assert!(
            !admits(&tie, "192.0.2.1"),
            "an allow and a deny of one block: deny"
        );
    }

    #[test]
    fn edges_of_the_address_space() {
        let everything = list(&[], &["0.0.0.0/0", "::/0"]);
        assert!(!admits(&everything, "0.0.0.0"));
        assert!(!admits(&everything, "255.255.255.255"));
        assert!(!admits(&everything, "::1"));
        let one = list(&["2001:db8::1/128", "192.0.2.1/32"], &[]);
        assert!(admits(&one, "2001:db8::1"));
        assert!(!admits(&one, "2001:db8::2"));
        assert!(admits(&one, "192.0.2.1"));
        assert!(!admits(&one, "192.0.2.0"));
    }

    #[test]
    fn ipv4_mapped_clients_and_entries_match_ipv4() {
        let list = list(&[], &["192.0.2.0/24", "::ffff:198.51.100.0/120"]);
        assert!(!admits(&list, "::ffff:192.0.2.9"), "a mapped client");
        assert!(!admits(&list, "198.51.100.7"), "a mapped entry");
        assert!(admits(&list, "::ffff:203.0.113.1"));
    }

    #[test]
    fn entries_parse_strictly_and_host_bits_are_cleared() {
        assert_eq!(
            parse_entry("192.0.2.7/24").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(
            parse_entry("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0",
            "::/129",
            "example.org",
            "10.0.0.0/8/8",
        ] {
            assert!(parse_entry(bad).is_err(), "{bad:?}");
        }
    }

    /// The list a deny file holding `bytes` makes, or the one-line error.
    fn deny_file(name: &str, bytes: &[u8]) -> Result<AccessList, String> {
        let path =
            std::env::temp_dir().join(format!("greeter-access-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let loaded = AccessList::load(Sources {
            allow: &[],
            deny: &[],
            allow_files: &[],
            deny_files: std::slice::from_ref(&path),
        });
        let _ = std::fs::remove_file(&path);
        loaded.map_err(|err| err.to_string().replace(&path.display().to_string(), "FILE"))
    }

    #[test]
    fn a_long_line_is_refused_quoting_its_start_only() {
        // A one-line JSON blocklist of 8 MiB: refused at its first 4 KiB.
        let mut json = b"192.0.2.1\n{\"deny\": [\"\x01".to_vec();
        json.resize(8 << 20, b'x');
        let err = deny_file("json", &json).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "cannot use deny file FILE: line 2: longer than {MAX_LINE_BYTES} bytes, starting \"{{\\\"deny\\\": [\\\"\\u{{1}}xxx"
            )),
            "{err}"
        );
        assert!(err.contains("xxx\"... (one address"), "{err}");
        assert!(err.len() < 400, "{} bytes: {err}", err.len());
        // At the limit, a line is read (and judged on what it says).
        let mut longest = vec![b' '; MAX_LINE_BYTES - 9];
        longest.extend_from_slice(b"192.0.2.1\n");
        let list = deny_file("longest", &longest).unwrap();
        assert!(!admits(&list, "192.0.2.1"));
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_a_bad_byte_is_named_by_its_line() {
        let list = deny_file("bom", b"\xEF\xBB\xBF192.0.2.1\n198.51.100.0/24\n").unwrap();
        assert!(!admits(&list, "192.0.2.1"));
        assert!(!admits(&list, "198.51.100.7"));
        let err = deny_file("binary", b"192.0.2.1\n# latin-1: \xe9\n").unwrap_err();
        assert_eq!(
            err,
            "cannot use deny file FILE: line 2: not UTF-8 (at byte 12 of the line): \"# latin-1: \\xe9\" \
             (one address or CIDR block a line, e.g. 192.0.2.0/24 or 2001:db8::/32; # starts a comment)"
        );
        // A mark anywhere but the start is no entry.
        assert!(deny_file("late-bom", b"192.0.2.1\n\xEF\xBB\xBF192.0.2.2\n").is_err());
    }

    #[test]
    fn a_list_that_changes_while_it_is_read_is_refused() {
        let path = std::env::temp_dir().join(format!("greeter-access-{}-grew", std::process::id()));
        std::fs::write(&path, b"192.0.2.1\n").unwrap();
        let file = File::open(&path).unwrap();
        let before = file.metadata().unwrap();
        // Rewritten in place after it was opened, as `cat >` does.
        std::fs::write(&path, b"192.0.2.1\n192.0.2.2\n").unwrap();
        let (err, hint) = AccessList::default()
            .read_list(&file, &before, Rule::Deny)
            .unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert_eq!(err.to_string(), "it grew while being read");
        assert!(hint.contains("rename"), "{hint}");
    }
}
