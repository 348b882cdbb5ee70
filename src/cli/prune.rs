//! `forget` and `prune`: drop sets by a retention policy, free the space no set needs.

use super::output::{bytes, line};
use super::{json_line, open, RepoArg};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ForgetArgs {
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
}

impl ForgetArgs {
    pub fn run(self) -> Result<i32> {
        let ForgetArgs {
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
        } = self;
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
        let mut def = None;
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
            def = Some(d);
        }
        let opts = coffer::retention::ForgetOptions { policy, name, dry_run };
        let prune_opts = (prune && !dry_run).then(|| {
            let mut po = coffer::prune::Options::new(time::OffsetDateTime::now_utc().unix_timestamp());
            po.max_unused = max_unused;
            po
        });
        let (rep, pruned) = forget_and_prune(&r, &opts, prune_opts.as_ref())?;
        // The same policy on every destination of the definition: a destination that fails
        // is named, and the others (and the primary) still get theirs.
        let mut dests = Vec::new();
        let mut failed = false;
        for d in def.iter().flat_map(|d| &d.destinations) {
            let done = coffer::copy::open_destination(d, &repo.password())
                .and_then(|dr| forget_and_prune(&dr, &opts, prune_opts.as_ref()));
            match done {
                Ok(v) => dests.push((d.repo.clone(), Ok(v))),
                Err(e) => {
                    eprintln!("coffer: error: destination {}: {e}", d.repo);
                    failed = true;
                    dests.push((d.repo.clone(), Err(e.to_string())));
                }
            }
        }
        if json {
            let destinations: Vec<_> = dests
                .iter()
                .map(|(repo, r)| match r {
                    Ok((f, p)) => serde_json::json!({"repo": repo, "forget": f, "prune": p}),
                    Err(e) => serde_json::json!({"repo": repo, "error": e}),
                })
                .collect();
            json_line(&serde_json::json!({"forget": rep, "prune": pruned, "destinations": destinations}));
        } else {
            print_forget(&rep, &pruned, &opts);
            for (repo, r) in &dests {
                if let Ok((f, p)) = r {
                    line(&format!("destination {repo}:"));
                    print_forget(f, p, &opts);
                }
            }
        }
        Ok(if failed { super::EXIT_DESTINATION } else { 0 })
    }
}

type Forgotten = (coffer::retention::ForgetReport, Option<coffer::prune::Report>);

fn forget_and_prune(
    r: &coffer::repo::Repo,
    opts: &coffer::retention::ForgetOptions,
    prune: Option<&coffer::prune::Options>,
) -> coffer::Result<Forgotten> {
    let rep = coffer::retention::forget(r, opts, &mut |m| eprintln!("coffer: {m}"))?;
    let pruned = match prune {
        Some(po) => Some(coffer::prune::prune(r, po, &mut |m| eprintln!("coffer: {m}"))?),
        None => None,
    };
    Ok((rep, pruned))
}

fn print_forget(
    rep: &coffer::retention::ForgetReport,
    pruned: &Option<coffer::prune::Report>,
    opts: &coffer::retention::ForgetOptions,
) {
    let dry_run = opts.dry_run;
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
    if let Some(p) = pruned {
        print_prune(p);
    }
}

#[derive(clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Repack the most wasteful packs until at most this share of the repository is unneeded.
    #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = coffer::prune::parse_max_unused)]
    max_unused: f64,
    /// Show what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Prune although some set manifests are damaged (chunks only they name are deleted).
    #[arg(long)]
    ignore_damaged_sets: bool,
    #[arg(long)]
    json: bool,
}

impl PruneArgs {
    pub fn run(self) -> Result<i32> {
        let PruneArgs { repo, max_unused, dry_run, ignore_damaged_sets, json } = self;
        let r = open(&repo)?;
        let mut po = coffer::prune::Options::new(time::OffsetDateTime::now_utc().unix_timestamp());
        po.max_unused = max_unused;
        po.dry_run = dry_run;
        po.ignore_damaged_sets = ignore_damaged_sets;
        let rep = coffer::prune::prune(&r, &po, &mut |m| eprintln!("coffer: {m}"))?;
        if json {
            json_line(&serde_json::to_value(&rep).expect("json"));
        } else {
            print_prune(&rep);
        }
        Ok(0)
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
