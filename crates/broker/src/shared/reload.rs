//! Reload (SIGHUP): re-read the configuration, auth and TLS files and swap them in whole, or keep
//! the old ones.

use std::sync::Arc;

use tracing::{info, warn};

use super::Shared;
use crate::auth::Auth;
use crate::config::Config;
use crate::transport::Acceptor;

impl Shared {
    /// Re-reads the configuration file (when there is one), the password and ACL files, auth
    /// sources, `[[banned]]`, `[auth_failures]` and TLS files, and swaps them in only if
    /// everything loads (run-time bans and failure counts are kept): on any error the old
    /// configuration stays in force and the error is returned (and logged by the caller).
    /// Other changed keys need a restart and are reported as such.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let config = match &self.config_path {
            Some(path) => Config::load(path).map_err(|e| e.to_string())?,
            None => self.config.clone(),
        };
        let origin = self
            .config_path
            .as_ref()
            .map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
        let auth = Auth::load(&config.auth_settings(), &config.base_dir())
            .map_err(|e| format!("{origin}: {e}"))?
            .with_hash_pool(self.hash_pool.clone());
        if config.listeners.len() != self.acceptors.len() {
            return Err("the number of [[listener]] tables changed: that needs a restart; nothing was reloaded".into());
        }
        // Build every listener's new TLS state first; swap nothing unless all of them load.
        let mut fresh = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let settings = l.transport_settings(Some(&config.base_dir()), config.max_packet_size);
            Acceptor::new(&settings)
                .map_err(|e| format!("{origin}: listener[{i}] ({}): {e}", l.bind))?;
            fresh.push(settings);
        }
        for (acceptor, settings) in self.acceptors.iter().zip(&fresh) {
            acceptor.reload(settings).map_err(|e| e.to_string())?;
        }
        self.auth.store(Arc::new(auth));
        self.banned.replace_config(&config.banned);
        self.throttle.configure(config.throttle_settings());
        let mut same = config.clone();
        same.allow_anonymous = self.config.allow_anonymous;
        same.password_file.clone_from(&self.config.password_file);
        same.acl_file.clone_from(&self.config.acl_file);
        same.auth.clone_from(&self.config.auth);
        same.listeners.clone_from(&self.config.listeners);
        same.banned.clone_from(&self.config.banned);
        same.auth_failures.clone_from(&self.config.auth_failures);
        if same != self.config {
            warn!(
                "configuration reloaded: access control, bans and TLS files applied; other changed keys need a restart"
            );
        } else {
            info!("configuration reloaded: access control, bans and TLS files applied");
        }
        Ok(())
    }
}
