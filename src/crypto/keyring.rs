//! The key objects of a repository: opening it with a password, and adding, listing and
//! removing keys (`coffer key …`). Every function here goes through the storage like the
//! rest; key objects are read before any key is known, so they are not sealed as a whole
//! (their master key is, under the password's key).

use crate::crypto::key::{new_key_name, KdfParams, KeyObject, MasterKey};
use crate::crypto::password::Source;
use crate::error::{Error, Result};
use crate::storage::{object_path, Kind, Storage};
use std::path::{Path, PathBuf};

/// What opened a repository: its master key and the key object it came from.
pub struct Unlocked {
    pub master: MasterKey,
    pub key_name: String,
}

/// One key object, as `coffer key list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub created: String,
    pub host: String,
    /// The key that opened the repository in this run.
    pub current: bool,
}

/// Stores a new key object wrapping `master` for `password`; returns its name.
pub fn add(
    storage: &dyn Storage,
    master: &MasterKey,
    password: &[u8],
    params: KdfParams,
    now: String,
) -> Result<String> {
    let name = new_key_name();
    let key = KeyObject::wrap(master, password, params, &name, now);
    storage.put(Kind::Keys, &name, &key.encode())?;
    Ok(name)
}

/// Opens the repository whose config is `config_bytes`: the password from `source` is tried
/// on each key object (`hint` first: the one that opened it last time on this machine, so a
/// repository with several keys costs one key derivation, not one per key).
pub fn unlock(storage: &dyn Storage, config_bytes: &[u8], source: &Source, hint: Option<&str>) -> Result<Unlocked> {
    let location = storage.location();
    let mut names: Vec<String> = storage.list(Kind::Keys)?.into_iter().map(|o| o.name).collect();
    if names.is_empty() {
        return Err(Error::corrupt(
            PathBuf::from(object_path(storage, Kind::Keys, "")),
            0,
            "an encrypted repository without key objects: it can't be opened",
        ));
    }
    names.sort();
    if let Some(pos) = hint.and_then(|h| names.iter().position(|n| n == h)) {
        let h = names.remove(pos);
        names.insert(0, h);
    }
    let password = source.get(&location, false)?;
    let mut damaged: Option<Error> = None;
    for name in names {
        let path = PathBuf::from(object_path(storage, Kind::Keys, &name));
        let key = match storage.read(Kind::Keys, &name, None).and_then(|b| KeyObject::decode(&path, &b)) {
            Ok(k) => k,
            // Removed since the listing (`key remove` elsewhere): not a key any more.
            Err(Error::ObjectMissing { .. }) => continue,
            // A key object that reads but does not decode; a failed read is not "wrong
            // password" and stops here, naming the object.
            Err(e @ (Error::Corrupt { .. } | Error::UnsupportedVersion { .. })) => {
                eprintln!("coffer: warning: damaged key object skipped: {e}");
                damaged.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(master) = key.unwrap(password.as_bytes(), &name) {
            check_config(storage, &master, config_bytes)?;
            return Ok(Unlocked { master, key_name: name });
        }
    }
    // No key opened. If one was damaged it may have been the one for this password: that is
    // the error to show (it names the object), not "wrong password".
    match damaged {
        Some(Error::Corrupt { path, offset, what }) => Err(Error::Corrupt {
            path,
            offset,
            what: format!("{what}; no other key in {location} opens with this password"),
        }),
        Some(e) => Err(e),
        None => Err(Error::WrongPassword { repo: location }),
    }
}

/// The config is stored in the clear; the master key holds its hash, so a config changed by
/// whoever holds the storage (another chunker, "encryption": "none") is refused.
fn check_config(storage: &dyn Storage, master: &MasterKey, config_bytes: &[u8]) -> Result<()> {
    if blake3::hash(config_bytes).as_bytes() != &master.config_hash {
        return Err(Error::corrupt(
            PathBuf::from(object_path(storage, Kind::Config, crate::config::Config::NAME)),
            0,
            "the config is not the one this repository's key was made for (changed since init)",
        ));
    }
    Ok(())
}

/// Every key object, `current` naming the one that opened the repository. Key objects that
/// don't decode are listed with `host` saying so (they can still be removed).
pub fn list(storage: &dyn Storage, current: &str) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for o in storage.list(Kind::Keys)? {
        let path = PathBuf::from(object_path(storage, Kind::Keys, &o.name));
        let (created, host) = match storage.read(Kind::Keys, &o.name, None).and_then(|b| KeyObject::decode(&path, &b)) {
            Ok(k) => (k.created, k.host),
            Err(Error::ObjectMissing { .. }) => continue,
            Err(e) => (String::new(), format!("(damaged: {e})")),
        };
        out.push(KeyInfo { current: o.name == current, id: o.name, created, host });
    }
    out.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    Ok(out)
}

/// The one key whose id is `spec` or starts with it.
pub fn resolve(storage: &dyn Storage, spec: &str) -> Result<String> {
    let names: Vec<String> = storage.list(Kind::Keys)?.into_iter().map(|o| o.name).collect();
    if names.iter().any(|n| n == spec) {
        return Ok(spec.to_string());
    }
    let hits: Vec<&String> = names.iter().filter(|n| !spec.is_empty() && n.starts_with(spec)).collect();
    match hits.len() {
        0 => Err(Error::NotFound(format!("no key {spec:?} in {}", storage.location()))),
        1 => Ok(hits[0].clone()),
        n => Err(Error::InvalidInput(format!("{spec:?} matches {n} keys; give more digits"))),
    }
}

/// Removes key `name`: never the last one (the repository could not be opened again), and
/// not `current` (the one in use) unless `force`.
pub fn remove(storage: &dyn Storage, name: &str, current: &str, force: bool) -> Result<()> {
    let count = storage.list(Kind::Keys)?.len();
    if count <= 1 {
        return Err(Error::InvalidInput(format!(
            "key {name} is the repository's only key; removing it would make {} unreadable",
            storage.location()
        )));
    }
    if name == current && !force {
        return Err(Error::InvalidInput(format!(
            "key {name} is the one this command opened the repository with; give --force to remove it anyway \
             (or `coffer key passwd` to replace it)"
        )));
    }
    storage.remove(Kind::Keys, name)
}

/// The file in the cache that remembers which key opened a repository here last.
pub fn hint_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("key-hint")
}
