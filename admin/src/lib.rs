//! `els-admin`, the operators' command: management keys, the dead-letter queue and its
//! redrive, and a stream's configuration and health, on a deployment (AWS, found from the
//! functions' environment variables or a stack's outputs) or on `make run`'s local files.
//!
//! One module per subcommand group, each callable without the command line (the tests do);
//! [`cli`] parses the arguments, builds the clients and prints.

pub mod aws_error;
pub mod cli;
pub mod dlq;
pub mod keys;
pub mod resources;
pub mod stream;
