//! The one step from settings to what the loops run: [`build`] turns [`Settings`]
//! into the checked [`Config`], each listener with its greeting loaded and its access
//! policy built (lists read, rate and pass tables made or kept). Start-up and every
//! reload take this same step, so that a reload checks and loads exactly what a start
//! does; a reload keeps what needs new sockets, and the tables whose settings did not
//! change.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use crate::access::{AccessList, Sources};
use crate::admission::{Action, Policy, Pregreet};
use crate::config::error::SettingsError;
use crate::config::flags::{GreetingArgs, ServerArgs};
use crate::config::listener_id::{self, ListenerId};
use crate::config::runtime::{Config, ListenerConfig};
use crate::config::settings::Settings;
use crate::error::{bare_or_quoted, Failure};
use crate::geoip::GeoIp;
use crate::greeting::{read_greeting_file, Greeting, DEFAULT_GREETING};
use crate::parse::unbracket;
use crate::pass::{PassSettings, PassTable};
use crate::rate::{RateSettings, RateTable};
use crate::tarpit::{Drip, DripSettings, Tarpit};

/// What the loops run, from `settings`: at start (`running`: `None`) every listener
/// built, its hosts resolved; at a reload (`running`: the config the workers run now)
/// the running listeners, each taking what a reload may change (its greeting and its
/// policy) from the table that is the same listener (by name, else by hosts and port:
/// [`ListenerId`]), never the one at its position. One whose table is gone keeps its
/// last settings, and a new table waits for a restart
/// ([`Settings::restart_only_changes`] names both). Then, for both, the limits,
/// timeouts and logging of the top level.
///
/// # Errors
/// A [`Failure`] naming the host, greeting or list file that cannot be used, or two
/// tables that are one running listener.
pub fn build(settings: &Settings, running: Option<&Config>) -> Result<Config, Failure> {
    let mut policies = Policies::default();
    let mut config = match running {
        None => start(settings, &mut policies)?,
        Some(running) => reload(settings, running, &mut policies)?,
    };
    apply_reloadable(settings.server_args(), &mut config);
    // Read again at each reload, as the lists are: a database replaced by rename.
    config.geoip = match &settings.server_args().geoip_db {
        Some(path) => Some(Arc::new(GeoIp::open(path)?)),
        None => None,
    };
    Ok(config)
}

/// Every listener of `settings`, built: its hosts resolved, and what it serves.
fn start(settings: &Settings, policies: &mut Policies) -> Result<Config, Failure> {
    let args = settings.listener_args();
    let mut listeners = Vec::with_capacity(args.len());
    for (args, id) in args.iter().zip(settings.listener_ids()) {
        let Loaded { greeting, policy } = policies.served(args, None)?;
        let addrs = resolve_hosts(&args.host, args.port)?;
        let tarpit = args.tarpit(&greeting, &id, &addrs)?;
        let trap = args.trap(tarpit.as_ref(), &greeting, &id, &addrs);
        listeners.push(ListenerConfig {
            id,
            addrs,
            greeting,
            proxy_protocol: args.proxy_protocol,
            policy,
            tarpit,
            trap,
            drip: args.drip_settings(),
        });
    }
    // Settings always have a listener, and a listener an address.
    let Some(&first) = listeners.first().and_then(|first| first.addrs.first()) else {
        return Err(SettingsError("no listener".into()).into_failure());
    };
    let top = settings.server_args();
    let mut config = Config::new(first);
    config.listeners = listeners;
    config.backlog = top.backlog as i32;
    config.send_buffer = top.send_buffer;
    Ok(config)
}

/// `running`, each of its listeners serving what the same listener's table in
/// `settings` gives (one whose table is gone: what it served).
fn reload(
    settings: &Settings,
    running: &Config,
    policies: &mut Policies,
) -> Result<Config, Failure> {
    let mut next = running.clone();
    let running_ids: Vec<ListenerId> = running.listeners.iter().map(|l| l.id.clone()).collect();
    let matched = listener_id::match_tables(&running_ids, &settings.listener_ids())
        .map_err(|cause| SettingsError(cause).into_failure())?;
    for (listener, table) in next.listeners.iter_mut().zip(matched) {
        // Gone: it keeps its last settings.
        let Some(index) = table else { continue };
        let args = &settings.listener_args()[index];
        let Loaded { greeting, policy } = policies.served(args, listener.policy.as_deref())?;
        listener.tarpit = args.tarpit(&greeting, &listener.id, &listener.addrs)?;
        listener.trap = args.trap(
            listener.tarpit.as_ref(),
            &greeting,
            &listener.id,
            &listener.addrs,
        );
        listener.drip = args.drip_settings();
        listener.greeting = greeting;
        listener.policy = policy;
    }
    Ok(next)
}

/// The two parts of a listener the build step loads (reading files), the same way at
/// start and at a reload; the loop's row of them (`admission::Served`) adds what the
/// config holds as it is.
struct Loaded {
    /// The greeting, loaded.
    greeting: Greeting,
    /// Who is greeted, and how (`None`: everyone, at once).
    policy: Option<Arc<Policy>>,
}

/// Sets in `config` what a reload may change besides the listeners' greetings and
/// policies: the limits, timeouts and logging the top-level `args` give.
fn apply_reloadable(args: &ServerArgs, config: &mut Config) {
    config.max_connections = args.max_connections as usize;
    // As postscreen's pre-queue limit defaults to the process limit of the
    // smtpd processes it hands clients to.
    config.max_delayed = args.max_delayed.unwrap_or(args.max_connections) as usize;
    config.max_per_ip = args.max_per_ip;
    config.write_timeout = args.write_timeout;
    config.linger_timeout = args.linger_timeout;
    config.drain_timeout = args.drain_timeout;
    config.proxy_timeout = args.proxy_timeout;
    config.max_trapped = args.max_trapped as usize;
    config.max_trapped_per_ip = args.max_trapped_per_ip;
    config.trap_timeout = args.trap_timeout;
    config.connection_log_level = if args.log_connections {
        log::Level::Info
    } else {
        log::Level::Debug
    };
}

/// The parts of access policies built so far that listeners share: the lists, by
/// what they are built from (listeners that inherit the same lists, a 500,000-entry
/// deny file say, share one table instead of each reading and building its own), and
/// the rate table of each `rate-group`. Any other rate table is its listener's own: a
/// source's rate on one port says nothing of its rate on another.
#[derive(Default)]
struct Policies {
    lists: Vec<(ListInputs, Arc<AccessList>)>,
    rate_groups: Vec<(String, Arc<RateTable>)>,
}

/// What an access list is built from.
#[derive(PartialEq)]
struct ListInputs {
    allow: Vec<String>,
    deny: Vec<String>,
    allow_files: Vec<PathBuf>,
    deny_files: Vec<PathBuf>,
}

impl Policies {
    /// What the listener of `args` serves: its policy (see [`Policies::get`]; `running`
    /// is the policy it replaces, at a reload) and its greeting.
    fn served(&mut self, args: &ServerArgs, running: Option<&Policy>) -> Result<Loaded, Failure> {
        let policy = self.get(args, running)?;
        Ok(Loaded {
            greeting: args.greeting.load()?,
            policy,
        })
    }

    /// The policy of `args`: its lists shared with listeners that name the same, its
    /// rate table its group's, else the one of `running` (the policy it replaces, at a
    /// reload) if its settings are the same, else a new one; its pass table its own,
    /// kept from `running` in the same way.
    fn get(
        &mut self,
        args: &ServerArgs,
        running: Option<&Policy>,
    ) -> Result<Option<Arc<Policy>>, Failure> {
        let inputs = ListInputs {
            allow: args.allow.clone(),
            deny: args.deny.clone(),
            allow_files: args.allow_file.clone(),
            deny_files: args.deny_file.clone(),
        };
        let list = match self.lists.iter().find(|(built, _)| *built == inputs) {
            Some((_, list)) => Arc::clone(list),
            None => {
                let list = Arc::new(args.access_list(running.map(|policy| &*policy.list))?);
                self.lists.push((inputs, Arc::clone(&list)));
                list
            }
        };
        let rate = args.rate_settings().map(|settings| {
            let group = args.rate_group.as_ref().and_then(|group| {
                let found = self.rate_groups.iter().find(|(name, _)| name == group);
                found.map(|(_, table)| Arc::clone(table))
            });
            // A group's listeners have the same settings (checked with the settings).
            group.unwrap_or_else(|| {
                let table = running
                    .and_then(|policy| policy.rate_table_if(&settings))
                    .unwrap_or_else(|| Arc::new(RateTable::new(settings)));
                if let Some(group) = &args.rate_group {
                    self.rate_groups.push((group.clone(), Arc::clone(&table)));
                }
                table
            })
        });
        Ok(args.policy_with(list, rate, args.pass_table(running)))
    }
}

/// How a listener known as `id`, listening on `addrs`, is named in its `TRAP` lines:
/// its name, or its first address.
fn trap_label(id: &ListenerId, addrs: &[SocketAddr]) -> Arc<str> {
    match (&id.name, addrs.first()) {
        (Some(name), _) => name.as_str().into(),
        (None, Some(addr)) => addr.to_string().into(),
        (None, None) => "".into(),
    }
}

impl ServerArgs {
    /// The trap of a `--tarpit` listener with these flags (`None`: it greets), its
    /// greeting `greeting`, known as `id` and listening on `addrs`.
    ///
    /// # Errors
    /// With `--drip lines`, a greeting (from `--message-file`: `--message` is checked
    /// with the settings) that starts with `SSH-`: it would end the trap.
    fn tarpit(
        &self,
        greeting: &Greeting,
        id: &ListenerId,
        addrs: &[SocketAddr],
    ) -> Result<Option<Arc<Tarpit>>, Failure> {
        if !self.tarpit {
            return Ok(None);
        }
        let lead = match self.drip {
            Drip::Greeting => greeting.clone(),
            Drip::Lines
                if self.greeting.message.is_some() || self.greeting.message_file.is_some() =>
            {
                if let Some(problem) = crate::tarpit::lead_problem(greeting) {
                    return Err(SettingsError(format!(
                        "the greeting of the --tarpit listener {} with --drip lines {problem} \
                         (give another greeting, or --drip greeting)",
                        id.describe()
                    ))
                    .into_failure());
                }
                greeting.clone()
            }
            Drip::Lines => Greeting::from(Vec::new()),
        };
        Ok(Some(Arc::new(Tarpit {
            drip: self.drip,
            lead,
            label: trap_label(id, addrs),
        })))
    }

    /// The trap of the clients these flags' policy traps (`--deny-action tarpit`,
    /// `--rate-action tarpit`, `--pregreet tarpit`; `None`: it traps no one): a
    /// tarpit listener's own (`tarpit`), always; else, with `--drip lines`, nothing before
    /// the lines (the listener's greeting is its service's, which a trapped client is
    /// not to see), with `--drip greeting`, the greeting.
    fn trap(
        &self,
        tarpit: Option<&Arc<Tarpit>>,
        greeting: &Greeting,
        id: &ListenerId,
        addrs: &[SocketAddr],
    ) -> Option<Arc<Tarpit>> {
        if let Some(tarpit) = tarpit {
            return Some(Arc::clone(tarpit));
        }
        let traps = self.deny_action == Action::Tarpit
            || self.rate_action == Action::Tarpit
            || self.pregreet == Pregreet::Tarpit;
        if !traps {
            return None;
        }
        let lead = match self.drip {
            Drip::Greeting => greeting.clone(),
            Drip::Lines => Greeting::from(Vec::new()),
        };
        Some(Arc::new(Tarpit {
            drip: self.drip,
            lead,
            label: trap_label(id, addrs),
        }))
    }

    /// How these flags drip trapped clients.
    fn drip_settings(&self) -> DripSettings {
        DripSettings {
            interval: self.drip_interval,
            line_length: self.drip_line_length,
            bytes: self.drip_bytes,
        }
    }

    /// The greet delay's pass table these flags give, if any: the one of `running`
    /// (the policy it replaces, at a reload) if its settings are the same, so that a
    /// reload keeps who passed; else a new one. Each listener has its own.
    fn pass_table(&self, running: Option<&Policy>) -> Option<Arc<PassTable>> {
        self.pass_settings().map(|settings| {
            running
                .and_then(|policy| policy.pass_table_if(&settings))
                .unwrap_or_else(|| Arc::new(PassTable::new(settings)))
        })
    }

    /// The access lists these flags name (`--allow`, `--deny` and their files), read
    /// and built, replacing `running` at a reload (see [`AccessList::reload`]).
    ///
    /// # Errors
    /// A [`Failure`] naming the list file, and its line, that cannot be used.
    fn access_list(&self, running: Option<&AccessList>) -> Result<AccessList, Failure> {
        AccessList::reload(
            Sources {
                allow: &self.allow,
                deny: &self.deny,
                allow_files: &self.allow_file,
                deny_files: &self.deny_file,
            },
            running,
        )
    }

    /// The access policy of these flags with its list, rate table and pass table
    /// already built (`None` if it would change nothing).
    fn policy_with(
        &self,
        list: Arc<AccessList>,
        rate: Option<Arc<RateTable>>,
        pass: Option<Arc<PassTable>>,
    ) -> Option<Arc<Policy>> {
        let policy = Policy {
            list,
            deny_message: self
                .deny_message
                .as_ref()
                .map(|text| Greeting::from(text.as_str())),
            rate,
            greet_delay: self.greet_delay,
            pregreet: self.pregreet,
            deny_action: self.deny_action,
            rate_action: self.rate_action,
            pass,
        };
        (!policy.is_open()).then(|| Arc::new(policy))
    }

    /// What `--max-rate-per-ip`'s table is made of, if it is set.
    pub(super) fn rate_settings(&self) -> Option<RateSettings> {
        self.max_rate_per_ip.map(|rate| RateSettings {
            rate,
            prefix_v4: self.rate_prefix_v4,
            prefix_v6: self.rate_prefix_v6,
            table_size: self.rate_table_size,
        })
    }

    /// What the greet delay's pass table is made of, if there is one: with a
    /// `--greet-delay` and a `--pass-ttl` above zero.
    fn pass_settings(&self) -> Option<PassSettings> {
        let delayed = !self.greet_delay.is_zero() && !self.pass_ttl.is_zero();
        delayed.then_some(PassSettings {
            ttl: self.pass_ttl,
            prefix_v4: self.rate_prefix_v4,
            prefix_v6: self.rate_prefix_v6,
            table_size: self.pass_table_size,
        })
    }
}

impl GreetingArgs {
    /// Loads the greeting once: the file's bytes, the text's, or the default.
    ///
    /// # Errors
    /// A [`Failure`] naming the file and the cause when it cannot be read, or
    /// saying that the greeting is empty.
    pub fn load(&self) -> Result<Greeting, Failure> {
        let greeting = match (&self.message_file, &self.message) {
            (Some(path), _) => read_greeting_file(path)?,
            (None, Some(text)) => Greeting::from(text.as_str()),
            (None, None) => Greeting::from(DEFAULT_GREETING),
        };
        if greeting.is_empty() {
            let what = match &self.message_file {
                Some(path) => format!("greeting file {}", path.display()),
                None => "--message".to_owned(),
            };
            return Err(Failure::new(
                format!("cannot use {what}"),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "the greeting is empty"),
                Some("give a non-empty greeting"),
            ));
        }
        Ok(greeting)
    }
}

/// The addresses to listen on: every `--host`, in order, a name resolved to every
/// address it has (duplicates dropped).
///
/// # Errors
/// A [`Failure`] naming the host when it does not resolve, resolves to nothing,
/// or is a multicast or broadcast address.
fn resolve_hosts(hosts: &[String], port: u16) -> Result<Vec<SocketAddr>, Failure> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for host in hosts {
        let name = unbracket(host);
        // As the error names it: a config file's value may be anything.
        let shown = bare_or_quoted(host);
        let resolved: Vec<SocketAddr> = match name.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => (name, port)
                .to_socket_addrs()
                .map_err(|err| {
                    Failure::new(
                        format!("cannot resolve --host {shown}"),
                        err,
                        Some("give a name this host can resolve, or an address"),
                    )
                })?
                .collect(),
        };
        if resolved.is_empty() {
            return Err(Failure::new(
                format!("cannot resolve --host {shown}"),
                io::Error::new(io::ErrorKind::NotFound, "it has no IPv4 or IPv6 address"),
                Some("give a name this host can resolve, or an address"),
            ));
        }
        for addr in resolved {
            if addr.ip().is_multicast() || addr.ip() == IpAddr::V4(Ipv4Addr::BROADCAST) {
                return Err(Failure::new(
                    format!("cannot listen on {addr} (--host {host})"),
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a multicast or broadcast address cannot accept connections",
                    ),
                    Some("give --host a unicast address, such as 127.0.0.1, 0.0.0.0 or ::"),
                ));
            }
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests;
