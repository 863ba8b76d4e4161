//! The tarpit (`--tarpit`): what a trapped client is dripped, and how. A tarpit
//! listener does not greet and close: each client it accepts is trapped (the
//! connection's `Trapped` phase) and sent one drip every `--drip-interval`, either
//! a line of random printable bytes (`--drip lines`, endlessh's way: an SSH client
//! keeps waiting for the server's identification line, as RFC 4253 4.2 allows) or
//! the next `--drip-bytes` of the greeting (`--drip greeting`: a slow banner, closed
//! the ordinary way once it is all out).
//!
//! A trapped client costs what any held connection costs (its slab entry and one
//! entry in the drip deadline queue) and no allocation of its own: a line is made on
//! the stack when it is sent, from the loop's one generator.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::greeting::Greeting;

/// The longest line `--drip lines` sends, its CRLF included (RFC 4253 4.2's 255).
pub const MAX_LINE_LENGTH: u8 = 255;

/// The shortest: one random byte and the CRLF.
pub const MIN_LINE_LENGTH: u8 = 3;

/// How much a trapped client reads of what it sends, once: enough to classify it
/// (`first=`), never more (its window then closes at no cost to us).
pub(crate) const TRAP_READ: usize = 4096;

/// `--drip`: what a trapped client is sent each interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Drip {
    /// A line of `--drip-line-length` random printable bytes (CRLF included), never
    /// starting with `SSH-`, forever (the greeting first, if one is set).
    #[default]
    Lines,
    /// The greeting, `--drip-bytes` at a time, then the ordinary close.
    Greeting,
}

/// How a listener's trapped clients are dripped: `--drip-interval`,
/// `--drip-line-length`, `--drip-bytes`. Every listener has these (a reload that
/// turns `--tarpit` off leaves its trapped clients dripping at them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DripSettings {
    /// `--drip-interval`: the time between two drips.
    pub interval: Duration,
    /// `--drip-line-length`: the length of a line, its CRLF included.
    pub line_length: u8,
    /// `--drip-bytes`: the greeting's bytes sent each interval (`--drip greeting`).
    pub bytes: u32,
}

impl Default for DripSettings {
    fn default() -> Self {
        DripSettings {
            interval: Duration::from_secs(10),
            line_length: 32,
            bytes: 1,
        }
    }
}

/// A tarpit listener's trap: what its clients get instead of the greeting.
#[derive(Debug, Clone)]
pub struct Tarpit {
    /// `--drip`.
    pub drip: Drip,
    /// What is sent before the lines (`--drip lines`: the greeting if `message` or
    /// `message-file` is set for the listener, else nothing) or dripped
    /// (`--drip greeting`: the greeting).
    pub lead: Greeting,
    /// How the listener is named in the `TRAP` line (its name, or its first
    /// address).
    pub label: std::sync::Arc<str>,
}

/// Fills `line` with `length` (clamped to [`MIN_LINE_LENGTH`]..=[`MAX_LINE_LENGTH`])
/// random printable bytes ending in CRLF that never start with `SSH-`, and returns
/// them.
pub(crate) fn random_line<'a>(
    rng: &mut fastrand::Rng,
    length: u8,
    line: &'a mut [u8; MAX_LINE_LENGTH as usize],
) -> &'a [u8] {
    let length = usize::from(length.clamp(MIN_LINE_LENGTH, MAX_LINE_LENGTH));
    let (text, end) = line[..length].split_at_mut(length - 2);
    for byte in text.iter_mut() {
        *byte = rng.u8(0x20..=0x7e);
    }
    never_identification(text);
    end.copy_from_slice(b"\r\n");
    &line[..length]
}

/// Why `greeting` cannot lead the lines of a `--drip lines` trap, if it cannot: a
/// line of it that starts with `SSH-` is an identification line, which ends the trap
/// (RFC 4253 4.2), and a last line without its line break would be continued by the
/// first line dripped (a greeting ending in `SSH` and a line starting with `-`).
pub(crate) fn lead_problem(greeting: &[u8]) -> Option<&'static str> {
    if greeting
        .split(|&byte| byte == b'\n')
        .any(|line| line.starts_with(b"SSH-"))
    {
        Some("has a line that starts with SSH-, which would end the trap")
    } else if !greeting.is_empty() && !greeting.ends_with(b"\n") {
        Some("does not end with a line break (end it with \\r\\n: the first line dripped would continue its last)")
    } else {
        None
    }
}

/// Makes sure `text` does not start an SSH identification line, which would end the
/// trap (RFC 4253 4.2): `SSH-` becomes `sSH-`.
fn never_identification(text: &mut [u8]) {
    if text.starts_with(b"SSH-") {
        text[0] = b's';
    }
}

/// When a trap began, by the wall clock (a trap may outlive the 49.7 days in which
/// the connections' 32-bit millisecond clock wraps): whole seconds since the Unix
/// epoch (until 2106) and the milliseconds past them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrapStart {
    pub(crate) seconds: u32,
    pub(crate) millis: u16,
}

impl TrapStart {
    /// `at`, as a trap's start.
    pub(crate) fn at(at: SystemTime) -> Self {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        TrapStart {
            seconds: u32::try_from(since.as_secs()).unwrap_or(u32::MAX),
            millis: since.subsec_millis() as u16,
        }
    }

    /// How long the trap has lasted at `now` (zero if the clock went back).
    pub(crate) fn elapsed(self, now: SystemTime) -> Duration {
        let start = UNIX_EPOCH
            + Duration::from_secs(u64::from(self.seconds))
            + Duration::from_millis(u64::from(self.millis));
        now.duration_since(start).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_printable_ends_in_crlf_and_never_starts_an_identification() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut buffer = [0u8; MAX_LINE_LENGTH as usize];
        for length in [0, 3, 4, 5, 32, 255] {
            for _ in 0..2000 {
                let line = random_line(&mut rng, length, &mut buffer);
                assert_eq!(line.len(), usize::from(length.max(MIN_LINE_LENGTH)));
                assert!(line.ends_with(b"\r\n"));
                let text = &line[..line.len() - 2];
                assert!(text.iter().all(|byte| (0x20..=0x7e).contains(byte)));
                assert!(!line.starts_with(b"SSH-"));
            }
        }
        let mut text = *b"SSH-2.0-x";
        never_identification(&mut text);
        assert_eq!(&text, b"sSH-2.0-x");
        let mut text = *b"SSH";
        never_identification(&mut text);
        assert_eq!(&text, b"SSH");
    }

    #[test]
    fn a_trap_start_counts_from_the_wall_clock() {
        let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let trap = TrapStart::at(start);
        assert_eq!(trap.millis, 123);
        let later = start + Duration::from_secs(60 * 24 * 3600);
        assert_eq!(trap.elapsed(later), Duration::from_secs(60 * 24 * 3600));
        assert_eq!(trap.elapsed(start - Duration::from_secs(1)), Duration::ZERO);
    }
}
