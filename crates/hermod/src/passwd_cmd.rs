//! `hermod passwd`: manage a password file, like `mosquitto_passwd`.
//!
//! ```text
//! hermod passwd [-c] FILE USER              prompt twice (no echo; one stdin line if no tty)
//! hermod passwd [-c] -b FILE USER PASSWORD  batch
//! hermod passwd -D FILE USER                delete USER
//! ```
//! `-c` creates (or overwrites) FILE; `--mosquitto` writes `$7$` PBKDF2-SHA512 lines that
//! Mosquitto can read instead of argon2id. Other lines and comments are kept; the file is
//! replaced atomically (temporary file + rename). Exit code 0 on success, 1 on error.

use hermod_broker::auth::{PasswordFile, hash_argon2id, hash_mosquitto_pbkdf2};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, clap::Args)]
pub(crate) struct PasswdArgs {
    /// Create a new password file; an existing one is overwritten.
    #[arg(short = 'c', conflicts_with = "delete")]
    create: bool,
    /// Delete USER from the file.
    #[arg(short = 'D', conflicts_with = "batch")]
    delete: bool,
    /// Batch mode: take PASSWORD from the command line (visible in the process list).
    #[arg(short = 'b')]
    batch: bool,
    /// Write Mosquitto-compatible `$7$` (PBKDF2-SHA512) hashes instead of argon2id.
    #[arg(long)]
    mosquitto: bool,
    /// The password file.
    file: PathBuf,
    /// The username.
    user: String,
    /// The password (only with -b).
    password: Option<String>,
}

/// Runs the command; returns the process exit code.
pub(crate) fn run(args: PasswdArgs) -> u8 {
    match execute(args) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("{message}");
            1
        }
    }
}

fn execute(args: PasswdArgs) -> Result<(), String> {
    if args.batch != args.password.is_some() {
        return Err(if args.batch {
            "Error: -b needs a password: hermod passwd -b FILE USER PASSWORD".into()
        } else {
            "Error: a password on the command line needs -b".into()
        });
    }
    if args.user.contains(':') {
        return Err("Error: Username must not contain the ':' character.".into());
    }
    if args.user.is_empty() || args.user.len() > 65535 || args.user.contains(['\n', '\r']) {
        return Err("Error: Invalid username.".into());
    }
    let mut file = if args.create {
        PasswordFile::empty()
    } else {
        PasswordFile::load(&args.file).map_err(|e| format!("Error: {e}"))?
    };
    if args.delete {
        if !file.remove(&args.user) {
            return Err(format!(
                "Warning: User {} not found in password file.",
                args.user
            ));
        }
    } else {
        let password = match args.password {
            Some(p) => p,
            None => prompt_password()?,
        };
        if password.is_empty() {
            return Err("Error: Empty password.".into());
        }
        let hash = if args.mosquitto {
            hash_mosquitto_pbkdf2(password.as_bytes())
        } else {
            hash_argon2id(password.as_bytes())
        }
        .map_err(|e| format!("Error: {e}"))?;
        file.set(&args.user, &hash)
            .map_err(|e| format!("Error: {e}"))?;
    }
    write_atomically(&args.file, &file.to_file_string())
}

/// Asks twice on a terminal (echo off via `stty`), or reads one line when stdin is not a tty.
pub(crate) fn prompt_password() -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return read_line().map_err(|e| format!("Error: cannot read password: {e}"));
    }
    let first = read_hidden("Password: ")?;
    let second = read_hidden("Reenter password: ")?;
    if first != second {
        return Err("Error: Passwords do not match.".into());
    }
    Ok(first)
}

fn read_hidden(prompt: &str) -> Result<String, String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let echo_off = EchoOff::new();
    let line = read_line();
    drop(echo_off);
    eprintln!();
    line.map_err(|e| format!("Error: cannot read password: {e}"))
}

fn read_line() -> std::io::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    while line.ends_with(['\n', '\r']) {
        line.pop();
    }
    Ok(line)
}

/// Turns terminal echo off for its lifetime (no new dependency: `stty`, on the inherited
/// stdin). If `stty` is missing the password is read with echo, after a warning.
struct EchoOff {
    active: bool,
}

impl EchoOff {
    fn new() -> Self {
        let ok = stty("-echo");
        if !ok {
            eprint!("(warning: cannot turn off echo) ");
        }
        EchoOff { active: ok }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if self.active {
            stty("echo");
        }
    }
}

fn stty(arg: &str) -> bool {
    Command::new("stty")
        .arg(arg)
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Writes `contents` to a temporary file beside `path` and renames it over `path`, so readers
/// (a broker reloading on SIGHUP) never see a half-written file. Keeps the permissions of an
/// existing file; a new one is readable by its owner only.
fn write_atomically(path: &Path, contents: &str) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        set_permissions(&f, path)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("Error: cannot write {}: {e}", path.display())
    })
}

#[cfg(unix)]
fn set_permissions(f: &std::fs::File, original: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let perms = match std::fs::metadata(original) {
        Ok(m) => m.permissions(),
        Err(_) => std::fs::Permissions::from_mode(0o600),
    };
    f.set_permissions(perms)
}

#[cfg(not(unix))]
fn set_permissions(_f: &std::fs::File, _original: &Path) -> std::io::Result<()> {
    Ok(())
}
