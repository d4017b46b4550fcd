//! api: the local HTTP + JSON API on a Unix socket (and, when configured,
//! TCP), and the client the `vigil` CLI uses to talk to it.
//!
//! Public face: [`ApiServer`] with its [`ApiContext`], the listeners in
//! [`listener`], and [`client`].

pub mod cli;
pub mod client;
mod context;
pub mod http;
pub mod listener;
mod metrics;
mod routes;
mod server;
mod sse;

pub use context::ApiContext;
pub use server::{ApiServer, MAX_CONNECTIONS};
