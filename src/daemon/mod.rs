//! The daemon (`capstan run`): the two loops, the HTTP server, leader election.

pub mod leader;
