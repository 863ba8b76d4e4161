//! The server's settings, and the one step that turns them into what the loops run.
//! In the order a value travels: [`flags`] defines every setting as a flag (with the
//! greeting's flags, which `greeter-load` shares), [`keys`] names each in the file
//! and the environment, [`file`](mod@file) reads the TOML config file, the layers put
//! flags over environment over file over defaults, and [`Settings`] holds the result
//! with each listener's typed flags, parsed once, and prints it (`--check-config`).
//! [`build()`] turns settings into the checked [`Config`], at start and at every
//! reload alike: checked and loaded once, so that the event loop never re-validates
//! anything. Value parsers live beside them (the server's own in `values`, those the
//! client shares in [`crate::parse`]).

mod build;
mod error;
pub mod file;
pub mod flags;
pub mod keys;
mod layers;
pub mod listener_id;
mod print;
mod runtime;
pub mod settings;
mod values;

pub use crate::greeting::{read_greeting_file, Greeting, DEFAULT_GREETING, MAX_GREETING_BYTES};
pub use crate::parse::DEFAULT_PORT;
pub use build::build;
pub use error::SettingsError;
pub use flags::{GreetingArgs, ServerArgs, ServerCli};
pub use listener_id::ListenerId;
pub use runtime::{Config, ListenerConfig};
pub use settings::{Settings, Source};
