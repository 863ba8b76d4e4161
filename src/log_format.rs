//! `--log-format`: the log lines as `env_logger` writes them (`text`, the documented
//! default, unchanged), or one JSON object a line (`json`) for log shippers (Vector,
//! Loki, an abuse reporter): `ts`, `level`, `target`, `msg`, and the fields the
//! connection lines carry as typed keys (`event`, `peer`, `bytes`, `ms`, `reason`,
//! `input`, `first`, ...). The fields come from the log record's key-values, which
//! the `ACCEPT`, `CLOSE` and `PREGREET` lines set beside their text (`close.rs`), so
//! nothing is parsed back out of a message.

use std::io::{self, Write};

use log::kv::{Error, Key, Value, VisitSource};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `[2026-12-02T10:56:20Z INFO  greeter::connection] CLOSE peer=...`
    #[default]
    Text,
    /// `{"ts":"2026-12-02T10:56:20Z","level":"INFO","target":"...","msg":"...",...}`
    Json,
}

/// Writes `record` as one JSON object and a newline; `timestamp` is the time as
/// the text format writes it (RFC 3339, UTC, seconds).
pub fn write_json(
    out: &mut impl Write,
    timestamp: &dyn std::fmt::Display,
    record: &log::Record<'_>,
) -> io::Result<()> {
    let mut object = serde_json::Map::new();
    object.insert("ts".into(), timestamp.to_string().into());
    object.insert("level".into(), record.level().as_str().into());
    object.insert("target".into(), record.target().into());
    object.insert("msg".into(), record.args().to_string().into());
    let mut fields = Fields(&mut object);
    // A visitor that only inserts cannot fail.
    let _ = record.key_values().visit(&mut fields);
    writeln!(out, "{}", serde_json::Value::Object(object))
}

/// Copies a record's key-values into the object: numbers as numbers, the rest as
/// strings.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), Error> {
        let json = match (value.to_u64(), value.to_i64()) {
            (Some(number), _) => number.into(),
            (None, Some(number)) => number.into(),
            (None, None) => value.to_string().into(),
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_becomes_one_object_with_typed_fields() {
        let peer: std::net::SocketAddr = "[::1]:40000".parse().unwrap();
        let fields: [(&str, Value<'_>); 3] = [
            ("peer", Value::from_display(&peer)),
            ("bytes", Value::from(38u64)),
            ("reason", Value::from("greeted")),
        ];
        let args = format_args!("CLOSE \"quoted\"");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("greeter::connection")
            .key_values(&fields)
            .build();
        let mut out = Vec::new();
        write_json(&mut out, &"2026-12-02T10:56:20Z", &record).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"ts\":\"2026-12-02T10:56:20Z\",\"level\":\"INFO\",\"target\":\"greeter::connection\",\
             \"msg\":\"CLOSE \\\"quoted\\\"\",\"peer\":\"[::1]:40000\",\"bytes\":38,\"reason\":\"greeted\"}\n"
        );
    }
}
