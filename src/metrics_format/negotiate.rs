//! `Accept` negotiation as the Prometheus Go client does it: prometheus/common's
//! `expfmt.NegotiateIncludingOpenMetrics` (as released up to v0.70), which reads the
//! header with goautoneg's `ParseAccept` and takes the first clause, in goautoneg's
//! order, that names a format it knows.
//!
//! What that means, all of it copied here:
//! - Clauses are ordered by q, higher first, and a concrete type or subtype before a
//!   wildcard; that comparison is not a consistent order (`text/plain;q=0.1` and
//!   `*/*;q=1` each come "before" the other), so the order also depends on Go's
//!   `sort.Sort` step by step, which [`go_sort`] therefore repeats (insertion sort up
//!   to 12 clauses, pdqsort above).
//! - A clause is known only as `text/plain` with `version=0.0.4` or none, and
//!   `application/openmetrics-text` with `version=0.0.1`, `1.0.0` or none (none is
//!   0.0.1). Any other version, `*/*`, `text/*` or another type is passed over; when
//!   no clause is known the answer is the text format.
//! - The parsing is goautoneg's, byte for byte: clauses split at every `,` and
//!   parameters at every `;` (no quoted strings), only spaces trimmed, names and
//!   values compared case-sensitively, `q` read as Go's `strconv.ParseFloat(q, 32)`
//!   reads it (a syntax error is 0), a part with no `/` dropped unless it is `*`, a
//!   parameter without exactly one `=` dropped, the last of a repeated one kept.
//! - Only the first `Accept` header counts (Go's `Header.Get`).
//!
//! One difference, on purpose: the Go client also offers protobuf; greeter does not
//! speak it, so a protobuf clause is passed over like any other unknown one.

/// What a scrape is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The classic text format 0.0.4.
    Text,
    /// OpenMetrics, labelled `version=0.0.1` (asked for with that version or none).
    OpenMetrics0_0_1,
    /// OpenMetrics `version=1.0.0`.
    OpenMetrics1_0_0,
}

/// The format the Go client would answer an `Accept` header's value with (`None`:
/// the request had none).
pub fn negotiate(accept: Option<&[u8]>) -> Format {
    // Go's textproto trims a header value's leading and trailing blanks.
    let not_blank = |byte: &u8| *byte != b' ' && *byte != b'\t';
    let accept = accept.map_or(&b""[..], |value| {
        let start = value.iter().position(not_blank).unwrap_or(value.len());
        let end = value
            .iter()
            .rposition(not_blank)
            .map_or(start, |end| end + 1);
        &value[start..end]
    });
    let mut clauses = parse_accept(accept);
    go_sort(&mut clauses, &comes_before);
    clauses
        .iter()
        .find_map(Clause::known_format)
        .unwrap_or(Format::Text)
}

/// One clause of an `Accept` header, as goautoneg keeps it.
#[derive(Debug, Clone, Copy)]
struct Clause<'a> {
    kind: &'a [u8],
    subtype: &'a [u8],
    /// A float32's value, as Go's `ParseFloat(q, 32)` gives it.
    q: f32,
    /// The `version` parameter, empty when absent.
    version: &'a [u8],
}

impl Clause<'_> {
    /// The format this clause names, if it is one the Go client would serve.
    fn known_format(&self) -> Option<Format> {
        match (self.kind, self.subtype, self.version) {
            (b"text", b"plain", b"0.0.4" | b"") => Some(Format::Text),
            (b"application", b"openmetrics-text", b"1.0.0") => Some(Format::OpenMetrics1_0_0),
            (b"application", b"openmetrics-text", b"0.0.1" | b"") => Some(Format::OpenMetrics0_0_1),
            _ => None,
        }
    }
}

/// goautoneg's `Less`: a higher q first, else a concrete type before `*`, else a
/// concrete subtype before `*`, each test on its own (so not a consistent order).
fn comes_before(a: &Clause<'_>, b: &Clause<'_>) -> bool {
    a.q > b.q || (a.kind != b"*" && b.kind == b"*") || (a.subtype != b"*" && b.subtype == b"*")
}

/// goautoneg's `nextSplitElement`: before and after the first `separator`, or all and
/// nothing.
fn split_first(text: &[u8], separator: u8) -> (&[u8], &[u8]) {
    match text.iter().position(|&byte| byte == separator) {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, b""),
    }
}

/// goautoneg trims spaces only (not tabs).
fn trim_spaces(text: &[u8]) -> &[u8] {
    let start = text.iter().position(|&byte| byte != b' ');
    let end = text.iter().rposition(|&byte| byte != b' ');
    match (start, end) {
        (Some(start), Some(end)) => &text[start..=end],
        _ => b"",
    }
}

/// goautoneg's `ParseAccept`, before its sort.
fn parse_accept(header: &[u8]) -> Vec<Clause<'_>> {
    let mut clauses = Vec::new();
    let mut remaining = header;
    while !remaining.is_empty() {
        let (part, rest) = split_first(remaining, b',');
        remaining = rest;
        let (media_range, mut parameters) = split_first(trim_spaces(part), b';');
        let (kind, after_slash) = split_first(media_range, b'/');
        let kind = trim_spaces(kind);
        let subtype = if after_slash.is_empty() {
            if kind != b"*" {
                continue;
            }
            &b"*"[..]
        } else {
            let (subtype, extra) = split_first(after_slash, b'/');
            if !extra.is_empty() {
                continue;
            }
            trim_spaces(subtype)
        };
        let mut clause = Clause {
            kind,
            subtype,
            q: 1.0,
            version: b"",
        };
        while !parameters.is_empty() {
            let (parameter, rest) = split_first(parameters, b';');
            parameters = rest;
            let (name, after_equals) = split_first(parameter, b'=');
            if after_equals.is_empty() {
                continue;
            }
            let (value, extra) = split_first(after_equals, b'=');
            if !extra.is_empty() {
                continue;
            }
            match trim_spaces(name) {
                // Go parses the value untrimmed: `q= 0.5` is a syntax error, so 0.
                b"q" => clause.q = go_parse_float32(value),
                b"version" => clause.version = trim_spaces(value),
                _ => {}
            }
        }
        clauses.push(clause);
    }
    clauses
}

/// Go's `strconv.ParseFloat(text, 32)` with its error ignored: a syntax error is 0,
/// out of range the infinity. Go's syntax is wider than Rust's: `_` between digits,
/// hexadecimal floats (`0x1p-1`), and `nan` only without a sign; so the text is
/// checked and read as Go reads it, and a decimal (all a scraper ever sends) is then
/// rounded by Rust's parser, correctly rounded as Go's is.
fn go_parse_float32(text: &[u8]) -> f32 {
    if let Some(special) = go_special_float(text) {
        return special;
    }
    let Some(float) = GoFloat::read(text) else {
        return 0.0;
    };
    if float.hex {
        return float.hex_to_f32();
    }
    let digits: String = text
        .iter()
        .filter(|&&byte| byte != b'_')
        .map(|&byte| char::from(byte))
        .collect();
    digits.parse().unwrap_or(0.0)
}

/// Go's `special`: `inf` or `infinity` with an optional sign, or `nan`, in any case.
fn go_special_float(text: &[u8]) -> Option<f32> {
    let (negative, unsigned) = match text.first() {
        Some(b'+') => (false, &text[1..]),
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    if unsigned.eq_ignore_ascii_case(b"inf") || unsigned.eq_ignore_ascii_case(b"infinity") {
        return Some(if negative {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        });
    }
    (unsigned.len() == text.len() && text.eq_ignore_ascii_case(b"nan")).then_some(f32::NAN)
}

/// What Go's `readFloat` reads of a whole number's text.
struct GoFloat {
    mantissa: u64,
    exponent: i64,
    negative: bool,
    /// Digits beyond what the mantissa holds were not all zero.
    truncated: bool,
    hex: bool,
}

impl GoFloat {
    /// Go's `readFloat`, requiring (as `ParseFloat` does) that it reads all of
    /// `text`, and its `underscoreOK` check.
    fn read(text: &[u8]) -> Option<GoFloat> {
        let mut i = 0;
        let mut negative = false;
        match text.first() {
            Some(b'+') => i += 1,
            Some(b'-') => {
                negative = true;
                i += 1;
            }
            _ => {}
        }
        let lower = |byte: u8| byte | (b'x' - b'X');
        let hex = i + 2 < text.len() && text[i] == b'0' && lower(text[i + 1]) == b'x';
        let (base, max_digits, exponent_char) = if hex {
            i += 2;
            (16u64, 16, b'p')
        } else {
            (10, 19, b'e')
        };
        let (mut mantissa, mut truncated, mut underscores) = (0u64, false, false);
        let (mut saw_dot, mut saw_digits) = (false, false);
        let (mut digits, mut mantissa_digits, mut point) = (0i64, 0i64, 0i64);
        while let Some(&byte) = text.get(i) {
            let value = match byte {
                b'_' => {
                    underscores = true;
                    i += 1;
                    continue;
                }
                b'.' if !saw_dot => {
                    saw_dot = true;
                    point = digits;
                    i += 1;
                    continue;
                }
                b'0'..=b'9' => u64::from(byte - b'0'),
                _ if hex && (b'a'..=b'f').contains(&lower(byte)) => {
                    u64::from(lower(byte) - b'a' + 10)
                }
                _ => break,
            };
            saw_digits = true;
            i += 1;
            if value == 0 && digits == 0 && byte == b'0' {
                // Leading zeros are not digits.
                point -= 1;
                continue;
            }
            digits += 1;
            if mantissa_digits < max_digits {
                mantissa = mantissa * base + value;
                mantissa_digits += 1;
            } else if byte != b'0' {
                truncated = true;
            }
        }
        if !saw_digits {
            return None;
        }
        if !saw_dot {
            point = digits;
        }
        if hex {
            point *= 4;
            mantissa_digits *= 4;
        }
        if text
            .get(i)
            .is_some_and(|&byte| lower(byte) == exponent_char)
        {
            i += 1;
            let sign = match text.get(i) {
                Some(b'+') => {
                    i += 1;
                    1
                }
                Some(b'-') => {
                    i += 1;
                    -1
                }
                _ => 1,
            };
            if !text.get(i).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            let mut exponent = 0i64;
            while let Some(&byte) = text
                .get(i)
                .filter(|byte| byte.is_ascii_digit() || **byte == b'_')
            {
                i += 1;
                if byte == b'_' {
                    underscores = true;
                } else if exponent < 10_000 {
                    exponent = exponent * 10 + i64::from(byte - b'0');
                }
            }
            point += exponent * sign;
        } else if hex {
            return None;
        }
        let exponent = if mantissa == 0 {
            0
        } else {
            point - mantissa_digits
        };
        if i != text.len() || (underscores && !go_underscores_ok(text)) {
            return None;
        }
        Some(GoFloat {
            mantissa,
            exponent,
            negative,
            truncated,
            hex,
        })
    }

    /// Go's `atofHex` for a float32: `mantissa` x 2^`exponent`, rounded to even.
    fn hex_to_f32(&self) -> f32 {
        const MANTISSA_BITS: u32 = 23;
        const EXPONENT_BITS: u32 = 8;
        const BIAS: i64 = -127;
        let max_exponent = (1 << EXPONENT_BITS) + BIAS - 2;
        let min_exponent = BIAS + 1;
        let mut mantissa = self.mantissa;
        let mut exponent = self.exponent + i64::from(MANTISSA_BITS);
        while mantissa != 0 && mantissa >> (MANTISSA_BITS + 2) == 0 {
            mantissa <<= 1;
            exponent -= 1;
        }
        if self.truncated {
            mantissa |= 1;
        }
        while mantissa >> (1 + MANTISSA_BITS + 2) != 0 {
            mantissa = (mantissa >> 1) | (mantissa & 1);
            exponent += 1;
        }
        while mantissa > 1 && exponent < min_exponent - 2 {
            mantissa = (mantissa >> 1) | (mantissa & 1);
            exponent += 1;
        }
        let mut round = mantissa & 3;
        mantissa >>= 2;
        round |= mantissa & 1;
        exponent += 2;
        if round == 3 {
            mantissa += 1;
            if mantissa == 1 << (1 + MANTISSA_BITS) {
                mantissa >>= 1;
                exponent += 1;
            }
        }
        if mantissa >> MANTISSA_BITS == 0 {
            exponent = BIAS;
        }
        if exponent > max_exponent {
            mantissa = 1 << MANTISSA_BITS;
            exponent = max_exponent + 1;
        }
        let mut bits = mantissa & ((1 << MANTISSA_BITS) - 1);
        bits |= (((exponent - BIAS) & ((1 << EXPONENT_BITS) - 1)) as u64) << MANTISSA_BITS;
        if self.negative {
            bits |= 1 << (MANTISSA_BITS + EXPONENT_BITS);
        }
        f32::from_bits(bits as u32)
    }
}

/// Go's `underscoreOK`: each `_` between digits (or a base prefix and a digit).
fn go_underscores_ok(text: &[u8]) -> bool {
    let lower = |byte: u8| byte | (b'x' - b'X');
    let text = match text.first() {
        Some(b'+' | b'-') => &text[1..],
        _ => text,
    };
    let mut i = 0;
    // What was seen last: b'^' the start, b'0' a digit or prefix, b'_', b'!' other.
    let mut saw = b'^';
    let mut hex = false;
    if text.len() >= 2 && text[0] == b'0' && matches!(lower(text[1]), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = lower(text[1]) == b'x';
    }
    for &byte in &text[i..] {
        if byte.is_ascii_digit() || (hex && (b'a'..=b'f').contains(&lower(byte))) {
            saw = b'0';
        } else if byte == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else if saw == b'_' {
            return false;
        } else {
            saw = b'!';
        }
    }
    saw != b'_'
}

/// Go's `sort.Sort` (pdqsort, as in Go 1.19 and every release since), step for step:
/// with a comparison that is not a consistent order, the result depends on which
/// pairs are compared and in what order, so only the same algorithm gives the same
/// result. Never panics, whatever `less` says.
fn go_sort<T>(data: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let length = data.len() as isize;
    if length <= 1 {
        return;
    }
    let limit = bits_len(length);
    GoSort { data, less }.pdqsort(0, length, limit);
}

/// Go's `bits.Len`: the bits needed to write `n`.
fn bits_len(n: isize) -> isize {
    (usize::BITS - (n as usize).leading_zeros()) as isize
}

/// The slice and comparison of one [`go_sort`]; indices are Go's signed `int`s.
struct GoSort<'a, T, F> {
    data: &'a mut [T],
    less: &'a F,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortedHint {
    Unknown,
    Increasing,
    Decreasing,
}

impl<T, F: Fn(&T, &T) -> bool> GoSort<'_, T, F> {
    fn less(&self, i: isize, j: isize) -> bool {
        (self.less)(&self.data[i as usize], &self.data[j as usize])
    }

    fn swap(&mut self, i: isize, j: isize) {
        self.data.swap(i as usize, j as usize);
    }

    fn insertion_sort(&mut self, a: isize, b: isize) {
        for i in a + 1..b {
            let mut j = i;
            while j > a && self.less(j, j - 1) {
                self.swap(j, j - 1);
                j -= 1;
            }
        }
    }

    fn sift_down(&mut self, lo: isize, hi: isize, first: isize) {
        let mut root = lo;
        loop {
            let mut child = 2 * root + 1;
            if child >= hi {
                break;
            }
            if child + 1 < hi && self.less(first + child, first + child + 1) {
                child += 1;
            }
            if !self.less(first + root, first + child) {
                return;
            }
            self.swap(first + root, first + child);
            root = child;
        }
    }

    fn heap_sort(&mut self, a: isize, b: isize) {
        let first = a;
        let hi = b - a;
        let mut i = (hi - 1) / 2;
        while i >= 0 {
            self.sift_down(i, hi, first);
            i -= 1;
        }
        let mut i = hi - 1;
        while i >= 0 {
            self.swap(first, first + i);
            self.sift_down(0, i, first);
            i -= 1;
        }
    }

    fn pdqsort(&mut self, mut a: isize, mut b: isize, mut limit: isize) {
        const MAX_INSERTION: isize = 12;
        let mut was_balanced = true;
        let mut was_partitioned = true;
        loop {
            let length = b - a;
            if length <= MAX_INSERTION {
                self.insertion_sort(a, b);
                return;
            }
            if limit == 0 {
                self.heap_sort(a, b);
                return;
            }
            if !was_balanced {
                self.break_patterns(a, b);
                limit -= 1;
            }
            let (mut pivot, mut hint) = self.choose_pivot(a, b);
            if hint == SortedHint::Decreasing {
                self.reverse_range(a, b);
                pivot = (b - 1) - (pivot - a);
                hint = SortedHint::Increasing;
            }
            if was_balanced
                && was_partitioned
                && hint == SortedHint::Increasing
                && self.partial_insertion_sort(a, b)
            {
                return;
            }
            if a > 0 && !self.less(a - 1, pivot) {
                a = self.partition_equal(a, b, pivot);
                continue;
            }
            let (mid, already_partitioned) = self.partition(a, b, pivot);
            was_partitioned = already_partitioned;
            let (left, right) = (mid - a, b - mid);
            let balance_threshold = length / 8;
            if left < right {
                was_balanced = left >= balance_threshold;
                self.pdqsort(a, mid, limit);
                a = mid + 1;
            } else {
                was_balanced = right >= balance_threshold;
                self.pdqsort(mid + 1, b, limit);
                b = mid;
            }
        }
    }

    fn partition(&mut self, a: isize, b: isize, pivot: isize) -> (isize, bool) {
        self.swap(a, pivot);
        let (mut i, mut j) = (a + 1, b - 1);
        while i <= j && self.less(i, a) {
            i += 1;
        }
        while i <= j && !self.less(j, a) {
            j -= 1;
        }
        if i > j {
            self.swap(j, a);
            return (j, true);
        }
        self.swap(i, j);
        i += 1;
        j -= 1;
        loop {
            while i <= j && self.less(i, a) {
                i += 1;
            }
            while i <= j && !self.less(j, a) {
                j -= 1;
            }
            if i > j {
                break;
            }
            self.swap(i, j);
            i += 1;
            j -= 1;
        }
        self.swap(j, a);
        (j, false)
    }

    fn partition_equal(&mut self, a: isize, b: isize, pivot: isize) -> isize {
        self.swap(a, pivot);
        let (mut i, mut j) = (a + 1, b - 1);
        loop {
            while i <= j && !self.less(a, i) {
                i += 1;
            }
            while i <= j && self.less(a, j) {
                j -= 1;
            }
            if i > j {
                break;
            }
            self.swap(i, j);
            i += 1;
            j -= 1;
        }
        i
    }

    fn partial_insertion_sort(&mut self, a: isize, b: isize) -> bool {
        const MAX_STEPS: usize = 5;
        const SHORTEST_SHIFTING: isize = 50;
        let mut i = a + 1;
        for _ in 0..MAX_STEPS {
            while i < b && !self.less(i, i - 1) {
                i += 1;
            }
            if i == b {
                return true;
            }
            if b - a < SHORTEST_SHIFTING {
                return false;
            }
            self.swap(i, i - 1);
            if i - a >= 2 {
                // Down to 1, not to `a`: Go's code says so.
                let mut j = i - 1;
                while j >= 1 && self.less(j, j - 1) {
                    self.swap(j, j - 1);
                    j -= 1;
                }
            }
            if b - i >= 2 {
                let mut j = i + 1;
                while j < b && self.less(j, j - 1) {
                    self.swap(j, j - 1);
                    j += 1;
                }
            }
        }
        false
    }

    fn break_patterns(&mut self, a: isize, b: isize) {
        let length = b - a;
        if length >= 8 {
            let mut random = length as u64;
            let modulus = 1u64 << bits_len(length);
            let middle = a + (length / 4) * 2;
            for index in middle - 1..=middle + 1 {
                random ^= random << 13;
                random ^= random >> 17;
                random ^= random << 5;
                let mut other = (random & (modulus - 1)) as isize;
                if other >= length {
                    other -= length;
                }
                self.swap(index, a + other);
            }
        }
    }

    fn choose_pivot(&mut self, a: isize, b: isize) -> (isize, SortedHint) {
        const SHORTEST_NINTHER: isize = 50;
        const MAX_SWAPS: usize = 4 * 3;
        let l = b - a;
        let mut swaps = 0;
        let mut i = a + l / 4;
        let mut j = a + l / 4 * 2;
        let mut k = a + l / 4 * 3;
        if l >= 8 {
            if l >= SHORTEST_NINTHER {
                i = self.median(i - 1, i, i + 1, &mut swaps);
                j = self.median(j - 1, j, j + 1, &mut swaps);
                k = self.median(k - 1, k, k + 1, &mut swaps);
            }
            j = self.median(i, j, k, &mut swaps);
        }
        let hint = match swaps {
            0 => SortedHint::Increasing,
            MAX_SWAPS => SortedHint::Decreasing,
            _ => SortedHint::Unknown,
        };
        (j, hint)
    }

    fn order2(&self, a: isize, b: isize, swaps: &mut usize) -> (isize, isize) {
        if self.less(b, a) {
            *swaps += 1;
            (b, a)
        } else {
            (a, b)
        }
    }

    fn median(&self, a: isize, b: isize, c: isize, swaps: &mut usize) -> isize {
        let (a, b) = self.order2(a, b, swaps);
        let (b, _) = self.order2(b, c, swaps);
        let (_, b) = self.order2(a, b, swaps);
        b
    }

    fn reverse_range(&mut self, a: isize, b: isize) {
        let (mut i, mut j) = (a, b - 1);
        while i < j {
            self.swap(i, j);
            i += 1;
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(accept: &str) -> Format {
        negotiate(Some(accept.as_bytes()))
    }

    #[test]
    fn q_order_ties_versions_and_wildcards_are_the_go_clients() {
        use Format::*;
        for (accept, expected) in [
            // The three: q order is honoured, and 9.9.9 is no version it knows.
            (
                "application/openmetrics-text;q=0, text/plain;q=1",
                Text,
            ),
            (
                "text/plain;q=0.9, application/openmetrics-text;q=0.5",
                Text,
            ),
            ("application/openmetrics-text; version=9.9.9", Text),
            // Prometheus 2's and 3's own headers.
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                OpenMetrics1_0_0,
            ),
            (
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                OpenMetrics1_0_0,
            ),
            // Protobuf first (native histograms): greeter has none, the next is taken.
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
                OpenMetrics1_0_0,
            ),
            // No version is 0.0.1; 0.0.1 is named as such.
            ("application/openmetrics-text", OpenMetrics0_0_1),
            ("application/openmetrics-text;version=0.0.1", OpenMetrics0_0_1),
            // Ties keep the header's order.
            ("application/openmetrics-text, text/plain", OpenMetrics0_0_1),
            ("text/plain, application/openmetrics-text", Text),
            // Above 12 clauses Go's pdqsort, which does not keep ties in order: Go
            // puts text/plain first here.
            (
                "application/openmetrics-text,*/*,*/*,*/*,text/plain,*/*;q=0.2,*/*,*/*;q=0,*/*,*/*,*/*;q=0,*/*;q=0.2,*/*",
                Text,
            ),
            // Wildcards name no format: the next clause, or text.
            ("*/*", Text),
            ("*/*;q=1, application/openmetrics-text;q=0.1", OpenMetrics0_0_1),
            ("application/*", Text),
            ("*", Text),
            ("", Text),
            // Case-sensitive, quotes kept, `q= 0.5` a syntax error (0), an unknown
            // text version passed over.
            ("Application/OpenMetrics-Text", Text),
            ("application/openmetrics-text;version=\"1.0.0\"", Text),
            ("text/plain;q= 0.5, application/openmetrics-text;q=0.1", OpenMetrics0_0_1),
            ("text/plain;version=1.0.0, application/openmetrics-text;q=0.1", OpenMetrics0_0_1),
            // A parameter without one `=` is dropped; the last version counts.
            ("application/openmetrics-text;version=1.0.0;version", OpenMetrics1_0_0),
            ("application/openmetrics-text;version=9;version=1.0.0", OpenMetrics1_0_0),
            ("application/openmetrics-text;version=1.0.0=x", OpenMetrics0_0_1),
            // q as Go reads it: float32, `inf`, `nan`, a signed `nan` a syntax error.
            ("text/plain;q=0.5, application/openmetrics-text;q=0.50000001", Text),
            ("text/plain;q=1e39, application/openmetrics-text;q=1e38", Text),
            ("text/plain;q=-nan, application/openmetrics-text;q=0.1", OpenMetrics0_0_1),
        ] {
            assert_eq!(negotiated(accept), expected, "Accept: {accept}");
        }
        assert_eq!(negotiate(None), Text);
    }

    #[test]
    fn q_values_are_read_as_gos_parse_float_reads_them() {
        // Each pair is what Go 1.19's strconv.ParseFloat(text, 32) gave, its error
        // ignored (a syntax error is 0).
        for (text, go_bits) in [
            ("0.5", 0x3f00_0000),
            ("0x1p-1", 0x3f00_0000),
            ("0X.8P0", 0x3f00_0000),
            ("0_5", 0x40a0_0000),
            ("0.2_5", 0x3e80_0000),
            ("1e1_0", 0x5015_02f9),
            ("_1", 0),
            ("1_", 0),
            ("0x1p", 0),
            ("0x1", 0),
            ("+nan", 0),
            ("-Infinity", 0xff80_0000),
            ("1e39", 0x7f80_0000),
            ("0x1.fffffep127", 0x7f7f_ffff),
            ("0x1.ffffffp127", 0x7f80_0000),
            ("0x1p-150", 0),
            ("0x1.8p-149", 0x0000_0002),
            ("0.500000029802322387695312499999", 0x3f00_0000),
            (" 0.5", 0),
        ] {
            assert_eq!(
                go_parse_float32(text.as_bytes()).to_bits(),
                go_bits,
                "{text:?}"
            );
        }
        assert!(go_parse_float32(b"nan").is_nan());
    }

    #[test]
    fn the_go_sort_sorts_and_never_panics_whatever_the_comparison_says() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for length in [0, 1, 2, 12, 13, 49, 50, 51, 200, 1000] {
            let mut values: Vec<u64> = (0..length).map(|_| next() % 17).collect();
            let mut expected = values.clone();
            expected.sort_unstable();
            go_sort(&mut values, &|a, b| a < b);
            assert_eq!(values, expected);
            // A comparison that answers at random: any order, but no panic.
            let answers = std::cell::Cell::new(next());
            go_sort(&mut values, &|_, _| {
                answers.set(answers.get().rotate_left(1) ^ 0x5bd1_e995);
                answers.get() & 1 == 1
            });
            assert_eq!(values.len(), length);
        }
    }
}
