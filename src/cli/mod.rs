//! Command-line interface: each command parses its arguments, calls one library function and
//! prints. Exit codes: 0 success, 1 error, 2 usage error, 3 backup committed but some files
//! could not be read, 4 verification found damage or inconsistency.

mod output;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use coffer::repo::Repo;
use output::{bytes, line};
use std::path::PathBuf;
use std::sync::Arc;

pub const EXIT_PARTIAL: i32 = 3;
pub const EXIT_DAMAGE: i32 = 4;

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
    /// Repository directory (or set COFFER_REPO).
    #[arg(long, env = "COFFER_REPO")]
    repo: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new, empty repository.
    Init {
        #[command(flatten)]
        repo: RepoArg,
        /// zstd level for new chunks (1-22).
        #[arg(long, default_value_t = 3)]
        compression_level: i32,
    },
    /// Back up paths (one component per path) as one new set.
    Backup {
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
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Back up the set described by this definition file (TOML; see `coffer init-set`).
        #[arg(long = "set", value_name = "FILE", conflicts_with = "paths")]
        set_file: Option<PathBuf>,
        /// Fail instead of warning when the repository shares a filesystem with a source.
        #[arg(long)]
        strict: bool,
        /// Directories or files; each becomes a component named after its last element.
        paths: Vec<PathBuf>,
    },
    /// Write a commented set definition for an Alfresco dir.root.
    InitSet {
        /// Alfresco's dir.root (alf_data).
        #[arg(long)]
        dir_root: PathBuf,
        /// The database pg_dump should dump.
        #[arg(long, default_value = "alfresco")]
        db_name: String,
        /// Write here instead of stdout (refuses to overwrite).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Check that sets are restorable (and, with --consistency, consistent).
    Verify {
        #[command(flatten)]
        repo: RepoArg,
        /// Read every pack and re-hash every chunk.
        #[arg(long)]
        read_data: bool,
        /// Read only slice N of M of the packs (N/M; 1/7 .. 7/7 cover everything).
        #[arg(long, value_name = "N/M", value_parser = coffer::verify::parse_subset)]
        read_data_subset: Option<(u64, u64)>,
        /// Read about P percent of the packs, chosen at random.
        #[arg(long, value_name = "P")]
        read_data_percent: Option<f64>,
        /// Read the packs not read-verified within AGE (e.g. 30d), oldest first.
        #[arg(long, value_name = "AGE", value_parser = coffer::verify::parse_age)]
        read_data_stale: Option<i64>,
        /// Check a set's database dump against its contentstore (SET: id, prefix or latest).
        #[arg(long, value_name = "SET")]
        consistency: Option<String>,
        /// Take the consistency settings (component names, table) from this set definition.
        #[arg(long = "set", value_name = "FILE")]
        set_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List restore points, oldest first.
    Sets {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(long)]
        json: bool,
    },
    /// List the contents of a set (SET: id, unique id prefix, or "latest").
    Ls {
        #[command(flatten)]
        repo: RepoArg,
        set: String,
        /// component[/path/inside]
        path: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Restore a set into TARGET/<component>/...
    Restore {
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
    },
    /// Mount every set read-only at MOUNTPOINT (FUSE) until Ctrl-C or `fusermount3 -u`.
    Mount {
        #[command(flatten)]
        repo: RepoArg,
        /// An existing, empty directory.
        mountpoint: PathBuf,
        /// Memory for decompressed chunks, in MiB.
        #[arg(long, default_value_t = 64)]
        cache_mib: u64,
    },
    /// Write a set, component or subtree to stdout as a tar stream; a single file is written raw.
    Dump {
        #[command(flatten)]
        repo: RepoArg,
        set: String,
        /// component[/path/inside]; default: the whole set.
        path: Option<String>,
    },
    /// Repository size, deduplication and compression.
    Stats {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(long)]
        json: bool,
    },
    /// Repair the repository.
    Repair {
        #[command(subcommand)]
        what: RepairCmd,
    },
    /// Forget sets by a retention policy (per set name); `--prune` then frees their space.
    Forget {
        #[command(flatten)]
        repo: RepoArg,
        /// Only sets of this name.
        #[arg(long, conflicts_with = "set_file")]
        name: Option<String>,
        /// Use this set definition's name and its [retention] policy (--keep-* flags override it).
        #[arg(long = "set", value_name = "FILE")]
        set_file: Option<PathBuf>,
        /// Keep the N newest sets.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_last: u32,
        /// Keep the newest set of each of the N most recent hours (UTC) that have sets.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_hourly: u32,
        /// Keep the newest set of each of the N most recent days (UTC) that have sets.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_daily: u32,
        /// Keep the newest set of each of the N most recent ISO weeks that have sets.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_weekly: u32,
        /// Keep the newest set of each of the N most recent months that have sets.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_monthly: u32,
        /// Keep the newest set of each of the N most recent years that have sets.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_yearly: u32,
        /// Keep sets newer than the newest set's time minus DURATION (e.g. 30d, 2w, 12h).
        #[arg(long, value_name = "DURATION", value_parser = coffer::verify::parse_age)]
        keep_within: Option<i64>,
        /// Keep sets carrying this tag (repeatable).
        #[arg(long = "keep-tag", value_name = "TAG")]
        keep_tags: Vec<String>,
        /// Show what would be forgotten; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run `prune` afterwards.
        #[arg(long)]
        prune: bool,
        /// With --prune: see `prune --max-unused`.
        #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = coffer::prune::parse_max_unused)]
        max_unused: f64,
        #[arg(long)]
        json: bool,
    },
    /// Delete packs no set needs and repack wasteful ones (takes an exclusive lease).
    Prune {
        #[command(flatten)]
        repo: RepoArg,
        /// Repack the most wasteful packs until at most this share of the repository is unneeded.
        #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = coffer::prune::parse_max_unused)]
        max_unused: f64,
        /// Show what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove stale leases left in locks/ by processes that died.
    Unlock {
        #[command(flatten)]
        repo: RepoArg,
    },
}

#[derive(Subcommand)]
enum RepairCmd {
    /// Rebuild index.sqlite from the packs' trailers.
    Index {
        #[command(flatten)]
        repo: RepoArg,
    },
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
            1
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
    Ok(Repo::open(&r.repo)?)
}

fn json_line(v: &serde_json::Value) {
    line(&serde_json::to_string(v).expect("json"));
}

fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::Init { repo, compression_level } => {
            let r = Repo::init(&repo.repo, compression_level, now())?;
            line(&format!("created coffer repository {} at {}", r.config.repository_id, repo.repo.display()));
            Ok(0)
        }
        Cmd::Backup { repo, name, tags, json, no_cache, threads, set_file, strict, paths } => {
            let r = open(&repo)?;
            let def = set_file.as_deref().map(coffer::setdef::SetDefinition::load).transpose()?;
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
                        let name = canon
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "root".into());
                        checked.push((name.clone(), canon.clone()));
                        sources.push(coffer::backup::Source::Path { name, path: canon });
                    }
                    (sources, checked)
                }
            };
            let strict = strict || def.as_ref().is_some_and(|d| d.strict);
            let same = coffer::backup::same_filesystem(&repo.repo, &checked_paths);
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
            print_backup(&report, json, consistency.as_ref());
            let code = match &consistency {
                Some(Ok(c)) if !c.is_ok() => EXIT_DAMAGE,
                Some(Err(_)) => EXIT_DAMAGE,
                _ if !report.problems.is_empty() => EXIT_PARTIAL,
                _ => 0,
            };
            Ok(code)
        }
        Cmd::Sets { repo, json } => {
            let r = open(&repo)?;
            let sets = r.list_sets()?;
            if json {
                let v: Vec<serde_json::Value> = sets
                    .iter()
                    .map(|(id, m)| {
                        serde_json::json!({
                            "id": id.to_hex(), "name": m.name, "host": m.host, "tags": m.tags,
                            "started": m.started, "finished": m.finished, "parent": m.parent,
                            "bytes": m.total_bytes(), "files": m.total_files(), "stored_bytes": m.stored_bytes(),
                            "components": m.components.iter().map(|c| serde_json::json!({
                                "name": c.name, "kind": c.kind, "source": c.source, "started": c.started,
                                "finished": c.finished, "files": c.files, "bytes": c.bytes, "stored_bytes": c.stored_bytes,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json_line(&serde_json::Value::Array(v));
            } else {
                for (id, m) in &sets {
                    line(&format!(
                        "{}  {}  {:<12} {:>10}  {} files",
                        id.short(),
                        m.started,
                        m.name,
                        bytes(m.total_bytes()),
                        m.total_files()
                    ));
                    for c in &m.components {
                        line(&format!(
                            "          {:<14} {:<9} {:>10}  {} files  {}",
                            c.name,
                            format!("{:?}", c.kind).to_lowercase(),
                            bytes(c.bytes),
                            c.files,
                            c.source
                        ));
                    }
                }
            }
            Ok(0)
        }
        Cmd::Ls { repo, set, path, json } => {
            let r = open(&repo)?;
            let (_, m) = r.resolve_set(&set)?;
            coffer::browse::list(&r, &m, path.as_deref(), &mut |e| {
                if json {
                    line(&serde_json::to_string(&e).expect("json"));
                } else {
                    let t = time::OffsetDateTime::from_unix_timestamp_nanos(e.mtime_ns as i128)
                        .map(coffer::clock::format)
                        .unwrap_or_default();
                    let suffix = e.target.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default();
                    line(&format!("{:<9} {:04o} {:>12} {:<30} {}{}", e.kind, e.mode, e.size, t, e.path, suffix));
                }
                Ok(())
            })?;
            Ok(0)
        }
        Cmd::Restore {
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
        } => {
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
            let opts = coffer::restore::Options {
                overwrite,
                paths,
                threads,
                resume,
                verify,
                plan_memory,
                ..Default::default()
            };
            let progress = output::Progress::restore(opts.counters.clone(), json);
            let rep = coffer::restore::restore(&r, &m, &target, &opts);
            progress.finish();
            let rep = rep?;
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
            }
            Ok(0)
        }
        Cmd::Mount { repo, mountpoint, cache_mib } => {
            let r = open(&repo)?;
            let opts = coffer::mount::Options { cache_bytes: cache_mib << 20, ..Default::default() };
            let shown = mountpoint.display().to_string();
            coffer::mount::mount(r, &mountpoint, &opts, &|n| {
                eprintln!(
                    "coffer: {n} sets mounted read-only at {shown}/sets; Ctrl-C or `fusermount3 -u {shown}` unmounts"
                )
            })?;
            eprintln!("coffer: unmounted {shown}");
            Ok(0)
        }
        Cmd::Dump { repo, set, path } => {
            let r = open(&repo)?;
            let (_, m) = r.resolve_set(&set)?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            match coffer::dump::dump(&r, &m, path.as_deref(), &mut out) {
                Err(e) if coffer::dump::is_broken_pipe(&e) => Ok(0),
                Err(e) => Err(e.into()),
                Ok(_) => Ok(0),
            }
        }
        Cmd::InitSet { dir_root, db_name, output } => {
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
        Cmd::Verify {
            repo,
            read_data,
            read_data_subset,
            read_data_percent,
            read_data_stale,
            consistency,
            set_file,
            json,
        } => {
            use coffer::verify::ReadData;
            let how = match (read_data, read_data_subset, read_data_percent, read_data_stale) {
                (false, None, None, None) => ReadData::None,
                (true, None, None, None) => ReadData::All,
                (false, Some((n, m)), None, None) => ReadData::Subset(n, m),
                (false, None, Some(p), None) if (0.0..=100.0).contains(&p) => ReadData::Percent(p),
                (false, None, Some(p), None) => bail!("--read-data-percent {p}: must be between 0 and 100"),
                (false, None, None, Some(age)) => ReadData::Stale(age),
                _ => {
                    bail!("give at most one of --read-data, --read-data-subset, --read-data-percent, --read-data-stale")
                }
            };
            let r = open(&repo)?;
            if let Some(spec) = consistency {
                let (id, m) = r.resolve_set(&spec)?;
                let t = match set_file {
                    Some(f) => coffer::setdef::SetDefinition::load(&f)?.consistency.target(),
                    None => coffer::verify::ConsistencyTarget::default(),
                };
                let rep = coffer::verify::set_consistency(&r, &m, &t)?;
                let order = coffer::verify::order_violations(&id, &m);
                if json {
                    json_line(
                        &serde_json::json!({"set": id.to_hex(), "consistent": rep.is_ok() && order.is_empty(), "report": rep, "order_violations": order}),
                    );
                } else {
                    eprintln!("set {} ({} {}):", id.short(), m.name, m.started);
                    eprint!("{}", rep.summary());
                    for o in &order {
                        eprintln!("{o}");
                    }
                }
                return Ok(if rep.is_ok() && order.is_empty() { 0 } else { EXIT_DAMAGE });
            }
            let _lease =
                coffer::lock::Lease::acquire(&repo.repo, coffer::lock::LeaseKind::Shared, "verify", &mut |m| {
                    eprintln!("coffer: {m}")
                })?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let progress = std::sync::Arc::new(coffer::verify::Progress::default());
            let shown = output::Progress::verify(progress.clone(), json);
            let rep =
                coffer::verify::verify(&r, &coffer::verify::Options { read_data: how, now, progress: Some(progress) });
            shown.finish();
            let rep = rep?;
            if json {
                json_line(&serde_json::to_value(&rep).expect("json"));
            } else {
                print_verify(&rep, how != ReadData::None);
            }
            Ok(if rep.is_ok() { 0 } else { EXIT_DAMAGE })
        }
        Cmd::Stats { repo, json } => {
            let r = open(&repo)?;
            let s = coffer::browse::stats(&r)?;
            if json {
                json_line(&serde_json::to_value(&s).expect("json"));
            } else {
                line(&format!("sets:              {}", s.sets));
                line(&format!("logical size:      {}", bytes(s.logical_bytes)));
                line(&format!("unique data:       {}", bytes(s.unique_bytes)));
                line(&format!("stored size:       {}", bytes(s.stored_bytes)));
                line(&format!("dedup ratio:       {:.2}x", s.dedup_ratio));
                line(&format!("compression ratio: {:.2}x", s.compression_ratio));
                line(&format!("chunks:            {}", s.chunks));
                line(&format!("packs:             {}", s.packs));
            }
            Ok(0)
        }
        Cmd::Repair { what: RepairCmd::Index { repo } } => {
            let cfg = coffer::config::Config::load(&Repo::config_path(&repo.repo))?;
            let _lease = coffer::lock::Lease::acquire(
                &repo.repo,
                coffer::lock::LeaseKind::Exclusive,
                "repair index",
                &mut |m| eprintln!("coffer: {m}"),
            )?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let (ok, bad) =
                coffer::index::rebuild(&repo.repo, &repo.repo.join("index.sqlite"), &cfg.repository_id, now)?;
            line(&format!("rebuilt index from {ok} packs"));
            for e in &bad {
                eprintln!("coffer: unreadable pack left out of the index: {e}");
            }
            Ok(if bad.is_empty() { 0 } else { EXIT_DAMAGE })
        }
        Cmd::Forget {
            repo,
            name,
            set_file,
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
            keep_tags,
            dry_run,
            prune,
            max_unused,
            json,
        } => {
            let r = open(&repo)?;
            let mut policy = coffer::retention::Policy {
                keep_last,
                keep_hourly,
                keep_daily,
                keep_weekly,
                keep_monthly,
                keep_yearly,
                keep_within,
                keep_tags,
            };
            let mut name = name;
            if let Some(f) = &set_file {
                let d = coffer::setdef::SetDefinition::load(f)?;
                if policy.is_empty() {
                    let rc = d
                        .retention
                        .as_ref()
                        .with_context(|| format!("{}: no [retention] table and no --keep-* option", f.display()))?;
                    policy = rc.policy().map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                }
                name = Some(d.name.clone());
            }
            let opts = coffer::retention::ForgetOptions { policy, name, dry_run };
            let rep = coffer::retention::forget(&r, &opts, &mut |m| eprintln!("coffer: {m}"))?;
            let pruned = if prune && !dry_run {
                let mut po = coffer::prune::Options::new(time::OffsetDateTime::now_utc().unix_timestamp());
                po.max_unused = max_unused;
                Some(coffer::prune::prune(&r, &po, &mut |m| eprintln!("coffer: {m}"))?)
            } else {
                None
            };
            if json {
                json_line(&serde_json::json!({"forget": rep, "prune": pruned}));
            } else {
                if let (true, Some(n)) = (rep.groups.is_empty(), &opts.name) {
                    eprintln!("coffer: no sets named {n:?}");
                }
                for g in &rep.groups {
                    line(&format!("sets named {:?}:", g.name));
                    for s in &g.sets {
                        let why: Vec<&str> = s.reasons.iter().map(|r| r.name()).collect();
                        let what = if s.keep {
                            format!("keep   ({})", why.join(", "))
                        } else if dry_run {
                            "would forget".into()
                        } else {
                            "forget".into()
                        };
                        line(&format!("  {}  {}  {}", s.id.short(), s.started, what));
                    }
                }
                eprintln!(
                    "{} set(s) kept, {} {}",
                    rep.kept,
                    rep.removed,
                    if dry_run { "would be forgotten (dry run)" } else { "forgotten" }
                );
                if let Some(p) = &pruned {
                    print_prune(p);
                }
            }
            Ok(0)
        }
        Cmd::Prune { repo, max_unused, dry_run, json } => {
            let r = open(&repo)?;
            let mut po = coffer::prune::Options::new(time::OffsetDateTime::now_utc().unix_timestamp());
            po.max_unused = max_unused;
            po.dry_run = dry_run;
            let rep = coffer::prune::prune(&r, &po, &mut |m| eprintln!("coffer: {m}"))?;
            if json {
                json_line(&serde_json::to_value(&rep).expect("json"));
            } else {
                print_prune(&rep);
            }
            Ok(0)
        }
        Cmd::Unlock { repo } => {
            let _ = Repo::open(&repo.repo)?;
            let msgs = coffer::lock::remove_stale(&repo.repo.join("locks"))?;
            for m in &msgs {
                line(m);
            }
            if msgs.is_empty() {
                line("no stale leases");
            }
            Ok(0)
        }
    }
}

fn print_prune(p: &coffer::prune::Report) {
    eprintln!(
        "prune{}: {} sets need {} chunks; {} of {} packs deleted, {} repacked into {} ({} blobs copied), {} unindexed old packs deleted; {} {} in {:.1}s",
        if p.dry_run { " (dry run)" } else { "" },
        p.sets,
        p.chunks_needed,
        p.packs_deleted,
        p.packs_before,
        p.packs_repacked,
        p.packs_written,
        p.blobs_copied,
        p.unindexed_packs_deleted,
        bytes(p.bytes_freed),
        if p.dry_run { "would be freed" } else { "freed" },
        p.duration_s
    );
}

fn print_verify(r: &coffer::verify::Report, read_data: bool) {
    for e in &r.errors {
        eprintln!("damage: {e}");
    }
    for o in &r.order_violations {
        eprintln!("order: {o}");
    }
    for (set, affected) in &r.damaged_sets {
        eprintln!("set {set} is DAMAGED; affected:");
        for a in affected.iter().take(50) {
            eprintln!("    {a}");
        }
        if affected.len() > 50 {
            eprintln!("    ... and {} more", affected.len() - 50);
        }
    }
    if !r.damaged_sets.is_empty() {
        for s in &r.intact_sets {
            eprintln!("set {s} is intact");
        }
    }
    for p in &r.unused_packs {
        eprintln!("unused pack (no index entry): {p}");
    }
    eprintln!(
        "{}: {} sets ({} intact), {} trees, {} chunks, {} packs{}",
        if r.is_ok() { "no errors" } else { "ERRORS FOUND" },
        r.sets,
        r.intact_sets.len(),
        r.trees,
        r.chunks,
        r.packs,
        if read_data { format!(", {} packs read ({})", r.packs_read, bytes(r.bytes_read)) } else { String::new() }
    );
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

fn print_backup(
    r: &coffer::backup::Report,
    json: bool,
    consistency: Option<&coffer::Result<coffer::consistency::ConsistencyReport>>,
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
            "packs": r.packs,
            "duration_s": r.duration_s,
            "problems": r.problems,
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
