//! Set definitions: the TOML file that names a set and lists its components in capture
//! order (see `docs/sets.md`). Parsing rejects unknown keys and incomplete components up
//! front, so a typo fails before anything is captured.

use crate::backup::Source;
use crate::capture::{CommandCapture, SolrCapture};
use crate::consistency::ConsistencySettings;
use crate::error::{Error, IoContext, Result};
use crate::solr::SolrSource;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetDefinition {
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Make the same-filesystem warning an error.
    #[serde(default)]
    pub strict: bool,
    /// Cross-component consistency check settings (Alfresco defaults).
    #[serde(default)]
    pub consistency: ConsistencyConfig,
    /// What `coffer forget --set FILE` keeps (see `crate::retention`).
    #[serde(default)]
    pub retention: Option<RetentionConfig>,
    /// The profile of `~/.aws/credentials` (and `~/.aws/config`) that opens an `s3:`
    /// repository for this set, when `AWS_ACCESS_KEY_ID` is not set.
    #[serde(default)]
    pub s3_profile: Option<String>,
    #[serde(rename = "component")]
    pub components: Vec<ComponentDef>,
    /// Repositories each committed set is copied to (`coffer copy`), after the primary.
    #[serde(default, rename = "destination")]
    pub destinations: Vec<DestinationDef>,
}

/// A `[[destination]]`: a second repository (made with `init --from-repo PRIMARY`) that
/// `backup --set` copies each new set to and `forget --set` applies `[retention]` to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationDef {
    /// A directory or `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`.
    pub repo: String,
    /// Its password's file (first line); else `password_command`; else the primary's password.
    pub password_file: Option<PathBuf>,
    pub password_command: Option<String>,
    /// The AWS profile for an `s3:` destination, when `AWS_ACCESS_KEY_ID` is not set.
    pub s3_profile: Option<String>,
}

impl DestinationDef {
    pub fn location(&self) -> Result<crate::storage::Location> {
        crate::storage::Location::parse(&self.repo)
    }

    /// Where its password comes from (`primary`: the primary repository's own source).
    pub fn password(&self, primary: &crate::crypto::password::Source) -> crate::crypto::password::Source {
        crate::crypto::password::Source::file_or_command(
            self.password_file.clone(),
            self.password_command.clone(),
            || primary.clone(),
        )
    }

    /// Not on the filesystem of any of `sources`: an object store, or a directory on another
    /// device (a missing directory counts as elsewhere only once it exists).
    pub fn is_elsewhere(&self, sources: &[(String, PathBuf)]) -> bool {
        match self.location() {
            Ok(crate::storage::Location::S3(_)) => true,
            Ok(crate::storage::Location::Local(p)) => {
                p.exists() && crate::backup::same_filesystem(&p, sources).is_empty()
            }
            Err(_) => false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyConfig {
    /// Run the check after every backup of this set.
    pub enabled: bool,
    /// The component holding the database dump.
    pub dump_component: String,
    /// The component holding the contentstore.
    pub contentstore_component: String,
    pub table: String,
    pub url_prefix: String,
    /// How to run pg_restore for custom-format dumps.
    pub pg_restore: Vec<String>,
}

impl Default for ConsistencyConfig {
    fn default() -> Self {
        let s = ConsistencySettings::default();
        ConsistencyConfig {
            enabled: true,
            dump_component: "db".into(),
            contentstore_component: "contentstore".into(),
            table: s.table,
            url_prefix: s.url_prefix,
            pg_restore: s.pg_restore,
        }
    }
}

impl ConsistencyConfig {
    pub fn settings(&self) -> ConsistencySettings {
        ConsistencySettings {
            table: self.table.clone(),
            url_prefix: self.url_prefix.clone(),
            pg_restore: self.pg_restore.clone(),
        }
    }

    /// What `verify::set_consistency` should check for this set.
    pub fn target(&self) -> crate::verify::ConsistencyTarget {
        crate::verify::ConsistencyTarget {
            dump_component: self.dump_component.clone(),
            contentstore_component: self.contentstore_component.clone(),
            settings: self.settings(),
        }
    }
}

/// The `[retention]` table: a `forget` policy stored with the set it applies to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_hourly: u32,
    #[serde(default)]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
    #[serde(default)]
    pub keep_yearly: u32,
    /// A duration such as "30d", "2w", "12h".
    pub keep_within: Option<String>,
    #[serde(default)]
    pub keep_tags: Vec<String>,
}

impl RetentionConfig {
    /// The policy; an unparsable duration or a table with no rule is an error.
    pub fn policy(&self) -> std::result::Result<crate::retention::Policy, String> {
        let keep_within = self
            .keep_within
            .as_deref()
            .map(crate::verify::parse_age)
            .transpose()
            .map_err(|e| format!("[retention] keep_within: {e}"))?;
        let p = crate::retention::Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within,
            keep_tags: self.keep_tags.clone(),
        };
        if p.is_empty() {
            return Err("[retention] has no keep rule; it would forget every set but the newest".into());
        }
        Ok(p)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentDef {
    pub name: String,
    pub kind: String,
    /// directory: the tree to back up.
    pub path: Option<PathBuf>,
    /// command: argv of the command whose stdout is the component.
    pub command: Option<Vec<String>>,
    /// command: the file name the output is stored (and restored) as.
    pub file: Option<String>,
    /// command: directory of the database's data, only for the same-filesystem check.
    pub data_dir: Option<PathBuf>,
    /// solr: a backup directory holding snapshot.* (e.g. dir.root/solr4Backup/alfresco).
    pub backup_dir: Option<PathBuf>,
    /// solr: a core URL to trigger a snapshot through the replication handler.
    pub url: Option<String>,
    /// solr with url: where Solr writes the snapshot.
    pub location: Option<PathBuf>,
    /// solr: how long to wait for a snapshot in progress (default 600).
    pub wait_secs: Option<u64>,
    pub poll_millis: Option<u64>,
}

impl SetDefinition {
    pub fn load(path: &Path) -> Result<SetDefinition> {
        let text = std::fs::read_to_string(path).ctx(path)?;
        SetDefinition::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<SetDefinition> {
        let def: SetDefinition =
            toml::from_str(text).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
        def.validate().map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
        Ok(def)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is empty".into());
        }
        if self.components.is_empty() {
            return Err("no [[component]] listed".into());
        }
        if let Some(r) = &self.retention {
            r.policy()?;
        }
        for d in &self.destinations {
            d.location().map_err(|e| format!("[[destination]] repo {:?}: {e}", d.repo))?;
            if d.password_file.is_some() && d.password_command.is_some() {
                return Err(format!("[[destination]] {:?}: give password_file or password_command, not both", d.repo));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.components {
            let bad_name = c.name.is_empty() || c.name.contains('/') || c.name == "." || c.name == "..";
            if bad_name {
                return Err(format!("component name {:?} is not usable as a directory name", c.name));
            }
            if !seen.insert(&c.name) {
                return Err(format!("two components are named {:?}", c.name));
            }
            let need = |v: bool, what: &str| {
                if v {
                    Ok(())
                } else {
                    Err(format!("component {:?} (kind {}) needs `{what}`", c.name, c.kind))
                }
            };
            let forbid = |v: bool, what: &str| {
                if v {
                    Err(format!("component {:?} (kind {}) does not take `{what}`", c.name, c.kind))
                } else {
                    Ok(())
                }
            };
            match c.kind.as_str() {
                "directory" => {
                    need(c.path.is_some(), "path")?;
                    forbid(c.command.is_some(), "command")?;
                    forbid(c.backup_dir.is_some() || c.url.is_some(), "backup_dir/url")?;
                }
                "command" => {
                    need(c.command.as_ref().is_some_and(|v| !v.is_empty()), "command")?;
                    need(
                        c.file.as_ref().is_some_and(|f| !f.is_empty() && !f.contains('/') && f != "." && f != ".."),
                        "file (a plain file name)",
                    )?;
                    forbid(c.path.is_some(), "path")?;
                }
                "solr" => {
                    need(c.backup_dir.is_some() != c.url.is_some(), "exactly one of backup_dir or url")?;
                    if c.url.is_some() {
                        need(c.location.is_some(), "location (where Solr writes the snapshot)")?;
                    }
                    forbid(c.command.is_some() || c.path.is_some(), "command/path")?;
                }
                k => return Err(format!("component {:?}: unknown kind {k:?} (directory, command or solr)", c.name)),
            }
        }
        Ok(())
    }

    /// The components as backup sources, in capture order.
    pub fn sources(&self) -> Vec<Source> {
        self.components
            .iter()
            .map(|c| match c.kind.as_str() {
                "directory" => Source::Path { name: c.name.clone(), path: c.path.clone().expect("validated") },
                "command" => Source::Custom(Arc::new(CommandCapture {
                    name: c.name.clone(),
                    argv: c.command.clone().expect("validated"),
                    file: c.file.clone().expect("validated"),
                })),
                _ => {
                    let d = SolrSource::default();
                    Source::Custom(Arc::new(SolrCapture {
                        name: c.name.clone(),
                        source: SolrSource {
                            backup_dir: c.backup_dir.clone(),
                            url: c.url.clone(),
                            location: c.location.clone(),
                            wait_secs: c.wait_secs.unwrap_or(d.wait_secs),
                            poll_millis: c.poll_millis.unwrap_or(d.poll_millis),
                        },
                    }))
                }
            })
            .collect()
    }

    /// Local paths the components read from (for the same-filesystem check).
    pub fn source_paths(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for c in &self.components {
            for p in [&c.path, &c.data_dir, &c.backup_dir, &c.location].into_iter().flatten() {
                out.push((c.name.clone(), p.clone()));
            }
        }
        out
    }
}

/// A commented template for an Alfresco `dir.root`.
pub fn alfresco_template(dir_root: &Path, db_name: &str) -> String {
    let d = dir_root.display();
    format!(
        r#"# coffer set definition for an Alfresco repository (see docs/sets.md).
# Components are captured in the order listed. Alfresco's hot-backup procedure requires
# this order: the Solr snapshot first, then the database, then the contentstore. Every
# nightly run commits all three as one restore point, or nothing.
name = "alfresco"
tags = ["nightly"]
# Make "repository on the same filesystem as a source" an error instead of a warning.
strict = false

[consistency]
# After each backup, check that every content URL in the dump has its file, of the
# recorded size, in the same set's contentstore.
enabled = true
dump_component = "db"
contentstore_component = "contentstore"
table = "alf_content_url"
url_prefix = "store://"
pg_restore = ["pg_restore"]

# 1. Solr: archive the newest complete snapshot written by Alfresco's nightly Solr backup
#    job (never the live index). If that job is still writing it, wait up to wait_secs.
[[component]]
name = "solr"
kind = "solr"
backup_dir = "{d}/solr4Backup/alfresco"
wait_secs = 600
# Or trigger a snapshot through the replication handler instead:
# url = "http://localhost:8983/solr/alfresco"
# location = "{d}/solr4Backup/coffer"

# 2. The database: pg_dump's output is streamed through the chunker, no temporary file.
#    Use the UNCOMPRESSED custom format (-Z0): compressed dumps defeat deduplication
#    between nights; coffer compresses what it stores.
[[component]]
name = "db"
kind = "command"
command = ["pg_dump", "-Fc", "-Z0", "{db_name}"]
file = "{db_name}.dump"
# data_dir = "/var/lib/postgresql/15/main"   # only used to warn about a same-disk repository

# 3. The contentstore, incrementally: unchanged files are not read again.
[[component]]
name = "contentstore"
kind = "directory"
path = "{d}/contentstore"

# Optional: the deleted-content store.
# [[component]]
# name = "contentstore.deleted"
# kind = "directory"
# path = "{d}/contentstore.deleted"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_and_lists_solr_db_contentstore_in_order() {
        let t = alfresco_template(Path::new("/srv/alf_data"), "alfresco");
        let d = SetDefinition::parse(Path::new("t.toml"), &t).unwrap();
        let names: Vec<&str> = d.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["solr", "db", "contentstore"]);
        assert_eq!(d.components[1].command.as_deref().unwrap(), ["pg_dump", "-Fc", "-Z0", "alfresco"]);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("name='x'\n[[component]]\nname='a'\nkind='directory'\n", "needs `path`"),
            ("name='x'\n[[component]]\nname='a'\nkind='tape'\n", "unknown kind"),
            ("name='x'\n[[component]]\nname='a'\nkind='command'\ncommand=['x']\n", "needs `file"),
            ("name='x'\n[[component]]\nname='a'\nkind='solr'\nurl='http://x'\n", "location"),
            ("name='x'\n[retention]\nkeep_within='3 days'\n[[component]]\nname='a'\nkind='directory'\npath='/'\n", "keep_within"),
            ("name='x'\n[retention]\n[[component]]\nname='a'\nkind='directory'\npath='/'\n", "no keep rule"),
            ("name='x'\n[retention]\nkeep_dayly=3\n[[component]]\nname='a'\nkind='directory'\npath='/'\n", "unknown field"),
            ("name='x'\ncolour='red'\n[[component]]\nname='a'\nkind='directory'\npath='/'\n", "unknown field"),
            ("name='x'\n[[component]]\nname='a'\nkind='directory'\npath='/'\n[[component]]\nname='a'\nkind='directory'\npath='/'\n", "two components"),
        ];
        for (text, want) in cases {
            let err = SetDefinition::parse(Path::new("def.toml"), text).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("def.toml"), "{text:?}: {err}");
        }
    }
}
