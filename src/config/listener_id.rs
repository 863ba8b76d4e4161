//! Which listener a running socket belongs to, across reloads and upgrades: by its
//! `name` where it has one, else by the hosts and port its table gives (and, for
//! port 0, by its place among the port-0 listeners of the same hosts). Never by the
//! table's position in the file: reordering or removing a table must never hand one
//! port's policy to another.

use std::net::IpAddr;

use crate::parse::unbracket;

/// How the socket of a port-0 listener is named in `LISTEN_FDNAMES`: this, then its
/// [`ListenerId::nth`] (no table names its port, picked when it was bound). Defined
/// beside the id it stands for, below the `LISTEN_FDS` protocol (`listen_fds.rs`),
/// which names the sockets with it, so that a listener's `name` can be refused it.
pub const PORT_ZERO_FD_PREFIX: &str = "port0-";

/// What identifies a listener (a `[[listener]]` table, or the flags' one listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerId {
    /// Its `name`, if given: then the name alone identifies it.
    pub name: Option<String>,
    /// Its hosts as written (an address in its canonical form), sorted, without
    /// duplicates.
    pub hosts: Vec<String>,
    /// Its port as written (0: a free one picked when it is bound).
    pub port: u16,
    /// For port 0: its place among the port-0 listeners of the same hosts (0 for the
    /// first); 0 for any other port.
    pub nth: usize,
}

impl ListenerId {
    /// The id of one listener on `hosts` and `port`, named `name` (the first of its
    /// hosts and port: see [`ids`] for several).
    pub fn new(name: Option<String>, hosts: &[String], port: u16) -> Self {
        let mut hosts: Vec<String> = hosts.iter().map(|host| canonical_host(host)).collect();
        hosts.sort();
        hosts.dedup();
        ListenerId {
            name,
            hosts,
            port,
            nth: 0,
        }
    }

    /// Whether `other` is the same listener: the same name where either has one, else
    /// the same hosts and port (and place, for port 0).
    pub fn matches(&self, other: &ListenerId) -> bool {
        match (&self.name, &other.name) {
            (None, None) => {
                self.hosts == other.hosts && self.port == other.port && self.nth == other.nth
            }
            (mine, theirs) => mine == theirs,
        }
    }

    /// How a log line names it: `"ssh"`, `127.0.0.1:22`, `127.0.0.1,::1:0 (2nd)`.
    pub fn describe(&self) -> String {
        if let Some(name) = &self.name {
            return format!("named {name:?}");
        }
        let hosts = self
            .hosts
            .iter()
            .map(|host| match host.parse::<IpAddr>() {
                Ok(IpAddr::V6(_)) => format!("[{host}]"),
                _ => host.clone(),
            })
            .collect::<Vec<_>>()
            .join(",");
        match (self.port, self.nth) {
            (0, 0) => format!("on {hosts}:0"),
            (0, nth) => format!("on {hosts}:0 (port-0 listener {} of those hosts)", nth + 1),
            (port, _) => format!("on {hosts}:{port}"),
        }
    }
}

/// The ids of listeners given as `(name, hosts, port)`, in order: the unnamed port-0
/// ones numbered among those with the same hosts (a named one is told by its name).
pub fn ids<'a>(
    listeners: impl IntoIterator<Item = (Option<String>, &'a [String], u16)>,
) -> Vec<ListenerId> {
    let mut ids: Vec<ListenerId> = Vec::new();
    for (name, hosts, port) in listeners {
        let mut id = ListenerId::new(name, hosts, port);
        if port == 0 && id.name.is_none() {
            id.nth = ids
                .iter()
                .filter(|earlier| {
                    earlier.name.is_none() && earlier.port == 0 && earlier.hosts == id.hosts
                })
                .count();
        }
        ids.push(id);
    }
    ids
}

/// For each running listener (by its id, in `running`), the place in `tables` of the
/// table that is the same listener, or `None` where its table is gone. Where each side
/// has one listener and neither is named, they are the one listener (its host or port
/// may change only at a restart, and no other port's policy exists to confuse).
///
/// # Errors
/// A phrase naming a running listener that two tables are.
pub fn match_tables(
    running: &[ListenerId],
    tables: &[ListenerId],
) -> Result<Vec<Option<usize>>, String> {
    if let ([only], [table]) = (running, tables) {
        if only.name.is_none() && table.name.is_none() {
            return Ok(vec![Some(0)]);
        }
    }
    running
        .iter()
        .map(|id| {
            let mut same = (0..tables.len()).filter(|&index| tables[index].matches(id));
            let first = same.next();
            match same.next() {
                Some(_) => Err(format!(
                    "two [[listener]] tables are the running listener {} (give each its own name, or host and port)",
                    id.describe()
                )),
                None => Ok(first),
            }
        })
        .collect()
}

/// A host as an id holds it: an address in its canonical form (`[::0]` and `::` are
/// one host), a name as written.
fn canonical_host(host: &str) -> String {
    let host = unbracket(host);
    host.parse::<IpAddr>()
        .map_or_else(|_| host.to_owned(), |addr| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: Option<&str>, hosts: &[&str], port: u16) -> ListenerId {
        let hosts: Vec<String> = hosts.iter().map(|host| host.to_string()).collect();
        ListenerId::new(name.map(str::to_owned), &hosts, port)
    }

    #[test]
    fn hosts_and_port_identify_a_listener_whatever_their_spelling_and_order() {
        assert!(id(None, &["::1", "127.0.0.1"], 22).matches(&id(
            None,
            &["127.0.0.1", "[::1]"],
            22
        )));
        assert!(!id(None, &["127.0.0.1"], 22).matches(&id(None, &["127.0.0.1"], 23)));
        assert!(!id(None, &["127.0.0.1"], 22).matches(&id(None, &["127.0.0.2"], 22)));
    }

    #[test]
    fn a_name_alone_identifies_a_named_listener() {
        assert!(id(Some("ssh"), &["127.0.0.1"], 22).matches(&id(Some("ssh"), &["::"], 2222)));
        assert!(!id(Some("ssh"), &["127.0.0.1"], 22).matches(&id(None, &["127.0.0.1"], 22)));
        assert!(!id(Some("ssh"), &["127.0.0.1"], 22).matches(&id(
            Some("smtp"),
            &["127.0.0.1"],
            22
        )));
    }

    #[test]
    fn tables_are_matched_by_id_whatever_their_order_and_one_listener_is_always_itself() {
        let a = id(None, &["127.0.0.1"], 22);
        let b = id(None, &["127.0.0.1"], 25);
        let c = id(Some("c"), &["127.0.0.1"], 0);
        let running = [a.clone(), b.clone(), c.clone()];
        let matched = match_tables(&running, &[c.clone(), a.clone()]).unwrap();
        assert_eq!(matched, [Some(1), None, Some(0)]);
        let (a, b, c) = ([a], [b], [c]);
        // The one unnamed listener is itself, whatever its port now.
        assert_eq!(match_tables(&a, &b).unwrap(), [Some(0)]);
        assert_eq!(match_tables(&a, &c).unwrap(), [None]);
        assert!(match_tables(&a, &[a[0].clone(), a[0].clone()]).is_err());
    }

    #[test]
    fn port_zero_listeners_are_told_apart_by_their_place_among_those_of_their_hosts() {
        let one = ["127.0.0.1".to_owned()];
        let two = ["::1".to_owned()];
        let listed = ids([
            (None, &one[..], 0),
            (None, &two[..], 0),
            (None, &one[..], 8080),
            (Some("named".to_owned()), &one[..], 0),
            (None, &one[..], 0),
        ]);
        let places: Vec<usize> = listed.iter().map(|id| id.nth).collect();
        assert_eq!(places, [0, 0, 0, 0, 1]);
        assert!(!listed[0].matches(&listed[4]));
    }
}
