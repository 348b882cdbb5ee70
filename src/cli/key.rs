//! `key list | add | remove | passwd`: the passwords that open an encrypted repository.

use super::output::line;
use super::{now, open, RepoArg};
use anyhow::{bail, Result};
use coffer::crypto::key::KdfParams;
use coffer::crypto::keyring;
use coffer::crypto::password::Source;
use coffer::repo::Repo;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum KeyCmd {
    /// List the key objects (`*` marks the one this command opened the repository with).
    List(ListArgs),
    /// Add a password: a new key object wrapping the same master key.
    Add(NewPasswordArgs),
    /// Remove a key object (never the last one; the one in use only with --force).
    Remove(RemoveArgs),
    /// Change the password in use: add a key for the new one, then remove the current key.
    Passwd(NewPasswordArgs),
}

impl KeyCmd {
    pub fn run(self) -> Result<i32> {
        match self {
            KeyCmd::List(a) => a.run(),
            KeyCmd::Add(a) => a.run(false),
            KeyCmd::Remove(a) => a.run(),
            KeyCmd::Passwd(a) => a.run(true),
        }
    }
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// An array of {id, created, host, current}.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct NewPasswordArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Read the new password from the first line of FILE (else: asked twice on a terminal).
    #[arg(long, value_name = "FILE")]
    new_password_file: Option<PathBuf>,
    /// Argon2id cost of the new key (m=KIB,t=N,p=N; default about 0.5 s).
    #[arg(long, env = "COFFER_KDF_PARAMS", value_name = "PARAMS")]
    kdf_params: Option<String>,
}

#[derive(clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// The key's id (or a unique prefix), as `key list` shows it.
    key_id: String,
    /// Remove the key even if it is the one this command opened the repository with.
    #[arg(long)]
    force: bool,
}

/// The key derivation parameters given, or the defaults.
pub fn kdf(given: Option<&str>) -> Result<KdfParams> {
    Ok(match given {
        Some(p) => KdfParams::parse(p)?,
        None => KdfParams::DEFAULT,
    })
}

/// The opened repository's key, or an error for an unencrypted one.
fn unlocked(r: &Repo) -> Result<&keyring::Unlocked> {
    match &r.unlocked {
        Some(u) => Ok(u),
        None => {
            bail!("{}: the repository is not encrypted (made with --encryption none): it has no keys", r.root.display())
        }
    }
}

impl ListArgs {
    fn run(self) -> Result<i32> {
        let r = open(&self.repo)?;
        let current = unlocked(&r)?.key_name.clone();
        let keys = keyring::list(&*r.storage, &current)?;
        if self.json {
            line(&serde_json::to_string(&keys).expect("json"));
        } else {
            for k in keys {
                let mark = if k.current { "*" } else { " " };
                line(&format!("{mark} {}  {:<25} {}", k.id, k.created, k.host));
            }
        }
        Ok(0)
    }
}

impl NewPasswordArgs {
    /// `key add`, or with `replace` `key passwd`.
    fn run(self, replace: bool) -> Result<i32> {
        let r = open(&self.repo)?;
        r.writable(if replace { "key passwd" } else { "key add" })?;
        let u = unlocked(&r)?;
        let params = kdf(self.kdf_params.as_deref())?;
        let source = match self.new_password_file {
            Some(f) => Source::File(f),
            None => Source::Prompt,
        };
        let new = source.get(&format!("the new key of {}", r.root.display()), true)?;
        let name = keyring::add(&*r.storage, &u.master, new.as_bytes(), params, now())?;
        // The new key opens the repository before the old one goes.
        let config = r.storage.read(coffer::storage::Kind::Config, coffer::config::Config::NAME, None)?;
        if let Err(e) = keyring::unlock(&*r.storage, &config, &Source::Given(new), Some(&name)) {
            let _ = r.storage.remove(coffer::storage::Kind::Keys, &name);
            bail!("the new key {name} does not open the repository ({e}); it was removed again");
        }
        if replace {
            keyring::remove(&*r.storage, &u.key_name, &name, false)?;
            line(&format!("password changed: key {} replaced by key {name}", u.key_name));
        } else {
            line(&format!("added key {name}"));
        }
        Ok(0)
    }
}

impl RemoveArgs {
    fn run(self) -> Result<i32> {
        let r = open(&self.repo)?;
        r.writable("key remove")?;
        let u = unlocked(&r)?;
        let name = keyring::resolve(&*r.storage, &self.key_id)?;
        keyring::remove(&*r.storage, &name, &u.key_name, self.force)?;
        line(&format!("removed key {name}"));
        Ok(0)
    }
}
