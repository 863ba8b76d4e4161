//! Tiny MaxMind DB files for the `--geoip-db` tests, built with `mmdb-writer` (no
//! database is shipped or downloaded): a country database whose networks each name
//! one ISO code, and an ASN database, whose records hold no country.
#![allow(dead_code)] // each test binary uses a different part of this module

use ipnet::IpNet;
use mmdb_writer::{Value, Writer};

/// A country database of type `database_type` (an IPv6 tree, IPv4 networks under
/// `::/96` as MaxMind's are) placing each network of `entries` in its country:
/// `("127.0.0.0/8", "NZ")`.
pub fn country_db(database_type: &str, entries: &[(&str, &str)]) -> Vec<u8> {
    let mut writer = Writer::new(database_type);
    for (network, code) in entries {
        let network: IpNet = network.parse().expect("a CIDR block");
        let country = Value::map([("iso_code", Value::from(*code))]);
        writer
            .insert_value(network, Value::map([("country", country)]))
            .expect("a network the tree takes");
    }
    writer.to_bytes().expect("a database")
}

/// An ASN database (GeoLite2-ASN's shape: a number and an organisation, no
/// country) covering loopback.
pub fn asn_db() -> Vec<u8> {
    let mut writer = Writer::new("GeoLite2-ASN");
    for network in ["127.0.0.0/8", "::1/128"] {
        let network: IpNet = network.parse().unwrap();
        let record = Value::map([
            ("autonomous_system_number", Value::from(64_512u32)),
            ("autonomous_system_organization", Value::from("Example")),
        ]);
        writer.insert_value(network, record).unwrap();
    }
    writer.to_bytes().unwrap()
}
