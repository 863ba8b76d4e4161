//! `--geoip-db`: where trapped clients come from. A MaxMind DB file (GeoLite2-Country
//! or -City, DB-IP's country or city lite database) read whole at start and at each
//! reload, shared by the workers ([`GeoIp`], in an `Arc` in the config); one lookup
//! when a client is trapped, never on the greeting path; and the trap counters by
//! country that `/metrics` reads ([`TrapsByCountry`]).
//!
//! The file is read into memory rather than mapped: a database rewritten in place
//! under a mapping would crash the server (SIGBUS) at its next lookup, while one read
//! whole is checked like the other files (refused if it changed while it was read)
//! and needs no `unsafe`. Its cost is the file's size once per process (GeoLite2
//! Country: about 9 MB, City: about 60 MB).

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use maxminddb::{MaxMindDbError, PathElement, Reader};

use crate::error::Failure;
use crate::files::{not_regular, open_regular, read_unchanged, OpenFailure};

mod countries;

pub(crate) use countries::Country;

/// How many records with data the check at load reads for a country: a country or
/// city database has one in every record, another kind (ASN, ISP, connection type)
/// in none.
const PROBED_RECORDS: usize = 64;

/// The largest database read: a country or city one is far smaller (GeoLite2-City
/// about 60 MB, DB-IP's city lite about 130 MB), and one is read whole into memory.
const MAX_DATABASE_BYTES: u64 = 1 << 30;

/// The path of a record's country code.
const ISO_CODE: [PathElement<'static>; 2] =
    [PathElement::Key("country"), PathElement::Key("iso_code")];

/// A country database, read and checked.
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("database_type", &self.database_type())
            .finish_non_exhaustive()
    }
}

impl GeoIp {
    /// Reads the MaxMind DB file at `path` whole and checks it: a regular file that
    /// did not change while it was read, a valid database, one whose records hold a
    /// country.
    ///
    /// # Errors
    /// A [`Failure`] naming the file, what is wrong, and how to fix it.
    pub fn open(path: &Path) -> Result<GeoIp, Failure> {
        let fail = |err: io::Error, hint| {
            Failure::new(
                format!("cannot use geoip-db file {}", path.display()),
                err,
                Some(hint),
            )
        };
        let rename_hint = "write the new database to another file in the same directory, then rename it over this one";
        let (mut file, before) = match open_regular(path) {
            Ok(opened) => opened,
            Err(OpenFailure::Io(err)) => {
                return Err(fail(err, "check the path and its permissions"))
            }
            Err(OpenFailure::NotRegular) => {
                return Err(fail(not_regular(), "give a MaxMind DB (.mmdb) file"))
            }
        };
        if before.len() > MAX_DATABASE_BYTES {
            let err = io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "it is {} bytes, over the 1 GiB a country or city database takes",
                    before.len()
                ),
            );
            return Err(fail(
                err,
                "give a GeoLite2-Country, GeoLite2-City or DB-IP country .mmdb file",
            ));
        }
        let bytes = read_unchanged(&mut file, &before).map_err(|err| fail(err, rename_hint))?;
        let invalid = |err: MaxMindDbError| {
            fail(
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not a valid MaxMind DB file: {err}"),
                ),
                "give a GeoLite2-Country, GeoLite2-City or DB-IP country .mmdb file, whole",
            )
        };
        // The metadata and the tree's layout are checked here; the records are not
        // all walked (`verify` takes seconds on a City database, and is stricter than
        // the files in use need): one that fails to decode at a lookup is unknown.
        let reader = Reader::from_source(bytes).map_err(invalid)?;
        let geoip = GeoIp { reader };
        if !geoip.holds_countries() {
            let err = io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "its records hold no country (database type {:?})",
                    geoip.database_type()
                ),
            );
            return Err(fail(
                err,
                "give a country or city database: GeoLite2-Country, GeoLite2-City, DB-IP's dbip-country-lite",
            ));
        }
        Ok(geoip)
    }

    /// The database's type, as its metadata names it (`GeoLite2-Country`).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Whether its records are country records: decided by the records themselves
    /// (the first [`PROBED_RECORDS`] with data, one with a `country.iso_code` is
    /// enough), not by the type's name, which each vendor spells its own way.
    fn holds_countries(&self) -> bool {
        let Ok(networks) = self.reader.networks(Default::default()) else {
            return false;
        };
        networks
            .filter_map(Result::ok)
            .filter(|found| found.has_data())
            .take(PROBED_RECORDS)
            .any(|found| matches!(found.decode_path::<&str>(&ISO_CODE), Ok(Some(_))))
    }

    /// The country of `ip` (an IPv4-mapped IPv6 address as its IPv4 address):
    /// unknown where the database has no record or no country.
    pub(crate) fn country(&self, ip: IpAddr) -> Country {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match self.reader.lookup(ip) {
            Ok(found) => match found.decode_path::<&str>(&ISO_CODE) {
                Ok(Some(code)) => Country::from_code(code),
                _ => Country::UNKNOWN,
            },
            // An IPv6 address in an IPv4 database.
            Err(_) => Country::UNKNOWN,
        }
    }
}

/// One worker's trap counters by country, which its loop adds to and `/metrics`
/// reads (relaxed atomics: one writer, and a scrape that may be a round behind).
/// A fixed array, one entry per [`Country`]: nothing is allocated per trap.
#[derive(Debug)]
pub struct TrapsByCountry {
    cells: Box<[CountryCell]>,
}

/// One country's trap counters.
#[derive(Debug, Default)]
struct CountryCell {
    /// Trapped now.
    now: AtomicU64,
    /// Trapped since the start.
    trapped: AtomicU64,
    /// Bytes dripped.
    dripped: AtomicU64,
    /// Milliseconds spent trapped (an interval counted at each drip).
    trapped_ms: AtomicU64,
    /// Whether a client of it was ever trapped here (or handed over trapped): its
    /// series are shown from then on.
    seen: AtomicBool,
}

/// One country's trap figures, as `/metrics` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountryFigures {
    /// Trapped now.
    pub now: u64,
    /// Trapped since the start.
    pub trapped: u64,
    /// Bytes dripped.
    pub dripped: u64,
    /// Milliseconds spent trapped.
    pub trapped_ms: u64,
    /// Whether a client of it was ever trapped (or handed over trapped).
    pub seen: bool,
}

impl CountryFigures {
    /// Adds `other`'s figures to these (seen if either was).
    pub fn add(&mut self, other: &CountryFigures) {
        self.now += other.now;
        self.trapped += other.trapped;
        self.dripped += other.dripped;
        self.trapped_ms += other.trapped_ms;
        self.seen |= other.seen;
    }
}

impl Default for TrapsByCountry {
    fn default() -> Self {
        TrapsByCountry {
            cells: (0..Country::COUNT)
                .map(|_| CountryCell::default())
                .collect(),
        }
    }
}

impl TrapsByCountry {
    fn cell(&self, country: Country) -> &CountryCell {
        &self.cells[country.index()]
    }

    /// A client of `country` trapped, sent `lead` bytes at once.
    pub(crate) fn trapped(&self, country: Country, lead: u64) {
        let cell = self.cell(country);
        cell.now.fetch_add(1, Ordering::Relaxed);
        cell.trapped.fetch_add(1, Ordering::Relaxed);
        cell.seen.store(true, Ordering::Relaxed);
        cell.dripped.fetch_add(lead, Ordering::Relaxed);
    }

    /// A drip to a client of `country`: `bytes` sent, `interval_ms` more trapped.
    pub(crate) fn dripped(&self, country: Country, bytes: u64, interval_ms: u64) {
        let cell = self.cell(country);
        cell.dripped.fetch_add(bytes, Ordering::Relaxed);
        cell.trapped_ms.fetch_add(interval_ms, Ordering::Relaxed);
    }

    /// A client of `country` trapped by the process that upgraded to this one, handed
    /// over: trapped now here, not trapped anew.
    pub(crate) fn adopted(&self, country: Country) {
        let cell = self.cell(country);
        cell.now.fetch_add(1, Ordering::Relaxed);
        cell.seen.store(true, Ordering::Relaxed);
    }

    /// A trapped client of `country` is trapped no more.
    pub(crate) fn released(&self, country: Country) {
        self.cell(country).now.fetch_sub(1, Ordering::Relaxed);
    }

    /// Adds these figures to `sum` (one entry per [`Country`] index).
    pub fn add_to(&self, sum: &mut [CountryFigures]) {
        for (cell, sum) in self.cells.iter().zip(sum) {
            sum.add(&CountryFigures {
                now: cell.now.load(Ordering::Relaxed),
                trapped: cell.trapped.load(Ordering::Relaxed),
                dripped: cell.dripped.load(Ordering::Relaxed),
                trapped_ms: cell.trapped_ms.load(Ordering::Relaxed),
                seen: cell.seen.load(Ordering::Relaxed),
            });
        }
    }
}

/// The label `/metrics` gives the country at index `index` of a per-country array
/// (`unknown` without a database, as where it has none): the label set is the same
/// with and without `--geoip-db`.
pub fn country_label(index: usize) -> &'static str {
    Country::from_index(index).as_str()
}

/// How many countries there are: the length of a per-country array.
pub const COUNTRIES: usize = Country::COUNT;

#[cfg(test)]
mod tests;
