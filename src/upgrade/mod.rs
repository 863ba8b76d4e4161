//! SIGUSR2: replace the running binary without refusing or resetting a connection.
//!
//! The running process starts the file at the path it was started from, with the same
//! arguments and environment, and hands it its listening sockets (and the metrics
//! endpoint's) by the `LISTEN_FDS` protocol greeter already serves systemd's sockets
//! by: each at fd 3 and up, named in `LISTEN_FDNAMES` (`metrics`, and for a listening
//! socket what tells which listener it is: `crate::listen_fds::fd_name`), with
//! `LISTEN_PID` naming the new process (a `/bin/sh -c '... exec'` sets it to its own
//! pid, which the exec keeps). One more descriptor, named `upgrade-report`, is one end
//! of a socket pair: the new process writes `ready` on it as soon as its workers run,
//! before anything that can block (the pid file, systemd, stdout), or `failed: LINE`
//! with its one-line error. Until then the old process serves as before; on `ready`
//! it drains as on SIGTERM. The listening sockets are the same sockets in both
//! processes, so connections queued in the backlog meanwhile are accepted by
//! whichever accepts first, and none is refused.
//!
//! A new process that does not serve is never killed outright, since it may hold
//! connections it accepted: it gets SIGTERM (a greeter drains; one from the process
//! that started it does not count as a stop signal, see
//! [`Request::Withdraw`](crate::supervisor::Request::Withdraw)), and SIGKILL only if
//! it is still there `--drain-timeout` (and a second) later. That is how one that does
//! not report within `--upgrade-timeout` ends, and one whose old process is asked to
//! stop: a stop during an upgrade stops the new process too, and the old process
//! exits only once it is gone, so that a stop never leaves a second server behind.
//!
//! Once the new process has said `ready`, the old one hands it its trapped clients
//! (`--tarpit`) over the same channel before it drains (`handover`): each worker
//! sends its trapped connections' sockets with a record of each trap, then forgets
//! them (a plain `close()` of its descriptor: no `shutdown()`, no `CLOSE` line), and
//! the new process adopts them into its workers, dripping on from where the old one
//! left off. Nothing is handed before `ready`: a failed upgrade leaves them where
//! they are.
//!
//! Its rooms: `command` is what to start and whether it can start here; `report` the
//! new process's side (the report channel); `upgrader` the old process's (start,
//! await the report, stop one that does not serve); `handover` the trapped
//! connections' records and the messages that carry them.

mod command;
pub mod handover;
mod report;
mod upgrader;

pub use command::{refusal, UpgradeCommand, SHELL};
pub use report::Report;
pub use upgrader::{Outcome, Upgrader};
