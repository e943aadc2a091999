//! Image policies: which tag of an image should run.
//!
//! A policy file (`policies/*.yaml`, kind `ImagePolicy`) names an image and a rule
//! — a semver range, alphabetical or numerical order — plus optional regex filters.
//! The meaning follows Flux's ImagePolicy so that Flux users can move their
//! policies over; see the README for the side-by-side table.
//!
//! Selection is a pure function ([`select`]) over a list of tags: no network, no
//! clock. It returns a [`Decision`] that accounts for every input tag, so
//! `capstan policy eval --explain` can say why each tag was or was not chosen.

mod file;
mod select;
pub mod semver_range;

pub use file::{
    DigestMode, ImagePolicy, Order, PolicyError, Strategy, TagFilter, load_dir, load_file,
};
pub use select::{Decision, TagVerdict, Verdict, select};
