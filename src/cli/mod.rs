//! Command-line interface: each command parses its arguments, calls one library function and
//! prints. Exit codes: 0 success, 1 error, 2 usage error, 3 backup committed but some files
//! could not be read, or a restore finished but some things could not be created (device
//! nodes when not root, refused extended attributes), 4 verification found damage or
//! inconsistency (or a restore met damaged or missing chunks or trees: it restored
//! everything else and lists what it could not), 5 wrong password (no key of the repository
//! opens with it), 6 a set definition's destination failed (the set is committed in the
//! primary repository; `backup --set` and `forget --set` name the destination).
//!
//! One file per command group: backup.rs (init, backup, init-set), browse.rs (sets, ls, stats),
//! restore.rs (restore, mount, dump), check.rs (verify, repair, unlock), prune.rs (forget, prune),
//! key.rs (key list, add, remove, passwd), copy.rs (copy).

mod backup;
mod browse;
mod check;
mod copy;
mod key;
mod output;
mod prune;
mod restore;

use anyhow::Result;
use clap::{Parser, Subcommand};
use coffer::repo::Repo;
use output::line;
use std::path::PathBuf;
use std::sync::Arc;

pub const EXIT_PARTIAL: i32 = 3;
pub const EXIT_DAMAGE: i32 = 4;
pub const EXIT_WRONG_PASSWORD: i32 = 5;
pub const EXIT_DESTINATION: i32 = 6;

#[derive(Parser)]
#[command(
    name = "coffer",
    version,
    about = "Deduplicating backups of multi-part application data (Alfresco: Solr, database, contentstore) as consistent restore points"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct RepoArg {
    /// Repository: a directory, or s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX] (credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, region from AWS_DEFAULT_REGION) (or set
    /// COFFER_REPO).
    #[arg(long, env = "COFFER_REPO", value_name = "REPO")]
    repo: coffer::storage::Location,
    /// Read the repository password from the first line of FILE (else COFFER_PASSWORD, or a
    /// prompt on a terminal).
    #[arg(long, env = "COFFER_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Run CMD (with sh -c) and use the first line it prints as the password.
    #[arg(long, env = "COFFER_PASSWORD_COMMAND", value_name = "CMD", conflicts_with = "password_file")]
    password_command: Option<String>,
}

/// The destination of a copy: `--to` (or COFFER_REPO) with the usual password options.
#[derive(clap::Args)]
struct ToArg {
    /// The repository to copy into (or set COFFER_REPO).
    #[arg(long, env = "COFFER_REPO", value_name = "REPO")]
    to: coffer::storage::Location,
    /// Read the destination's password from the first line of FILE (else COFFER_PASSWORD).
    #[arg(long, env = "COFFER_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Run CMD (with sh -c) and use the first line it prints as the destination's password.
    #[arg(long, env = "COFFER_PASSWORD_COMMAND", value_name = "CMD", conflicts_with = "password_file")]
    password_command: Option<String>,
}

impl ToArg {
    fn repo_arg(&self) -> RepoArg {
        RepoArg {
            repo: self.to.clone(),
            password_file: self.password_file.clone(),
            password_command: self.password_command.clone(),
        }
    }
}

impl RepoArg {
    /// Where the password comes from: the file or the command (flags or their variables),
    /// else COFFER_PASSWORD, else a prompt on a terminal.
    fn password(&self) -> coffer::crypto::password::Source {
        coffer::crypto::password::Source::from_args(self.password_file.clone(), self.password_command.clone())
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new, empty repository.
    Init(backup::InitArgs),
    /// Back up paths (one component per path) as one new set.
    Backup(backup::BackupArgs),
    /// Write a commented set definition for an Alfresco dir.root.
    InitSet(backup::InitSetArgs),
    /// Check that sets are restorable (and, with --consistency, consistent).
    Verify(check::VerifyArgs),
    /// List restore points, oldest first.
    Sets(browse::SetsArgs),
    /// List the contents of a set (SET: id, unique id prefix, or "latest").
    Ls(browse::LsArgs),
    /// Restore a set into TARGET/<component>/...
    Restore(restore::RestoreArgs),
    /// Mount every set read-only at MOUNTPOINT (FUSE) until Ctrl-C or `fusermount3 -u`.
    Mount(restore::MountArgs),
    /// Write a set, component or subtree to stdout as a tar stream; a single file is written raw.
    Dump(restore::DumpArgs),
    /// Repository size, deduplication and compression.
    Stats(browse::StatsArgs),
    /// Repair the repository.
    Repair(check::RepairArgs),
    /// Forget sets by a retention policy (per set name); `--prune` then frees their space.
    Forget(prune::ForgetArgs),
    /// Delete packs no set needs and repack wasteful ones (takes an exclusive lease).
    Prune(prune::PruneArgs),
    /// Remove stale leases left in locks/ by processes that died.
    Unlock(check::UnlockArgs),
    /// Copy sets into another repository (made with `init --from-repo`), sending only the
    /// chunks it lacks.
    Copy(copy::CopyArgs),
    /// List, add, remove or change the passwords (key objects) that open the repository.
    #[command(subcommand)]
    Key(key::KeyCmd),
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coffer: error: {e:#}");
            match e.downcast_ref::<coffer::Error>() {
                Some(coffer::Error::WrongPassword { .. }) => EXIT_WRONG_PASSWORD,
                _ => 1,
            }
        }
    }
}

fn notify() -> Arc<dyn Fn(String) + Send + Sync> {
    Arc::new(|m| eprintln!("coffer: {m}"))
}

fn now() -> String {
    coffer::clock::format(time::OffsetDateTime::now_utc())
}

fn open(r: &RepoArg) -> Result<Repo> {
    Ok(Repo::open_at(&r.repo, &coffer::filecache::cache_root(), &r.password())?)
}

fn json_line(v: &serde_json::Value) {
    line(&serde_json::to_string(v).expect("json"));
}

fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::Init(a) => a.run(),
        Cmd::Backup(a) => a.run(),
        Cmd::InitSet(a) => a.run(),
        Cmd::Verify(a) => a.run(),
        Cmd::Sets(a) => a.run(),
        Cmd::Ls(a) => a.run(),
        Cmd::Restore(a) => a.run(),
        Cmd::Mount(a) => a.run(),
        Cmd::Dump(a) => a.run(),
        Cmd::Stats(a) => a.run(),
        Cmd::Repair(a) => a.run(),
        Cmd::Forget(a) => a.run(),
        Cmd::Prune(a) => a.run(),
        Cmd::Unlock(a) => a.run(),
        Cmd::Copy(a) => a.run(),
        Cmd::Key(k) => k.run(),
    }
}
