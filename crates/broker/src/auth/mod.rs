//! Access control: who may connect (password file, HTTP service, JWT) and what they may do
//! (Mosquitto `acl_file`, JWT claims).

pub mod acl;
pub mod password_file;
mod topic;

pub use acl::AclFile;
pub use password_file::{PasswordFile, hash_argon2id, hash_mosquitto_pbkdf2};

use std::path::PathBuf;

/// A password or ACL file could not be read or parsed. The message names the file and, for
/// syntax errors, the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{origin}:{line}: {message}")]
    Syntax { origin: String, line: usize, message: String },
}
