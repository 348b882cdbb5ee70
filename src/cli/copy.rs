//! `copy`: the sets one repository has and another lacks, from the first into the second.

use super::output::{bytes, line};
use super::{json_line, notify, open};
use anyhow::Result;
use coffer::crypto::password::Source;
use coffer::repo::Repo;
use coffer::storage::Location;
use std::path::PathBuf;

/// Where the source repository's password comes from: `--from-password-file`,
/// `--from-password-command`, else `COFFER_FROM_PASSWORD` (`_FILE`, `_COMMAND`), else a prompt.
#[derive(clap::Args, Clone)]
pub struct FromPassword {
    /// Read the source repository's password from the first line of FILE.
    #[arg(long, env = "COFFER_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Run CMD (with sh -c) and use the first line it prints as the source's password.
    #[arg(long, env = "COFFER_FROM_PASSWORD_COMMAND", value_name = "CMD", conflicts_with = "from_password_file")]
    pub from_password_command: Option<String>,
}

impl FromPassword {
    pub fn source(&self) -> Source {
        Source::file_or_command(self.from_password_file.clone(), self.from_password_command.clone(), || {
            Source::from_env_prefixed("COFFER_FROM")
        })
    }
}

/// Opens the source and the destination: at once when neither asks on the terminal, since
/// each open is mostly its key derivation (0.5 s by design), which is most of a nightly copy.
fn open_both(from: &Location, from_pw: &Source, to: &super::RepoArg) -> Result<(Repo, Repo)> {
    let open_src = || Repo::open_at(from, &coffer::filecache::cache_root(), from_pw);
    let prompts = |s: &Source| matches!(s, Source::Prompt | Source::PromptFrom);
    if prompts(from_pw) || prompts(&to.password()) {
        return Ok((open_src()?, open(to)?));
    }
    std::thread::scope(|scope| {
        let src = scope.spawn(open_src);
        let dst = open(to);
        let src = src.join().map_err(|_| anyhow::anyhow!("opening {from} panicked"))?;
        Ok((src?, dst?))
    })
}

#[derive(clap::Args)]
pub struct CopyArgs {
    /// The repository to copy from (a directory or s3:…).
    #[arg(long, value_name = "REPO")]
    from: coffer::storage::Location,
    #[command(flatten)]
    from_password: FromPassword,
    /// The repository to copy into, made with `init --from-repo` (its password from
    /// --password-file, --password-command or COFFER_PASSWORD).
    #[command(flatten)]
    to: super::ToArg,
    /// Only sets of this name.
    #[arg(long)]
    name: Option<String>,
    /// Only the newest set of each name.
    #[arg(long)]
    latest: bool,
    /// Print one JSON object describing the run on stdout.
    #[arg(long)]
    json: bool,
    /// Sets to copy (ids, unique prefixes or "latest"); default: every set the destination lacks.
    sets: Vec<String>,
}

impl CopyArgs {
    pub fn run(self) -> Result<i32> {
        let CopyArgs { from, from_password, to, name, latest, json, sets } = self;
        let (src, dst) = open_both(&from, &from_password.source(), &to.repo_arg())?;
        let notify = notify();
        let select = coffer::copy::Selection { sets, name, latest, catch_up: false };
        let r = coffer::copy::copy(&src, &dst, &select, &mut |m| notify(m))?;
        if json {
            json_line(&serde_json::json!({
                "sets_copied": r.sets_copied.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
                "sets_present": r.sets_present,
                "chunks_copied": r.chunks_copied,
                "bytes_sent": r.bytes_sent,
                "duration_s": r.duration_s,
            }));
        } else {
            for s in &r.sets_copied {
                line(&s.to_hex());
            }
            eprintln!(
                "copied {} set(s) ({} already there): {} chunks, {} sent, {:.1}s",
                r.sets_copied.len(),
                r.sets_present,
                r.chunks_copied,
                bytes(r.bytes_sent),
                r.duration_s
            );
        }
        Ok(0)
    }
}
