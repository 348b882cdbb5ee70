//! `verify`, `repair` and `unlock`: check sets are restorable, rebuild the index, clear stale leases.

use super::output::{self, bytes, line};
use super::{json_line, open, RepoArg, EXIT_DAMAGE};
use anyhow::{bail, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct VerifyArgs {
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
}

impl VerifyArgs {
    pub fn run(self) -> Result<i32> {
        let VerifyArgs {
            repo,
            read_data,
            read_data_subset,
            read_data_percent,
            read_data_stale,
            consistency,
            set_file,
            json,
        } = self;
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
}

#[derive(clap::Args)]
pub struct RepairArgs {
    #[command(subcommand)]
    what: RepairCmd,
}

impl RepairArgs {
    pub fn run(self) -> Result<i32> {
        match self.what {
            RepairCmd::Index(a) => a.run(),
        }
    }
}

#[derive(Subcommand)]
pub enum RepairCmd {
    /// Rebuild the local catalog from the packs' trailers and rewrite the index objects from it.
    Index(RepairIndexArgs),
}

#[derive(clap::Args)]
pub struct RepairIndexArgs {
    #[command(flatten)]
    repo: RepoArg,
}

impl RepairIndexArgs {
    pub fn run(self) -> Result<i32> {
        let RepairIndexArgs { repo } = self;
        // Not `Repo::open`: the catalog it opens may be what is broken.
        let raw = repo.repo.open(&coffer::storage::S3Credentials::from_env())?;
        let opened = coffer::repo::Opened::unlock(raw, &coffer::filecache::cache_root(), &repo.password())?;
        let (storage, cfg) = (opened.storage.clone(), &opened.config);
        if repo.repo.local().is_some_and(coffer::sys::read_only) {
            bail!("{}: the repository is on read-only storage (or not writable by this user); `repair index` needs to write to it", repo.repo);
        }
        let _lease = coffer::lock::Lease::acquire(
            storage.clone(),
            coffer::lock::LeaseKind::Exclusive,
            "repair index",
            &mut |m| eprintln!("coffer: {m}"),
        )?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let catalog = coffer::repo::Repo::catalog_path(&coffer::filecache::cache_root(), &cfg.repository_id);
        if let Some(dir) = catalog.parent() {
            coffer::store::create_private_dirs(dir)?;
        }
        let done =
            coffer::index::rebuild(&*storage, &catalog, &cfg.repository_id, &opened.hasher, &opened.cipher, now)?;
        let mut idx = coffer::index::Index::open(&catalog, &cfg.repository_id)?;
        let objects = coffer::catalog::replace_all(&mut idx, &*storage, now)?;
        line(&format!("rebuilt index from {} packs ({objects} index objects written)", done.packs));
        for e in &done.bad {
            eprintln!("coffer: pack with an unusable trailer: {e}");
        }
        for s in &done.salvaged {
            eprintln!("coffer: {s}");
        }
        Ok(if done.bad.is_empty() { 0 } else { EXIT_DAMAGE })
    }
}

#[derive(clap::Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    repo: RepoArg,
}

impl UnlockArgs {
    pub fn run(self) -> Result<i32> {
        let UnlockArgs { repo } = self;
        let r = open(&repo)?;
        r.writable("unlock")?;
        let msgs = coffer::lock::remove_stale(&*r.storage)?;
        for m in &msgs {
            line(m);
        }
        if msgs.is_empty() {
            line("no stale leases");
        }
        Ok(0)
    }
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
    for n in &r.notes {
        eprintln!("note: {n}");
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
