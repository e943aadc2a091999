//! Test support for the registry watcher: a real CNCF Distribution registry
//! (Debian's `docker-registry`, v2.8) started per test on a free loopback port,
//! with the pieces around it that the tests need — a token issuer, a
//! notification receiver, a fault-injecting and a paging proxy, certificates,
//! and helpers that push images through the registry's HTTP API.
//!
//! Test crates include it with `#[path = "registry_support/mod.rs"] mod support;`.
#![allow(dead_code)] // not every test crate uses every helper

pub mod http;
pub mod pki;
pub mod proxy;
pub mod push;
pub mod registry;
pub mod token;

use std::time::Duration;

use capstan::registry::limits::RetryPolicy;
use capstan::registry::transport::{ClientOptions, RegistrySettings};

/// Client options for tests: short timeouts and backoffs so failure paths run
/// in well under a second, and no "registry down" cool-down unless asked for.
pub fn fast_options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
        },
        down_cooldown: Duration::ZERO,
        ..ClientOptions::default()
    }
}

/// Plain-HTTP anonymous settings for a loopback registry (or proxy) `host`.
pub fn plain(host: &str) -> RegistrySettings {
    RegistrySettings {
        insecure: true,
        requests_per_minute: 100_000,
        concurrency: 16,
        ..RegistrySettings::anonymous(host)
    }
}
