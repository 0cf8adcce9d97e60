//! `hermod`: the one binary. `serve` runs the broker; `pub` and `sub` are command-line clients
//! whose flags, output and exit codes follow `mosquitto_pub` / `mosquitto_sub`; `ctl` manages a
//! running broker through its admin API.

mod bench;
mod cli_common;
mod ctl;
mod passwd_cmd;
mod pub_cmd;
mod serve;
mod sub_cmd;
mod tls;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: with its background thread it returns the memory of
/// closed connections to the system (glibc kept a 10,000-connection wave's 145 MB for good);
/// see docs/performance.md for the measurements.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Starts jemalloc's background thread, which purges unused pages after their decay time
/// (10 s) even when no thread allocates (a broker whose connections just closed is quiet).
fn allocator_background_thread() {
    #[cfg(not(target_env = "msvc"))]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("hermod: jemalloc background thread not started: {e}");
    }
}

#[derive(Debug, Parser)]
#[command(name = "hermod", version, about = "Hermod MQTT broker and tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve(serve::ServeArgs),
    /// Publish messages (flags follow mosquitto_pub).
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Pub(pub_cmd::PubArgs),
    /// Subscribe and print messages (flags follow mosquitto_sub).
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Sub(sub_cmd::SubArgs),
    /// Manage a password file (flags follow mosquitto_passwd).
    Passwd(passwd_cmd::PasswdArgs),
    /// Manage a running broker: status, clients, bans, retained messages, admins, reload.
    Ctl(ctl::CtlArgs),
    /// Load generator for any MQTT broker (pairs, fanin, fanout, shared, conn).
    Bench(Box<bench::BenchArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        allocator_background_thread();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code: u8 = match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Pub(args) => runtime.block_on(pub_cmd::run(args)),
        Command::Sub(args) => runtime.block_on(sub_cmd::run(args)),
        Command::Passwd(args) => passwd_cmd::run(args),
        Command::Ctl(args) => runtime.block_on(ctl::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(*args)),
    };
    ExitCode::from(code)
}
