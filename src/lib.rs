//! invpn: the library behind `invpnd`, a decentralized layer-2 mesh VPN
//! daemon wire-compatible with invpn 0.4.
//!
//! * [`core`]: the sans-IO protocol (codec, routes, de-duplication, health).
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod control;
pub mod core;
pub mod ctl;
pub mod daemon;
pub mod fuzz;
pub mod logging;
pub mod pki;
pub mod sim;
pub mod sys;
pub mod tls;
