//! Image references in YAML manifests, and byte-minimal edits of them.
//!
//! Capstan's edits must be the ones a person would make: when a policy chooses
//! a new tag, only the bytes of that tag change; comments, key order,
//! indentation, quoting, line endings and the other documents of a file stay
//! as they are. The parts, each with one job:
//!
//! - [`yaml_index`]: one walk over the parser's events: every scalar's
//!   document, JSON pointer, value, style and byte span; marker comments.
//! - [`marker`]: Flux setter markers `# {"$imagepolicy": "[ns:]name[:tag|:name]"}`.
//! - [`find`]: which scalars a policy governs (markers, kustomization
//!   `images:`, optionally `image:` fields of Pod templates).
//! - [`edit`]: the byte range to replace and with what.
//! - [`verify`]: the edited file must parse to the original value with only
//!   the intended scalars changed (an RFC 6902 patch), or it is not written.
//! - [`write`]: write via a temporary file and `rename`, never half a file.
//! - [`plan`]: all of the above for a file and for a folder.
//!
//! Nothing here knows about Git: the caller points it at a folder.

pub mod diff;
pub mod edit;
pub mod find;
pub mod marker;
pub mod plan;
pub mod reference;
pub mod verify;
pub mod write;
pub mod yaml_index;

pub use plan::{
    Change, ChosenImage, FileOutcome, FilePlan, Options, Plan, Problem, Skip, Wanted, plan_dir,
    plan_text,
};
