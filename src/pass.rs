//! The greet delay's pass table (postscreen's temporary whitelist): a client that
//! waited out its `--greet-delay` without sending anything has shown that it waits
//! for the banner, so its source is greeted at once for `--pass-ttl` after that.
//! Pregreeters are never passed.
//!
//! A source is an address cut to `--rate-prefix-v4`/`-v6` bits, as the rate table
//! has it, and the table is the rate table's kind of map (`rate::SourceMap`): bounded
//! by `--pass-table-size` sources, the least recently seen forgotten first (one
//! allocation for the whole table, sharded locks, shared by the workers). A pass is
//! good for `--pass-ttl` from when it was earned: being greeted at once does not
//! extend it, so a passed client waits out one delay again each TTL.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::rate::{source_key, SourceMap};

/// What a pass table is made of; a reload that keeps all of it keeps the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassSettings {
    /// `--pass-ttl`: how long a pass is good for (more than zero: zero keeps no
    /// table).
    pub ttl: Duration,
    /// `--rate-prefix-v4`: IPv4 clients are grouped by this many leading bits.
    pub prefix_v4: u8,
    /// `--rate-prefix-v6`: IPv6 clients are grouped by this many leading bits.
    pub prefix_v6: u8,
    /// `--pass-table-size`: the most sources remembered at once.
    pub table_size: u32,
}

/// The sources that waited out a greet delay silently, and when.
pub struct PassTable {
    settings: PassSettings,
    /// `ttl` in nanoseconds.
    ttl_ns: u64,
    /// The epoch of the timestamps.
    epoch: Instant,
    /// Source key to when it passed, in nanoseconds since `epoch`.
    sources: SourceMap<u64>,
}

impl PassTable {
    /// An empty table (it allocates as sources pass, up to its bound).
    pub fn new(settings: PassSettings) -> Self {
        PassTable {
            settings,
            ttl_ns: settings.ttl.as_nanos().try_into().unwrap_or(u64::MAX),
            epoch: Instant::now(),
            sources: SourceMap::new(settings.table_size),
        }
    }

    /// What it was made of.
    pub fn settings(&self) -> &PassSettings {
        &self.settings
    }

    /// Whether a client at `ip` is greeted at once at `now`: its source passed within
    /// the TTL. A source it remembers becomes the most recently seen; an expired pass
    /// is forgotten.
    pub fn passes(&self, ip: IpAddr, now: Instant) -> bool {
        let key = self.key(ip);
        let now_ns = self.nanos(now);
        self.sources.with_shard(key, |shard| {
            let Some(&mut passed_ns) = shard.get(&key) else {
                return false;
            };
            if now_ns.saturating_sub(passed_ns) < self.ttl_ns {
                return true;
            }
            shard.remove(&key);
            false
        })
    }

    /// Remembers that a client at `ip` waited out its delay silently at `now`: its
    /// source passes from now on, for the TTL.
    pub fn pass(&self, ip: IpAddr, now: Instant) {
        let key = self.key(ip);
        let now_ns = self.nanos(now);
        self.sources
            .with_shard(key, |shard| shard.insert(key, now_ns));
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

    fn key(&self, ip: IpAddr) -> crate::rate::SourceKey {
        source_key(ip, self.settings.prefix_v4, self.settings.prefix_v6)
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

impl std::fmt::Debug for PassTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassTable")
            .field("settings", &self.settings)
            .field("sources", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn table(ttl: Duration, table_size: u32) -> PassTable {
        PassTable::new(PassSettings {
            ttl,
            prefix_v4: 32,
            prefix_v6: 64,
            table_size,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_pass_lasts_its_ttl_from_when_it_was_earned() {
        let table = table(Duration::from_secs(60), 100);
        let start = Instant::now();
        assert!(!table.passes(ip("192.0.2.1"), start), "nobody passed yet");
        table.pass(ip("192.0.2.1"), start);
        assert!(table.passes(ip("192.0.2.1"), start + Duration::from_secs(59)));
        assert!(!table.passes(ip("192.0.2.2"), start), "another address");
        // Being greeted at once (above) does not extend it.
        assert!(!table.passes(ip("192.0.2.1"), start + Duration::from_secs(60)));
        assert!(table.is_empty(), "an expired pass is forgotten");
    }

    #[test]
    fn sources_are_grouped_by_prefix_as_the_rate_table_groups_them() {
        let table = table(Duration::from_secs(60), 100);
        let now = Instant::now();
        table.pass(ip("2001:db8:1:2::1"), now);
        assert!(table.passes(ip("2001:db8:1:2:ffff::9"), now), "same /64");
        assert!(!table.passes(ip("2001:db8:1:3::1"), now), "another /64");
        table.pass(ip("::ffff:192.0.2.9"), now);
        assert!(table.passes(ip("192.0.2.9"), now), "mapped is IPv4");
    }

    #[test]
    fn the_least_recently_seen_are_forgotten_beyond_the_size() {
        let table = table(Duration::from_secs(3600), 1_000);
        let now = Instant::now();
        let nth = |n: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        table.pass(nth(0), now);
        for n in 1..100_000u32 {
            // The first source is seen all along: it stays.
            assert!(table.passes(nth(0), now));
            table.pass(nth(n), now);
        }
        assert!(table.len() <= 1_008, "{} sources remembered", table.len());
        assert!(table.passes(nth(99_999), now), "the newest are remembered");
        assert!(table.passes(nth(0), now), "the one seen all along too");
        assert!(
            !table.passes(nth(1), now),
            "the oldest unseen were forgotten"
        );
    }
}
