//! The country codes' one byte, both ways.

use super::*;

#[test]
fn every_code_is_one_byte_and_back() {
    assert_eq!(Country::COUNT, 254);
    for index in 2..Country::COUNT {
        let country = Country::from_index(index);
        assert_eq!(Country::from_code(country.as_str()), country, "{index}");
        assert_eq!(country.index(), index);
    }
    assert_eq!(Country::from_code("NZ").as_str(), "NZ");
    assert_eq!(Country::from_code("nz").as_str(), "NZ");
    assert_eq!(Country::from_code("XK").as_str(), "XK");
    // Not a code, or not one of ours.
    for text in ["", "N", "NZL", "ZZ", "1A", "\u{e9}"] {
        assert_eq!(Country::from_code(text), Country::UNKNOWN, "{text:?}");
    }
    assert_eq!(Country::UNKNOWN.as_str(), "unknown");
    assert_eq!(Country::NONE.as_str(), "unknown");
    assert!(!Country::NONE.looked_up() && Country::UNKNOWN.looked_up());
    assert_eq!(Country::from_index(Country::COUNT), Country::UNKNOWN);
}

#[test]
fn the_counters_add_up_by_country() {
    let traps = TrapsByCountry::default();
    let nz = Country::from_code("NZ");
    traps.trapped(nz, 10);
    traps.dripped(nz, 34, 10_000);
    traps.trapped(Country::UNKNOWN, 0);
    traps.released(nz);
    let mut sum = vec![CountryFigures::default(); COUNTRIES];
    traps.add_to(&mut sum);
    traps.add_to(&mut sum);
    assert_eq!(
        sum[nz.index()],
        CountryFigures {
            now: 0,
            trapped: 2,
            dripped: 88,
            trapped_ms: 20_000
        }
    );
    assert_eq!(sum[Country::UNKNOWN.index()].now, 2);
}
