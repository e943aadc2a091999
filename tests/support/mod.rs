//! Shared test support. Each integration test crate declares `mod support;`.
#![allow(dead_code)] // not every test crate uses every helper

pub mod cluster;
pub mod extra_apiserver;
pub mod git_http;
pub mod git_repo;
pub mod gitea;
pub mod ssh_server;
