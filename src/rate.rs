//! `--max-rate-per-ip`: how often each source may connect (xinetd's `cps`, per
//! source). A source is a client address cut to `--rate-prefix-v4` or
//! `--rate-prefix-v6` bits, so that one IPv6 host, which usually owns a /64, is one
//! source.
//!
//! Each source's budget is a GCRA (the generic cell rate algorithm, a token bucket
//! kept as one timestamp): RATE connections spread evenly, with a burst of one
//! second's worth (at least one). The sources live in a bounded LRU map
//! (`schnellru`: one allocation for the whole table, none per entry) of at most
//! `--rate-table-size` entries, so that a flood of distinct sources costs a fixed
//! amount of memory; the least recently seen source is forgotten first (and starts
//! again with a full burst if it comes back).
//!
//! The table is shared by the workers of a listener, so that a source's rate is the
//! same whichever worker accepts it: it is cut into shards, each behind its own
//! mutex, held only for one map lookup. The greet delay's pass table (`pass.rs`)
//! keeps its sources the same way, in a `SourceMap` keyed by `source_key`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use schnellru::{ByLength, LruMap};

use crate::locking::lock;

/// Shards of the table: enough that several workers seldom wait for one another.
const SHARDS: usize = 16;

/// A rate: `count` connections every `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Connections allowed in each `per`.
    pub count: u32,
    /// The period: a second, a minute or an hour.
    pub per: Duration,
}

impl Rate {
    /// The even spacing of connections at this rate.
    fn interval(self) -> Duration {
        self.per / self.count
    }

    /// One second's worth of connections, at least one: how many may come at once.
    pub fn burst(self) -> u32 {
        let per_second = u64::from(self.count) * 1000 / (self.per.as_millis() as u64).max(1);
        per_second.clamp(1, u64::from(u32::MAX)) as u32
    }
}

/// Parses a rate: a count, `/`, and a unit (`s`, `m` or `h`): `20/s`, `600/m`.
///
/// # Errors
/// A phrase fit for clap's usage error saying what is wrong.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let usage = || {
        format!(
            "{} is not a rate (write it as 20/s, 600/m or 3600/h)",
            crate::error::quote(text.as_bytes())
        )
    };
    let (count, unit) = text.trim().split_once('/').ok_or_else(usage)?;
    let count: u32 = count.trim().parse().map_err(|_| usage())?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(usage()),
    };
    if count == 0 {
        return Err("a rate must allow at least one connection (e.g. 1/m)".to_owned());
    }
    if count > 1_000_000 {
        return Err("rates above 1000000 per period are not supported".to_owned());
    }
    Ok(Rate { count, per })
}

/// What a rate table is made of; a reload that keeps all of it keeps the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSettings {
    /// `--max-rate-per-ip`.
    pub rate: Rate,
    /// `--rate-prefix-v4`: IPv4 clients are grouped by this many leading bits.
    pub prefix_v4: u8,
    /// `--rate-prefix-v6`: IPv6 clients are grouped by this many leading bits.
    pub prefix_v6: u8,
    /// `--rate-table-size`: the most sources remembered at once.
    pub table_size: u32,
}

/// A source: its address cut to its prefix, as two halves (a `u128` would be aligned
/// to 16 bytes, and every entry padded to match).
pub(crate) type SourceKey = (u64, u64);

/// The source `ip` belongs to: its address cut to `prefix_v4` or `prefix_v6` bits, an
/// IPv4 one (or an IPv4-mapped IPv6 one) as its IPv4-mapped form.
pub(crate) fn source_key(ip: IpAddr, prefix_v4: u8, prefix_v6: u8) -> SourceKey {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let bits = match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & prefix_mask_u32(prefix_v4);
            u128::from(Ipv4Addr::from(bits).to_ipv6_mapped())
        }
        IpAddr::V6(v6) => u128::from(v6) & prefix_mask_u128(prefix_v6),
    };
    ((bits >> 64) as u64, bits as u64)
}

/// A value for each of at most `size` sources, the least recently seen forgotten
/// first: the rate table's and the greet delay's pass table's map. Shared by the
/// workers, so cut into shards, each behind its own mutex, held only for one lookup.
pub(crate) struct SourceMap<V> {
    shards: Box<[Mutex<LruMap<SourceKey, V, ByLength>>]>,
}

impl<V> SourceMap<V> {
    /// An empty map (it allocates as sources come, up to its bound).
    pub(crate) fn new(size: u32) -> Self {
        let per_shard = size.div_ceil(SHARDS as u32).max(1);
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(LruMap::new(ByLength::new(per_shard))))
            .collect();
        SourceMap { shards }
    }

    /// Runs `look` on the shard that holds `key`, locked.
    #[inline]
    pub(crate) fn with_shard<R>(
        &self,
        key: SourceKey,
        look: impl FnOnce(&mut LruMap<SourceKey, V, ByLength>) -> R,
    ) -> R {
        look(&mut lock(&self.shards[shard_of(key)]))
    }

    /// How many sources it remembers now.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// The bytes its shards have allocated.
    pub(crate) fn memory_usage(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(shard).memory_usage())
            .sum()
    }
}

/// Each source's budget, remembered for at most `table_size` sources.
pub struct RateTable {
    settings: RateSettings,
    /// The spacing of connections at the rate, in nanoseconds.
    interval_ns: u64,
    /// How far ahead of now a source's schedule may run: `(burst - 1) x interval`.
    tolerance_ns: u64,
    /// The epoch of the timestamps.
    epoch: Instant,
    /// Source key to its theoretical arrival time (GCRA's TAT), in nanoseconds since
    /// `epoch`: the time by which the source's last admitted connection is paid for.
    sources: SourceMap<u64>,
}

impl RateTable {
    /// An empty table (it allocates as sources come, up to its bound).
    pub fn new(settings: RateSettings) -> Self {
        let interval_ns = (settings.rate.interval().as_nanos() as u64).max(1);
        let tolerance_ns = interval_ns.saturating_mul(u64::from(settings.rate.burst() - 1));
        RateTable {
            settings,
            interval_ns,
            tolerance_ns,
            epoch: Instant::now(),
            sources: SourceMap::new(settings.table_size),
        }
    }

    /// What it was made of.
    pub fn settings(&self) -> &RateSettings {
        &self.settings
    }

    /// Whether a connection from `ip` at `now` is within its source's rate; if so it
    /// is counted. Either way the source becomes the most recently seen.
    pub fn admits(&self, ip: IpAddr, now: Instant) -> bool {
        let key = source_key(ip, self.settings.prefix_v4, self.settings.prefix_v6);
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.sources.with_shard(key, |shard| {
            // A source seen for the first time starts with its whole burst; with the
            // table full, the least recently seen source makes room.
            let Some(paid_until) = shard.get_or_insert(key, || now_ns) else {
                return true;
            };
            let scheduled = (*paid_until).max(now_ns);
            if scheduled - now_ns > self.tolerance_ns {
                return false;
            }
            *paid_until = scheduled + self.interval_ns;
            true
        })
    }

    /// How many sources it remembers now.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether it remembers no source.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes its maps have allocated.
    pub fn memory_usage(&self) -> usize {
        self.sources.memory_usage()
    }
}

impl std::fmt::Debug for RateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateTable")
            .field("settings", &self.settings)
            .field("sources", &self.len())
            .finish_non_exhaustive()
    }
}

/// Which shard holds `key`: its high bits mixed (IPv6 sources differ there, their
/// low 64 bits being cut away) with a multiplicative hash.
fn shard_of((high, low): SourceKey) -> usize {
    let folded = high ^ low;
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS
}

fn prefix_mask_u32(bits: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(bits.min(32)))
        .unwrap_or(0)
}

fn prefix_mask_u128(bits: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(bits.min(128)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rate: &str, table_size: u32) -> RateTable {
        RateTable::new(RateSettings {
            rate: parse_rate(rate).unwrap(),
            prefix_v4: 32,
            prefix_v6: 64,
            table_size,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn rates_parse_with_their_unit_and_bad_ones_say_how_to_write_them() {
        let rate = parse_rate("600/m").unwrap();
        assert_eq!((rate.count, rate.per), (600, Duration::from_secs(60)));
        assert_eq!(rate.burst(), 10);
        assert_eq!(parse_rate("20/s").unwrap().burst(), 20);
        assert_eq!(parse_rate("1/h").unwrap().burst(), 1, "at least one");
        for bad in ["20", "20/d", "x/s", "-1/s", "0/s", "20/s/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert!(parse_rate("fast").unwrap_err().contains("20/s"));
    }

    #[test]
    fn a_source_gets_its_burst_then_one_connection_per_interval() {
        let table = table("10/s", 100);
        let (start, a, b) = (Instant::now(), ip("192.0.2.1"), ip("192.0.2.2"));
        let admitted = (0..15).filter(|_| table.admits(a, start)).count();
        assert_eq!(admitted, 10, "one second's worth at once");
        assert!(table.admits(b, start), "another source is unaffected");
        assert!(!table.admits(a, start + Duration::from_millis(50)));
        assert!(table.admits(a, start + Duration::from_millis(100)));
        assert!(!table.admits(a, start + Duration::from_millis(150)));
        // Idle long enough, the whole burst is back (and no more).
        let later = start + Duration::from_secs(5);
        assert_eq!((0..15).filter(|_| table.admits(a, later)).count(), 10);
    }

    #[test]
    fn ipv6_sources_are_grouped_by_prefix_and_mapped_ipv4_is_ipv4() {
        let table = table("2/s", 100);
        let now = Instant::now();
        assert!(table.admits(ip("2001:db8:1:2::1"), now));
        assert!(table.admits(ip("2001:db8:1:2:ffff::9"), now));
        assert!(!table.admits(ip("2001:db8:1:2::77"), now), "same /64");
        assert!(table.admits(ip("2001:db8:1:3::1"), now), "another /64");
        assert!(table.admits(ip("192.0.2.9"), now));
        assert!(table.admits(ip("::ffff:192.0.2.9"), now));
        assert!(
            !table.admits(ip("192.0.2.9"), now),
            "the mapped form is the same source"
        );
    }

    #[test]
    fn prefixes_cut_at_their_edges() {
        assert_eq!(prefix_mask_u32(0), 0);
        assert_eq!(prefix_mask_u32(24), 0xffff_ff00);
        assert_eq!(prefix_mask_u32(32), u32::MAX);
        assert_eq!(prefix_mask_u128(0), 0);
        assert_eq!(prefix_mask_u128(128), u128::MAX);
        assert_eq!(prefix_mask_u128(64), u128::MAX << 64);
    }

    #[test]
    fn a_full_table_stays_within_its_documented_bytes_per_entry() {
        // docs/operations.md: about 88 bytes an entry, at most 100 (a churning
        // shard's map doubles its buckets once, and never again).
        let table = table("1/h", 100_000);
        let now = Instant::now();
        for n in 0..400_000u32 {
            table.admits(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), now);
        }
        assert_eq!(table.len(), 100_000);
        let per_entry = table.memory_usage() / table.len();
        assert!(per_entry <= 100, "{per_entry} bytes an entry");
    }

    #[test]
    fn the_table_forgets_the_least_recently_seen_beyond_its_size() {
        let table = table("1/h", 1_000);
        let now = Instant::now();
        for n in 0..1_000_000u32 {
            let source = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
            assert!(table.admits(source, now), "a new source has its burst");
        }
        let remembered = table.len();
        // Each shard holds up to its share; the sum never passes the size rounded up.
        assert!(remembered <= 1_008, "{remembered} sources remembered");
        assert!(remembered >= 900, "{remembered} sources remembered");
        let newest = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 999_999));
        assert!(!table.admits(newest, now), "the newest are remembered");
        let oldest = IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32));
        assert!(table.admits(oldest, now), "the oldest were forgotten");
    }
}
