//! Shared harness for the integration tests: the test tree, the server
//! (one suite, parameterised by program), an FTP client, listing parsers
//! and bounded runs of external tools.
//!
//! Each test binary uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod parse;
pub mod port;
#[macro_use]
pub mod server;
pub mod tools;
pub mod tree;

pub use client::{Client, Data, Mode, Reply, Transfer};
pub use server::{FAMILIES, Family, Kind, Opts, Server, is_root, raise_nofile};
pub use tree::Tree;

/// A fresh tree and a server of `kind` serving it with `opts`.
pub fn setup(kind: Kind, opts: Opts) -> (Tree, Server) {
    let tree = Tree::new();
    let server = Server::start(kind, &tree, opts);
    (tree, server)
}
