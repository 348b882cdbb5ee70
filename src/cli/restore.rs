//! `restore`, `mount` and `dump`: get files back out of a set (+ the after-restore checklist).

use super::output::{self, bytes};
use super::{json_line, open, RepoArg};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    repo: RepoArg,
    set: String,
    #[arg(long, required_unless_present = "pipe")]
    target: Option<PathBuf>,
    /// Restore only this component[/path] (repeatable).
    #[arg(long = "path")]
    paths: Vec<String>,
    /// Restore only this component (a set should be restored as a whole).
    #[arg(long)]
    component: Option<String>,
    /// With --component: stream its single file (a dump) into this shell command
    /// instead of writing it, e.g. 'pg_restore -d alfresco'.
    #[arg(long, requires = "component")]
    pipe: Option<String>,
    /// Replace files that already exist in the target.
    #[arg(long)]
    overwrite: bool,
    /// Continue an interrupted restore: keep files already complete (checked chunk by
    /// chunk against the set), rewrite the others.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Read every restored file back and check its chunk hashes.
    #[arg(long)]
    verify: bool,
    #[arg(long)]
    threads: Option<usize>,
    /// Memory for one batch's restore plan (64M, 1G…). A restore whose plan is larger
    /// runs in batches, and a chunk shared by files in two batches is read once per batch.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = coffer::restore::parse_memory)]
    plan_memory: usize,
    #[arg(long)]
    json: bool,
}

impl RestoreArgs {
    pub fn run(self) -> Result<i32> {
        let RestoreArgs {
            repo,
            set,
            target,
            mut paths,
            component,
            pipe,
            overwrite,
            resume,
            verify,
            threads,
            plan_memory,
            json,
        } = self;
        let r = open(&repo)?;
        let (id, m) = r.resolve_set(&set)?;
        if let Some(c) = &component {
            if m.component(c).is_none() {
                let names: Vec<&str> = m.components.iter().map(|c| c.name.as_str()).collect();
                bail!("set {} has no component {c:?} (components: {})", id.short(), names.join(", "));
            }
            if m.components.len() > 1 {
                eprintln!(
                    "coffer: note: restoring only component {c:?}. The components of a set belong together: restore the database and the contentstore from the same set, or the repository may be corrupted."
                );
            }
            paths.push(c.clone());
        }
        if let (Some(cmd), Some(c)) = (&pipe, &component) {
            let n = coffer::restore::pipe_component(&r, &m, c, cmd)?;
            eprintln!("streamed {} of component {c:?} from set {} into `{cmd}`", bytes(n), id.short());
            print_checklist(&m);
            return Ok(0);
        }
        let target = target.context("--target is required")?;
        let opts =
            coffer::restore::Options { overwrite, paths, threads, resume, verify, plan_memory, ..Default::default() };
        let progress = output::Progress::restore(opts.counters.clone(), json);
        let rep = coffer::restore::restore(&r, &m, &target, &opts);
        progress.finish();
        let rep = rep?;
        for f in &rep.failed {
            eprintln!("coffer: could not restore {}: {}", f.path, f.error);
        }
        print_checklist(&m);
        if json {
            let mut v = serde_json::to_value(&rep).expect("json");
            v["set"] = serde_json::json!(id.to_hex());
            json_line(&v);
        } else {
            eprintln!(
                "restored set {} into {}: {} files, {} dirs, {} written, {} read from packs in {} ranges{}, {} files already complete{}, {:.1}s",
                id.short(),
                target.display(),
                rep.files,
                rep.dirs,
                bytes(rep.bytes),
                bytes(rep.bytes_read),
                rep.ranges,
                if rep.batches > 1 { format!(" ({} batches)", rep.batches) } else { String::new() },
                rep.skipped,
                if verify { format!(", {} verified", rep.verified) } else { String::new() },
                rep.duration_s
            );
            if rep.specials + rep.hardlinks > 0 {
                eprintln!("  {} fifos and device nodes, {} hard links", rep.specials, rep.hardlinks);
            }
        }
        // Restored all it could; say plainly what is missing and exit non-zero.
        if rep.not_restored_count > 0 {
            for w in &rep.not_restored {
                eprintln!("coffer: warning: not restored: {w}");
            }
            let more = rep.not_restored_count - rep.not_restored.len() as u64;
            if more > 0 {
                eprintln!("coffer: warning: … and {more} more");
            }
            eprintln!(
                "coffer: warning: {} things could not be restored (listed above); everything else was",
                rep.not_restored_count
            );
            return Ok(super::EXIT_PARTIAL);
        }
        if !rep.failed.is_empty() {
            eprintln!(
                "coffer: {} files or directories of set {} could not be restored: the repository is damaged (run `coffer verify --read-data`); everything else was restored",
                rep.failed.len(),
                id.short()
            );
            return Ok(super::EXIT_DAMAGE);
        }
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct MountArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// An existing, empty directory.
    mountpoint: PathBuf,
    /// Memory for decompressed chunks, in MiB.
    #[arg(long, default_value_t = 64)]
    cache_mib: u64,
}

impl MountArgs {
    pub fn run(self) -> Result<i32> {
        let MountArgs { repo, mountpoint, cache_mib } = self;
        let r = open(&repo)?;
        let opts = coffer::mount::Options { cache_bytes: cache_mib << 20, ..Default::default() };
        let shown = mountpoint.display().to_string();
        coffer::mount::mount(r, &mountpoint, &opts, &|n| {
            eprintln!("coffer: {n} sets mounted read-only at {shown}/sets; Ctrl-C or `fusermount3 -u {shown}` unmounts")
        })?;
        eprintln!("coffer: unmounted {shown}");
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct DumpArgs {
    #[command(flatten)]
    repo: RepoArg,
    set: String,
    /// component[/path/inside]; default: the whole set.
    path: Option<String>,
}

impl DumpArgs {
    pub fn run(self) -> Result<i32> {
        let DumpArgs { repo, set, path } = self;
        let r = open(&repo)?;
        let (_, m) = r.resolve_set(&set)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        match coffer::dump::dump(&r, &m, path.as_deref(), &mut out) {
            Err(e) if coffer::dump::is_broken_pipe(&e) => Ok(0),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(0),
        }
    }
}

/// What the Alfresco documentation asks of whoever restores a set.
fn print_checklist(m: &coffer::set::Manifest) {
    use coffer::set::ComponentKind;
    if !m.components.iter().any(|c| c.kind != ComponentKind::Directory) {
        return;
    }
    eprintln!(
        "\nAfter restoring set {:?} ({}):
  1. Restore the database and the contentstore (dir.root) from this same set, never from
     different sets: otherwise the repository may be corrupted.
  2. Put the Solr snapshot in place of the index (or let Solr reindex from the database).
  3. If this copy runs beside production (a replica or test clone), before starting it set in
     alfresco-global.properties:
         sync.mode=OFF
         sync.pushJob.enabled=false
         sync.pullJob.enabled=false
     and keep it network-isolated from the production nodes (it would try to join their cluster).",
        m.name, m.started
    );
}
