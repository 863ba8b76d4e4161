//! [`PolicyTable::admit`]'s choice, one case a test: what a client gets, and the bytes
//! it is sent, for every outcome and in the documented order of the checks.

use std::net::SocketAddr;

use super::*;
use crate::access::Sources;
use crate::pass::PassSettings;
use crate::rate::parse_rate;
use crate::tarpit::{DripSettings, Tarpit};

const CLIENT: &str = "192.0.2.7:4000";

fn client() -> SocketAddr {
    CLIENT.parse().unwrap()
}

/// The server's limits as a test sets them: an address that holds its share, and
/// whether the greet delays are full.
#[derive(Default)]
struct Limits {
    full_address: Option<IpAddr>,
    delays_full: bool,
}

impl ServerLimits for Limits {
    fn admits_client(&self, client: SocketAddr) -> bool {
        self.full_address != Some(client.ip())
    }

    fn delay_full(&self) -> bool {
        self.delays_full
    }

    fn admits_trapped(&self, client: SocketAddr) -> bool {
        self.full_address != Some(client.ip())
    }
}

/// A listener that denies 192.0.2.0/24.
fn denying() -> Arc<AccessList> {
    Arc::new(
        AccessList::load(Sources {
            allow: &[],
            deny: &["192.0.2.0/24".to_owned()],
            allow_files: &[],
            deny_files: &[],
        })
        .unwrap(),
    )
}

fn rate(text: &str) -> Option<Arc<RateTable>> {
    Some(Arc::new(RateTable::new(RateSettings {
        rate: parse_rate(text).unwrap(),
        prefix_v4: 32,
        prefix_v6: 64,
        table_size: 100,
    })))
}

fn pass_table() -> Option<Arc<PassTable>> {
    Some(Arc::new(PassTable::new(PassSettings {
        ttl: Duration::from_secs(60),
        prefix_v4: 32,
        prefix_v6: 64,
        table_size: 100,
    })))
}

/// A one-listener table greeting `hello` under `policy`.
fn table(policy: Option<Policy>) -> PolicyTable {
    PolicyTable::new([Served {
        greeting: Greeting::from("hello"),
        policy: policy.map(Arc::new),
        tarpit: None,
        trap: None,
        drip: DripSettings::default(),
    }])
}

/// What the table's one listener gives the client now, under `limits`: the verdict
/// and the bytes it is sent.
fn admit_with(table: &PolicyTable, limits: &Limits) -> (Verdict, Vec<u8>) {
    let admission = table.admit(0, table.greeting(0), client(), Instant::now(), limits);
    (admission.verdict, admission.greeting.to_vec())
}

fn admit(table: &PolicyTable) -> (Verdict, Vec<u8>) {
    admit_with(table, &Limits::default())
}

#[test]
fn an_open_listener_greets_everyone_at_once() {
    assert_eq!(admit(&table(None)), (Verdict::Greet, b"hello".to_vec()));
}

#[test]
fn a_denied_client_gets_nothing_without_a_deny_message() {
    let policy = Policy {
        list: denying(),
        ..Policy::default()
    };
    let refused = (Verdict::Refuse(CloseReason::Denied), b"hello".to_vec());
    assert_eq!(admit(&table(Some(policy))), refused);
}

#[test]
fn a_denied_client_is_sent_the_deny_message_instead_of_the_greeting() {
    let policy = Policy {
        list: denying(),
        deny_message: Some(Greeting::from("go away")),
        ..Policy::default()
    };
    let denied = (Verdict::DenyMessage, b"go away".to_vec());
    assert_eq!(admit(&table(Some(policy))), denied);
}

#[test]
fn a_source_over_its_rate_is_refused() {
    let table = table(Some(Policy {
        rate: rate("1/h"),
        ..Policy::default()
    }));
    assert_eq!(admit(&table).0, Verdict::Greet, "its burst of one");
    assert_eq!(admit(&table).0, Verdict::Refuse(CloseReason::Rate));
}

#[test]
fn the_list_is_checked_before_the_rate() {
    let table = table(Some(Policy {
        list: denying(),
        rate: rate("1/h"),
        ..Policy::default()
    }));
    for _ in 0..3 {
        assert_eq!(admit(&table).0, Verdict::Refuse(CloseReason::Denied));
    }
}

#[test]
fn an_address_holding_its_share_is_refused() {
    let table = table(None);
    let full = Limits {
        full_address: Some(client().ip()),
        ..Limits::default()
    };
    let refused = Verdict::Refuse(CloseReason::PerIpLimit);
    assert_eq!(admit_with(&table, &full).0, refused);
}

#[test]
fn a_delayed_listener_delays_its_clients_with_its_pregreet_action() {
    for pregreet in [Pregreet::Greet, Pregreet::Drop] {
        let table = table(Some(Policy {
            greet_delay: Duration::from_secs(5),
            pregreet,
            ..Policy::default()
        }));
        let delayed = (Verdict::Delay(pregreet), b"hello".to_vec());
        assert_eq!(admit(&table), delayed);
    }
}

#[test]
fn a_delay_beyond_max_delayed_is_refused() {
    let table = table(Some(Policy {
        greet_delay: Duration::from_secs(5),
        ..Policy::default()
    }));
    let full = Limits {
        delays_full: true,
        ..Limits::default()
    };
    let refused = Verdict::Refuse(CloseReason::DelayFull);
    assert_eq!(admit_with(&table, &full).0, refused);
}

#[test]
fn the_server_limits_come_after_the_list_and_the_rate() {
    let table = table(Some(Policy {
        list: denying(),
        greet_delay: Duration::from_secs(5),
        ..Policy::default()
    }));
    let full = Limits {
        full_address: Some(client().ip()),
        delays_full: true,
    };
    let denied = Verdict::Refuse(CloseReason::Denied);
    assert_eq!(admit_with(&table, &full).0, denied);
}

#[test]
fn a_passed_source_skips_its_delay_and_is_counted() {
    let table = table(Some(Policy {
        greet_delay: Duration::from_secs(5),
        pass: pass_table(),
        ..Policy::default()
    }));
    assert_eq!(admit(&table).0, Verdict::Delay(Pregreet::Greet));
    assert_eq!(table.passed(), 0);
    let pass = table
        .policy(0)
        .and_then(|policy| policy.pass.clone())
        .unwrap();
    pass.pass(client().ip(), Instant::now());
    assert_eq!(admit(&table), (Verdict::Greet, b"hello".to_vec()));
    assert_eq!(table.passed(), 1);
}

#[test]
fn a_held_connection_keeps_the_greeting_it_was_accepted_with() {
    let table = table(None);
    let kept = Greeting::from("the greeting before a reload");
    let admission = table.admit(0, &kept, client(), Instant::now(), &Limits::default());
    assert_eq!(admission.verdict, Verdict::Greet);
    assert_eq!(&admission.greeting[..], &kept[..]);
}

#[test]
fn a_tarpit_listener_traps_whom_its_policy_lets_through_and_sends_its_lead() {
    let tarpit = Arc::new(Tarpit {
        drip: crate::tarpit::Drip::Lines,
        lead: Greeting::from("lead"),
        label: "trap".into(),
    });
    let table = PolicyTable::new([Served {
        greeting: Greeting::from("hello"),
        policy: Some(Arc::new(Policy {
            list: denying(),
            ..Policy::default()
        })),
        tarpit: Some(Arc::clone(&tarpit)),
        trap: Some(tarpit),
        drip: DripSettings::default(),
    }]);
    let greeting = Greeting::from("hello");
    let now = Instant::now();
    let client: SocketAddr = "198.51.100.1:4000".parse().expect("address");
    let admission = table.admit(0, &greeting, client, now, &Limits::default());
    assert_eq!(admission.verdict, Verdict::Trap(TrapWhy::Listener));
    assert_eq!(&admission.greeting[..], b"lead");
    let full = Limits {
        full_address: Some(client.ip()),
        ..Limits::default()
    };
    // --max-per-ip and --max-trapped(-per-ip) both refuse it here: the first one
    // checked says.
    let refused = table.admit(0, &greeting, client, now, &full).verdict;
    assert!(matches!(refused, Verdict::Refuse(_)));
    let denied: SocketAddr = "192.0.2.1:4000".parse().expect("address");
    let admission = table.admit(0, &greeting, denied, now, &Limits::default());
    assert_eq!(admission.verdict, Verdict::Refuse(CloseReason::Denied));
}

#[test]
fn a_reload_replaces_the_table_whole() {
    let mut table = table(None);
    table.replace([Served {
        greeting: Greeting::from("new"),
        policy: Some(Arc::new(Policy {
            list: denying(),
            ..Policy::default()
        })),
        tarpit: None,
        trap: None,
        drip: DripSettings::default(),
    }]);
    let refused = (Verdict::Refuse(CloseReason::Denied), b"new".to_vec());
    assert_eq!(admit(&table), refused);
}

/// A one-listener table greeting `hello` under `policy`, its policy's trap leading
/// with `lead`, a tarpit listener if `tarpit`.
fn trapping(policy: Policy, tarpit: bool) -> PolicyTable {
    let trap = Arc::new(Tarpit {
        drip: crate::tarpit::Drip::Lines,
        lead: Greeting::from("lead"),
        label: "trap".into(),
    });
    PolicyTable::new([Served {
        greeting: Greeting::from("hello"),
        policy: Some(Arc::new(policy)),
        tarpit: tarpit.then(|| Arc::clone(&trap)),
        trap: Some(trap),
        drip: DripSettings::default(),
    }])
}

#[test]
fn deny_action_tarpit_traps_a_denied_client_unless_the_tarpit_is_full() {
    let table = trapping(
        Policy {
            list: denying(),
            deny_message: Some(Greeting::from("go away")),
            deny_action: Action::Tarpit,
            ..Policy::default()
        },
        false,
    );
    let trapped = (Verdict::Trap(TrapWhy::Deny), b"lead".to_vec());
    assert_eq!(admit(&table), trapped);
    let full = Limits {
        full_address: Some(client().ip()),
        ..Limits::default()
    };
    let refused = (Verdict::Refuse(CloseReason::TrapFull), b"hello".to_vec());
    assert_eq!(admit_with(&table, &full), refused);
}

#[test]
fn rate_action_tarpit_traps_a_client_over_its_rate() {
    let table = trapping(
        Policy {
            rate: rate("1/m"),
            rate_action: Action::Tarpit,
            ..Policy::default()
        },
        false,
    );
    assert_eq!(admit(&table).0, Verdict::Greet);
    assert_eq!(
        admit(&table),
        (Verdict::Trap(TrapWhy::Rate), b"lead".to_vec())
    );
}

#[test]
fn pregreet_tarpit_is_the_delays_action() {
    let table = trapping(
        Policy {
            greet_delay: Duration::from_secs(1),
            pregreet: Pregreet::Tarpit,
            ..Policy::default()
        },
        false,
    );
    assert_eq!(admit(&table).0, Verdict::Delay(Pregreet::Tarpit));
}

#[test]
fn an_allowed_address_is_never_trapped_on_a_tarpit_listener() {
    let list = AccessList::load(Sources {
        allow: &["192.0.2.7".to_owned()],
        deny: &["192.0.2.0/24".to_owned()],
        allow_files: &[],
        deny_files: &[],
    })
    .unwrap();
    let table = trapping(
        Policy {
            list: Arc::new(list),
            deny_action: Action::Tarpit,
            ..Policy::default()
        },
        true,
    );
    assert_eq!(admit(&table), (Verdict::Greet, b"hello".to_vec()));
    let denied: SocketAddr = "192.0.2.8:4000".parse().unwrap();
    let admission = table.admit(
        0,
        table.greeting(0),
        denied,
        Instant::now(),
        &Limits::default(),
    );
    assert_eq!(admission.verdict, Verdict::Trap(TrapWhy::Deny));
}
