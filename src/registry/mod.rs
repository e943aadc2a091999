//! The registry watcher: which tags exist for an image, their digests, and the
//! creation time and OCI labels of the ones that matter.
//!
//! It speaks the OCI Distribution API (the Docker Registry HTTP API v2) with a
//! small client of its own on top of `reqwest`, because the watcher must see and
//! steer every request: `Link` headers for pagination, `Docker-Content-Digest` on
//! `HEAD`, a request budget per registry, `Retry-After`, size caps on bodies. The
//! parts, each with one job:
//!
//! - [`reference`]: Docker-style image references (`nginx` is
//!   `docker.io/library/nginx`, served by `registry-1.docker.io`).
//! - [`auth`]: credentials (anonymous, basic, docker `config.json` with
//!   credential helpers) and the bearer-token realm flow with a token cache.
//! - [`limits`]: request budget, concurrency, retry with backoff, body caps.
//! - [`transport`]: sends one logical request through limits, auth and retries.
//! - [`client`]: the Distribution API: tags, manifests, config blobs.
//! - [`scan`]: a policy in, a [`Decision`](crate::policy::Decision) out; a
//!   registry that is down makes its images stale without blocking the others.
//! - [`webhook`]: push notifications from Distribution, Docker Hub, Harbor and
//!   GitHub, reduced to "repository X has a new tag Y".
//!
//! Nothing here knows about Git or manifests files.

pub mod auth;
pub mod client;
mod error;
pub mod limits;
pub mod reference;
pub mod scan;
pub mod transport;
pub mod webhook;

pub use client::{ImageInfo, Manifest, ManifestRef, RegistryClient};
pub use error::{Error, ErrorKind};
pub use reference::{ImageRef, ReferenceError};
pub use scan::{Outcome, ScanOptions, ScanResult, Scanned, Scanner};
pub use webhook::PushEvent;
