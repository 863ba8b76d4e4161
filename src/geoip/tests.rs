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
            trapped_ms: 20_000,
            seen: true,
        }
    );
    assert_eq!(sum[Country::UNKNOWN.index()].now, 2);
    // One handed over trapped is seen, though trapped elsewhere.
    let fr = Country::from_code("FR");
    assert!(!sum[fr.index()].seen);
    traps.adopted(fr);
    let mut sum = vec![CountryFigures::default(); COUNTRIES];
    traps.add_to(&mut sum);
    assert_eq!(
        (
            sum[fr.index()].now,
            sum[fr.index()].trapped,
            sum[fr.index()].seen
        ),
        (1, 0, true)
    );
}

/// What one lookup costs: a database of 200,000 IPv4 /24 networks in an IPv6 tree
/// (GeoLite2-Country has about 500,000 networks, IPv4 ones under `::/96` as here),
/// each in one of 250 countries, looked up at addresses in and out of them. Run with
/// `cargo test --release --lib lookup_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn lookup_cost() {
    use std::net::{IpAddr, Ipv4Addr};
    let mut writer = mmdb_writer::Writer::new("GeoLite2-Country");
    let mut rng = fastrand::Rng::with_seed(7);
    let mut placed = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let base = rng.u32(..) & !0xff;
        placed.push(base | rng.u32(..=0xff));
        let network = ipnet::Ipv4Net::new(Ipv4Addr::from(base), 24).unwrap();
        let index = rng.usize(2..Country::COUNT);
        let code = Country::from_index(index).as_str();
        let country = mmdb_writer::Value::map([("iso_code", mmdb_writer::Value::from(code))]);
        writer
            .insert_value(network, mmdb_writer::Value::map([("country", country)]))
            .unwrap();
    }
    let bytes = writer.to_bytes().unwrap();
    let path = std::env::temp_dir().join(format!("greeter-lookup-{}.mmdb", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let geoip = GeoIp::open(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    // Anywhere (most not in the database), then in its networks (a record decoded).
    let anywhere: Vec<IpAddr> = (0..1_000_000)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.u32(..))))
        .collect();
    let inside: Vec<IpAddr> = (0..1_000_000)
        .map(|_| IpAddr::V4(Ipv4Addr::from(placed[rng.usize(..placed.len())])))
        .collect();
    for (what, addresses) in [("anywhere", &anywhere), ("placed", &inside)] {
        let started = std::time::Instant::now();
        let mut found = 0usize;
        for &ip in addresses {
            found += usize::from(geoip.country(ip) != Country::UNKNOWN);
        }
        let took = started.elapsed();
        println!(
            "{} bytes, {} lookups {what} ({found} found): {:.0} ns each",
            bytes.len(),
            addresses.len(),
            took.as_nanos() as f64 / addresses.len() as f64
        );
    }
}

#[test]
fn a_country_goes_through_a_handed_trap_s_record_and_back() {
    for country in [
        Country::NONE,
        Country::UNKNOWN,
        Country::from_code("NZ"),
        Country::from_code("ad"),
    ] {
        assert_eq!(Country::from_record(country.to_record()), country);
    }
    assert_eq!(Country::from_code("NZ").to_record(), *b"NZ");
    assert_eq!(Country::from_record(*b"\xff\xfe"), Country::UNKNOWN);
}
