//! `sets`, `ls` and `stats`: list restore points, list a set's contents, repository statistics.

use super::output::{bytes, line};
use super::{json_line, open, RepoArg};
use anyhow::Result;

#[derive(clap::Args)]
pub struct SetsArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[arg(long)]
    json: bool,
}

impl SetsArgs {
    pub fn run(self) -> Result<i32> {
        let SetsArgs { repo, json } = self;
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
}

#[derive(clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    repo: RepoArg,
    set: String,
    /// component[/path/inside]
    path: Option<String>,
    #[arg(long)]
    json: bool,
}

impl LsArgs {
    pub fn run(self) -> Result<i32> {
        let LsArgs { repo, set, path, json } = self;
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
}

#[derive(clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[arg(long)]
    json: bool,
}

impl StatsArgs {
    pub fn run(self) -> Result<i32> {
        let StatsArgs { repo, json } = self;
        let r = open(&repo)?;
        let s = coffer::browse::stats(&r)?;
        if json {
            json_line(&serde_json::to_value(&s).expect("json"));
        } else {
            let enc = if s.encryption == "none" { "none (UNENCRYPTED)".to_string() } else { s.encryption.clone() };
            line(&format!("encryption:        {enc}"));
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
}
