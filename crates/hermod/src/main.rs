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

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
