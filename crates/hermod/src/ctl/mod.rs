//! `hermod ctl`: manage a running broker through its admin API (docs/admin-api.md).
//!
//! By default ctl finds the broker from the same configuration as `hermod serve` (`-c FILE`, or
//! the defaults: store path `hermod-data` in the working directory) and talks to it over the
//! Unix socket `<store path>/hermod.sock`, where no credentials are needed. With `--url` and an
//! API key it talks HTTP(S) to `[admin] bind` instead, from anywhere.
//!
//! - `http` — the HTTP/1.1 client (Unix socket, TCP, TLS) and its one-line errors (TLS from the crate's
//!   `tls`), `query` (percent-encoding);
//! - `table` — aligned tables and key/value lists for people (`--json` prints the API's JSON);
//! - `commands` — status, stats, metrics, clients, subscriptions, topics, retained messages,
//!   shadows, cluster status;
//! - `manage` — bans, admin users, API keys, reload.
//!
//! Exit code 0 on success, 1 on any error (printed as one line on stderr).

mod commands;
mod http;
mod manage;
mod query;
mod table;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use hermod_broker::Config;

use http::Client;

/// The heading of the options every ctl command takes.
const GLOBAL: &str = "Global options";

const AFTER_HELP: &str = "\
Where is the broker?
  Without --url, ctl reads the broker's configuration (-c FILE, as given to `hermod serve`;
  without -c the defaults: store path ./hermod-data) and uses the socket <store path>/hermod.sock,
  as an administrator, without credentials. Run it as the user that runs hermod.
  With --url http(s)://HOST:PORT it talks to `[admin] bind` with an API key (make one with
  `hermod ctl api-keys add NAME` on the broker's host).

Examples:
  hermod ctl status
  hermod ctl -c /etc/hermod/hermod.toml clients list --like sensor
  hermod ctl banned add --clientid evil-device --for 1h --reason 'flooding'
  hermod ctl --url http://10.0.0.5:18083 --api-key KEY:SECRET --json stats";

/// Flags of `hermod ctl`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct CtlArgs {
    /// The broker's configuration file (as for `hermod serve -c`): where its socket is.
    #[arg(short, long, value_name = "FILE", global = true, conflicts_with = "url", help_heading = GLOBAL)]
    config: Option<PathBuf>,
    /// Talk to the admin API over HTTP(S) instead of the socket, e.g. http://127.0.0.1:18083.
    #[arg(long, value_name = "URL", global = true, help_heading = GLOBAL)]
    url: Option<String>,
    /// API key for --url, as KEY:SECRET (default: the HERMOD_API_KEY environment variable).
    #[arg(long, value_name = "KEY:SECRET", global = true, requires = "url", help_heading = GLOBAL)]
    api_key: Option<String>,
    /// PEM file to trust for an https --url: the CA, or the server's self-signed certificate
    /// (default: the system's CA bundle).
    #[arg(long, value_name = "FILE", global = true, requires = "url", help_heading = GLOBAL)]
    cacert: Option<PathBuf>,
    /// Print the API's JSON answer instead of a table (for scripts).
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Is the broker running? Exit 0 and its version, uptime and clients if so, 1 if not.
    Status,
    /// Counts: connections, sessions, subscriptions, topics, retained messages.
    Stats,
    /// Counters: messages and bytes received, sent and dropped, connects, disconnects.
    Metrics,
    /// Clients: list, show one, kick one.
    #[command(subcommand)]
    Clients(ClientsCmd),
    /// Subscriptions of all clients.
    #[command(subcommand)]
    Subscriptions(SubscriptionsCmd),
    /// Subscribed topic filters.
    #[command(subcommand)]
    Topics(TopicsCmd),
    /// Retained messages: list, delete.
    #[command(subcommand)]
    Retained(RetainedCmd),
    /// Banned client ids, usernames and addresses: add, list, delete.
    #[command(subcommand)]
    Banned(BannedCmd),
    /// Users of the dashboard and the admin API: add, change a password, delete, list.
    #[command(subcommand)]
    Admins(AdminsCmd),
    /// API keys for scripts (--url --api-key): add, list, delete.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCmd),
    /// Reload the configuration: password, ACL and TLS files, bans from the file (as SIGHUP).
    Reload,
    /// Device shadows: list the things that have one, print, update or delete one.
    #[command(subcommand)]
    Shadow(ShadowCmd),
    /// The cluster as this node sees it: NATS, JetStream, live nodes, forwarded messages.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

#[derive(Debug, Subcommand)]
enum ClusterCmd {
    /// This node, its NATS connection, JetStream, the live nodes and the message counters
    /// (a single node when the broker has no [cluster] section).
    Status,
}

#[derive(Debug, Subcommand)]
enum ShadowCmd {
    /// List the things with a shadow, their shadows and versions.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Print a thing's shadow document (desired, reported, delta, metadata, version).
    Get {
        /// The thing's name.
        thing: String,
        /// A named shadow (default: the classic shadow).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Update a thing's shadow with an AWS update document, e.g.
    /// '{"state":{"desired":{"on":true}}}'; prints the accepted document.
    Update {
        /// The thing's name.
        thing: String,
        /// The update document (JSON).
        document: String,
        /// A named shadow (default: the classic shadow).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Delete a thing's shadow (its version goes on from where it was if it is created again).
    Delete {
        /// The thing's name.
        thing: String,
        /// A named shadow (default: the classic shadow).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
}

/// `--page` / `--limit` of list commands.
#[derive(Debug, Clone, Copy, Args)]
struct Paging {
    /// Page to show, from 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    page: u32,
    /// Rows per page (at most 10000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
}

#[derive(Debug, Subcommand)]
enum ClientsCmd {
    /// List clients (connected, and disconnected ones whose session is kept).
    List {
        /// Only client ids containing this text.
        #[arg(long, value_name = "TEXT")]
        like: Option<String>,
        /// Only clients with this username.
        #[arg(long, value_name = "USER")]
        username: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Everything about one client, and its subscriptions.
    Show {
        /// The client id.
        id: String,
    },
    /// Disconnect a client (MQTT 5 clients get DISCONNECT 0x98); it may connect again.
    Kick {
        /// The client id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum SubscriptionsCmd {
    /// List subscriptions.
    List {
        /// Only this client's.
        #[arg(long, value_name = "ID")]
        clientid: Option<String>,
        /// Only this filter (exactly as subscribed, e.g. 'sensors/+/temp').
        #[arg(long, value_name = "FILTER")]
        topic: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCmd {
    /// List the distinct topic filters clients subscribe to.
    List {
        #[command(flatten)]
        paging: Paging,
    },
}

#[derive(Debug, Subcommand)]
enum RetainedCmd {
    /// List retained messages, all or those matching FILTER (e.g. 'sensors/#').
    List {
        /// A topic filter.
        filter: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Delete the retained message of TOPIC.
    Delete {
        /// The topic (not a filter).
        topic: String,
    },
}

#[derive(Debug, Subcommand)]
enum BannedCmd {
    /// Ban a client id, a username or an address (or CIDR network): new connections are
    /// refused and connected clients it matches are disconnected.
    #[command(group = clap::ArgGroup::new("who").required(true).multiple(false))]
    Add {
        /// Ban this client id.
        #[arg(long, value_name = "ID", group = "who")]
        clientid: Option<String>,
        /// Ban this username.
        #[arg(long, value_name = "USER", group = "who")]
        username: Option<String>,
        /// Ban this address or network, e.g. 192.0.2.7 or 10.1.0.0/16.
        #[arg(long, value_name = "ADDR", group = "who")]
        peerhost: Option<String>,
        /// Until this time (RFC 3339, e.g. 2027-01-01T00:00:00Z). Default: no end.
        #[arg(long, value_name = "TIME", conflicts_with = "for_")]
        until: Option<String>,
        /// For this long from now: 30m, 1h, 7d, 1w.
        #[arg(long = "for", value_name = "DURATION")]
        for_: Option<String>,
        /// Why (shown in the list).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List bans.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Lift a ban: `banned del clientid ID`, `username USER` or `peerhost ADDR`.
    #[command(alias = "delete")]
    Del {
        /// What WHO is.
        #[arg(value_name = "AS", value_parser = ["clientid", "username", "peerhost", "peerhost_net"])]
        kind: String,
        /// The client id, username or address.
        who: String,
    },
}

#[derive(Debug, Subcommand)]
enum AdminsCmd {
    /// Add a user; the password is read from stdin, or asked twice on a terminal.
    Add {
        /// The username.
        user: String,
        /// `administrator` (everything) or `viewer` (read only).
        #[arg(long, default_value = "administrator", value_parser = ["administrator", "viewer"])]
        role: String,
        /// A note about the user.
        #[arg(long)]
        description: Option<String>,
    },
    /// Set a user's password (read from stdin, or asked twice on a terminal).
    Passwd {
        /// The username.
        user: String,
    },
    /// Delete a user.
    #[command(alias = "delete")]
    Del {
        /// The username.
        user: String,
    },
    /// List users.
    List,
}

#[derive(Debug, Subcommand)]
enum ApiKeysCmd {
    /// Make an API key; its secret is shown once.
    Add {
        /// A name for the key.
        name: String,
        /// `administrator` (everything) or `viewer` (read only).
        #[arg(long, default_value = "administrator", value_parser = ["administrator", "viewer"])]
        role: String,
        /// A note about the key.
        #[arg(long)]
        desc: Option<String>,
    },
    /// List API keys (without their secrets).
    List,
    /// Delete an API key.
    #[command(alias = "delete")]
    Del {
        /// The key's name.
        name: String,
    },
}

/// Runs `hermod ctl`; returns the exit code.
pub(crate) async fn run(args: CtlArgs) -> u8 {
    match execute(args).await {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("Error: {message}");
            1
        }
    }
}

async fn execute(args: CtlArgs) -> Result<(), String> {
    let client = match &args.url {
        Some(url) => {
            let key = args.api_key.clone().or_else(|| {
                std::env::var("HERMOD_API_KEY")
                    .ok()
                    .filter(|k| !k.is_empty())
            });
            Client::url(url, key.as_deref(), args.cacert.as_deref())?
        }
        None => socket_client(args.config.as_deref())?,
    };
    let json = args.json;
    match args.command {
        CtlCommand::Status => commands::status(&client, json).await,
        CtlCommand::Stats => commands::stats(&client, json).await,
        CtlCommand::Metrics => commands::metrics(&client, json).await,
        CtlCommand::Clients(c) => commands::clients(&client, json, c).await,
        CtlCommand::Subscriptions(c) => commands::subscriptions(&client, json, c).await,
        CtlCommand::Topics(c) => commands::topics(&client, json, c).await,
        CtlCommand::Retained(c) => commands::retained(&client, json, c).await,
        CtlCommand::Banned(c) => manage::banned(&client, json, c).await,
        CtlCommand::Admins(c) => manage::admins(&client, json, c).await,
        CtlCommand::ApiKeys(c) => manage::api_keys(&client, json, c).await,
        CtlCommand::Reload => manage::reload(&client, json).await,
        CtlCommand::Shadow(c) => commands::shadow(&client, json, c).await,
        CtlCommand::Cluster(c) => commands::cluster(&client, json, c).await,
    }
}

/// The socket of the broker run with `config` (or the default configuration).
fn socket_client(config: Option<&Path>) -> Result<Client, String> {
    let (cfg, origin) = match config {
        Some(path) => (
            Config::load(path).map_err(|e| e.to_string())?,
            path.display().to_string(),
        ),
        None => (Config::default(), "the default configuration".to_owned()),
    };
    // hermod serves the socket only with the admin API on and a store on disk.
    let off = if !cfg.admin.enabled {
        Some("[admin] enabled = false")
    } else if !cfg.admin.socket {
        Some("[admin] socket = false")
    } else if cfg.store_config().is_none() {
        Some("[store] sync = \"memory\" keeps no store folder")
    } else {
        None
    };
    if let Some(why) = off {
        return Err(format!(
            "hermod serves no ctl socket with {origin} ({why}): use --url URL --api-key KEY:SECRET"
        ));
    }
    Ok(Client::unix(socket_path(&cfg)))
}

/// `<store path>/hermod.sock`, the store path relative to the configuration file's folder.
pub(crate) fn socket_path(cfg: &Config) -> PathBuf {
    cfg.base_dir().join(&cfg.store.path).join("hermod.sock")
}

/// Prints a JSON value for scripts (pretty, one document).
fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}
