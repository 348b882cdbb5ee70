//! `init`, `backup` and `init-set`: create a repository, add a set, write a set definition.

use super::output::{self, bytes, line};
use super::{json_line, notify, now, RepoArg, EXIT_DAMAGE, EXIT_DESTINATION, EXIT_PARTIAL};
use anyhow::{bail, Context, Result};
use coffer::repo::Repo;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// zstd level for new chunks (1-22).
    #[arg(long, default_value_t = 3)]
    compression_level: i32,
    /// `none` makes an unencrypted repository (for a disk that is already encrypted).
    #[arg(long, value_parser = ["xchacha20poly1305", "none"], default_value = "xchacha20poly1305")]
    encryption: String,
    /// Argon2id cost of the first key: m=KIB,t=ITERATIONS,p=LANES (default m=65536,t=12,p=1,
    /// about 0.5 s). Lower it only for tests or slow machines.
    #[arg(long, env = "COFFER_KDF_PARAMS", value_name = "PARAMS")]
    kdf_params: Option<String>,
    /// Take the chunk-id key, gear seed and chunk sizes of this repository, so sets copied
    /// between the two (`coffer copy`) keep their ids and deduplicate.
    #[arg(long, value_name = "REPO")]
    from_repo: Option<coffer::storage::Location>,
    #[command(flatten)]
    from_password: super::copy::FromPassword,
}

impl InitArgs {
    pub fn run(self) -> Result<i32> {
        let InitArgs { repo, compression_level, encryption, kdf_params, from_repo, from_password } = self;
        let from = match &from_repo {
            Some(f) => {
                let src = Repo::open_at(f, &coffer::filecache::cache_root(), &from_password.source())
                    .with_context(|| format!("--from-repo {f}"))?;
                Some(coffer::repo::ChunkingOf::of(&src))
            }
            None => None,
        };
        let opts = coffer::repo::InitOptions {
            compression_level,
            encrypted: encryption != "none",
            kdf: super::key::kdf(kdf_params.as_deref())?,
            password: repo.password(),
            from,
        };
        let r = Repo::init_at(&repo.repo, &opts, now())?;
        let how = if opts.encrypted { "encrypted" } else { "UNENCRYPTED" };
        line(&format!("created {how} coffer repository {} at {}", r.config.repository_id, repo.repo));
        if let Some(f) = &from_repo {
            line(&format!(
                "its chunk ids and chunker are those of {f}: `coffer copy --from {f} --to {}` sends only what it lacks",
                repo.repo
            ));
        }
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Name of the set (default: "default").
    #[arg(long)]
    name: Option<String>,
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Print one JSON object describing the run on stdout.
    #[arg(long)]
    json: bool,
    /// Read every file even if the files cache says it is unchanged.
    #[arg(long)]
    no_cache: bool,
    /// Do not cross into other filesystems mounted below each source path (the mount points
    /// are kept as empty directories). Pseudo filesystems (proc, sysfs …) are never entered.
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Back up the set described by this definition file (TOML; see `coffer init-set`).
    #[arg(long = "set", value_name = "FILE", conflicts_with = "paths")]
    set_file: Option<PathBuf>,
    /// Fail instead of warning when the repository shares a filesystem with a source.
    #[arg(long)]
    strict: bool,
    /// Record the set as started at TIME (RFC 3339, e.g. 2026-11-20T02:00:00Z), to import or
    /// backdate data; component times shift with it. The files cache still uses the real time.
    #[arg(long, value_name = "TIME", value_parser = coffer::clock::parse)]
    time: Option<time::OffsetDateTime>,
    /// Directories or files; each becomes a component named after its last element.
    paths: Vec<PathBuf>,
}

impl BackupArgs {
    pub fn run(self) -> Result<i32> {
        let BackupArgs { repo, name, tags, json, no_cache, one_file_system, threads, set_file, strict, time, paths } =
            self;
        let def = set_file.as_deref().map(coffer::setdef::SetDefinition::load).transpose()?;
        let creds =
            coffer::storage::S3Credentials::from_env().or_profile(def.as_ref().and_then(|d| d.s3_profile.clone()));
        let r = Repo::open_at_with(&repo.repo, &coffer::filecache::cache_root(), &repo.password(), &creds)?;
        if !r.config.is_encrypted() {
            eprintln!("coffer: warning: {} is UNENCRYPTED (made with --encryption none)", repo.repo);
        }
        let (sources, checked_paths) = match &def {
            Some(d) => (d.sources(), d.source_paths()),
            None => {
                if paths.is_empty() {
                    bail!("nothing to back up: give one or more paths, or --set FILE");
                }
                let mut sources = Vec::new();
                let mut checked = Vec::new();
                for p in &paths {
                    let canon = std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))?;
                    let name =
                        canon.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root".into());
                    checked.push((name.clone(), canon.clone()));
                    sources.push(coffer::backup::Source::Path { name, path: canon });
                }
                (sources, checked)
            }
        };
        let strict = strict || def.as_ref().is_some_and(|d| d.strict);
        // An object store is never the sources' disk; nor is a set with a copy elsewhere at risk.
        let offsite = def.as_ref().is_some_and(|d| d.destinations.iter().any(|x| x.is_elsewhere(&checked_paths)));
        let same = match repo.repo.local() {
            Some(r) if !offsite => coffer::backup::same_filesystem(r, &checked_paths),
            _ => Vec::new(),
        };
        for w in &same {
            eprintln!("coffer: {}: {w}", if strict { "error" } else { "warning" });
        }
        if strict && !same.is_empty() {
            bail!("refusing to back up onto the same filesystem as a source (--strict)");
        }
        let set_name = name.or_else(|| def.as_ref().map(|d| d.name.clone())).unwrap_or_else(|| "default".into());
        let mut opts = coffer::backup::Options::new(&set_name);
        opts.tags = if tags.is_empty() { def.as_ref().map(|d| d.tags.clone()).unwrap_or_default() } else { tags };
        opts.threads = threads;
        opts.use_cache = !no_cache;
        opts.one_file_system = one_file_system;
        opts.time = time;
        opts.notify = notify();
        let progress = output::Progress::backup(opts.counters.clone(), json);
        let report = coffer::backup::run(&r, &sources, &opts);
        progress.finish();
        let report = report?;
        // The set's own consistency: its dump against its contentstore.
        let mut consistency = None;
        if let Some(d) = def.as_ref().filter(|d| d.consistency.enabled) {
            let m = &report.manifest;
            if m.component(&d.consistency.dump_component).is_some()
                && m.component(&d.consistency.contentstore_component).is_some()
            {
                consistency = Some(coffer::verify::set_consistency(&r, m, &d.consistency.target()));
            }
        }
        let failed = match &def {
            Some(d) => copy_to_destinations(&r, d, &repo.password(), json),
            None => Vec::new(),
        };
        print_backup(&report, json, consistency.as_ref(), &failed);
        let code = match &consistency {
            Some(Ok(c)) if !c.is_ok() => EXIT_DAMAGE,
            Some(Err(_)) => EXIT_DAMAGE,
            _ if !failed.is_empty() => EXIT_DESTINATION,
            _ if !report.problems.is_empty() => EXIT_PARTIAL,
            _ => 0,
        };
        Ok(code)
    }
}

#[derive(clap::Args)]
pub struct InitSetArgs {
    /// Alfresco's dir.root (alf_data).
    #[arg(long)]
    dir_root: PathBuf,
    /// The database pg_dump should dump.
    #[arg(long, default_value = "alfresco")]
    db_name: String,
    /// Write here instead of stdout (refuses to overwrite).
    #[arg(long)]
    output: Option<PathBuf>,
}

impl InitSetArgs {
    pub fn run(self) -> Result<i32> {
        let InitSetArgs { dir_root, db_name, output } = self;
        let text = coffer::setdef::alfresco_template(&dir_root, &db_name);
        match output {
            Some(p) => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&p)
                    .with_context(|| format!("{}", p.display()))?;
                std::io::Write::write_all(&mut f, text.as_bytes()).with_context(|| format!("{}", p.display()))?;
                eprintln!("wrote {}", p.display());
            }
            None => print!("{text}"),
        }
        Ok(0)
    }
}

/// Copies the new set (and any the destination missed since it was last reached) to each
/// of the definition's destinations. The primary set stays committed whatever happens here;
/// returns the destinations that failed, each with its error (already reported on stderr).
pub fn copy_to_destinations(
    primary: &Repo,
    def: &coffer::setdef::SetDefinition,
    password: &coffer::crypto::password::Source,
    json: bool,
) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    let notify = notify();
    for d in &def.destinations {
        match coffer::copy::to_destination(primary, d, &def.name, password, &mut |m| notify(m)) {
            Ok(rep) if !json => eprintln!(
                "coffer: destination {}: {} set(s) copied, {} sent",
                d.repo,
                rep.sets_copied.len(),
                bytes(rep.bytes_sent)
            ),
            Ok(_) => {}
            Err(e) => {
                eprintln!("coffer: error: destination {}: {e} (the set is committed in the primary repository; the next run catches this destination up)", d.repo);
                failed.push((d.repo.clone(), e.to_string()));
            }
        }
    }
    failed
}

fn print_backup(
    r: &coffer::backup::Report,
    json: bool,
    consistency: Option<&coffer::Result<coffer::consistency::ConsistencyReport>>,
    failed_destinations: &[(String, String)],
) {
    if let Some(c) = consistency {
        match c {
            Ok(c) if !json => eprint!("{}", c.summary()),
            Err(e) => eprintln!("coffer: consistency check failed: {e}"),
            _ => {}
        }
    }
    if json {
        json_line(&serde_json::json!({
            "set": r.set.to_hex(),
            "name": r.manifest.name,
            "files": {"new": r.files_new, "changed": r.files_changed, "unchanged": r.files_unchanged},
            "dirs": r.dirs,
            "bytes": r.bytes,
            "bytes_read": r.bytes_read,
            "bytes_stored": r.bytes_stored,
            "chunks_new": r.chunks_new,
            "filter_built": r.filter_built,
            "packs": r.packs,
            "duration_s": r.duration_s,
            "problems": r.problems,
            "destinations_failed": failed_destinations.iter().map(|(repo, error)| serde_json::json!({"repo": repo, "error": error})).collect::<Vec<_>>(),
            "consistency": consistency.map(|c| match c {
                Ok(c) => serde_json::json!({"ok": c.is_ok(), "report": c}),
                Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
            }),
            "components": r.manifest.components.iter().map(|c| serde_json::json!({
                "name": c.name, "kind": c.kind, "files": c.files, "bytes": c.bytes, "stored_bytes": c.stored_bytes,
                "started": c.started, "finished": c.finished,
            })).collect::<Vec<_>>(),
        }));
    } else {
        for p in &r.problems {
            eprintln!("coffer: not backed up: {p}");
        }
        eprintln!(
            "set {} committed: {} files ({} new, {} changed, {} unchanged), {} read, {} added to the repository, {:.1}s",
            r.set.short(),
            r.files_new + r.files_changed + r.files_unchanged,
            r.files_new,
            r.files_changed,
            r.files_unchanged,
            bytes(r.bytes_read),
            bytes(r.bytes_stored),
            r.duration_s
        );
        line(&r.set.to_hex());
    }
}
