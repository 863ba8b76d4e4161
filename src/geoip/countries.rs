//! The country codes a trapped client's country is one of, as one byte
//! ([`Country`]): ISO 3166-1 alpha-2 (tzdata's iso3166.tab, 249 codes) and the three
//! MaxMind and DB-IP add (`XK` Kosovo, `EU` and `AP` for networks known only by
//! continent); a fixed set, so that per-country counters are arrays, not maps.

use std::fmt;

/// Every code, sorted, two bytes each.
const CODES: &[u8; 504] = b"ADAEAFAGAIALAMAOAPAQARASATAUAWAXAZBABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBYBZCACCCDCFCGCHCICKCLCMCNCOCRCUCVCWCXCYCZDEDJDKDMDODZECEEEGEHERESETEUFIFJFKFMFOFRGAGBGDGEGFGGGHGIGLGMGNGPGQGRGSGTGUGWGYHKHMHNHRHTHUIDIEILIMINIOIQIRISITJEJMJOJPKEKGKHKIKMKNKPKRKWKYKZLALBLCLILKLRLSLTLULVLYMAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZNANCNENFNGNINLNONPNRNUNZOMPAPEPFPGPHPKPLPMPNPRPSPTPWPYQARERORSRURWSASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZTCTDTFTGTHTJTKTLTMTNTOTRTTTVTWTZUAUGUMUSUYUZVAVCVEVGVIVNVUWFWSXKYEYTZAZMZW";

/// A trapped client's country, in one byte: not looked up (no `--geoip-db`), unknown
/// (the database has no record, no country, or a code outside [`CODES`]), or one of
/// [`CODES`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Country(u8);

impl Country {
    /// No lookup was made: the server has no `--geoip-db` (no `country=` field; the
    /// metrics label says `unknown`).
    pub(crate) const NONE: Country = Country(0);
    /// Looked up, and not found.
    pub(crate) const UNKNOWN: Country = Country(1);
    /// How many values a `Country` takes: the size of a per-country array.
    pub(crate) const COUNT: usize = 2 + CODES.len() / 2;

    /// The country of ISO code `code` (upper or lower case), or unknown.
    pub(crate) fn from_code(code: &str) -> Country {
        let [a, b] = match code.as_bytes() {
            &[a, b] => [a.to_ascii_uppercase(), b.to_ascii_uppercase()],
            _ => return Country::UNKNOWN,
        };
        // A binary search over the pairs (one trap, one lookup: no table of 676).
        let (mut low, mut high) = (0, CODES.len() / 2);
        while low < high {
            let middle = (low + high) / 2;
            match [CODES[2 * middle], CODES[2 * middle + 1]].cmp(&[a, b]) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                // At most 252 codes: the index fits.
                std::cmp::Ordering::Equal => return Country(2 + middle as u8),
            }
        }
        Country::UNKNOWN
    }

    /// Its index in a per-country array (below [`Country::COUNT`]).
    #[inline]
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The country at index `index` of a per-country array.
    pub(crate) fn from_index(index: usize) -> Country {
        u8::try_from(index)
            .ok()
            .filter(|&index| usize::from(index) < Country::COUNT)
            .map_or(Country::UNKNOWN, Country)
    }

    /// Whether it was looked up (the server has a `--geoip-db`).
    pub(crate) fn looked_up(self) -> bool {
        self != Country::NONE
    }

    /// As a handed trap's record has it (two bytes): its code, `??` for unknown,
    /// `--` when it was not looked up.
    pub(crate) fn to_record(self) -> [u8; 2] {
        match self {
            Country::NONE => *b"--",
            Country::UNKNOWN => *b"??",
            _ => {
                let at = 2 * (self.index() - 2);
                [CODES[at], CODES[at + 1]]
            }
        }
    }

    /// The country a handed trap's record names ([`Country::to_record`]).
    pub(crate) fn from_record(record: [u8; 2]) -> Country {
        match &record {
            b"--" => Country::NONE,
            _ => std::str::from_utf8(&record).map_or(Country::UNKNOWN, Country::from_code),
        }
    }

    /// Its code (`NZ`), or `unknown` (also when it was not looked up).
    pub(crate) fn as_str(self) -> &'static str {
        match self.0 {
            0 | 1 => "unknown",
            n => {
                let at = 2 * usize::from(n - 2);
                // CODES is ASCII.
                std::str::from_utf8(&CODES[at..at + 2]).unwrap_or("unknown")
            }
        }
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
