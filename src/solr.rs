//! Solr index snapshots for an Alfresco backup set.
//!
//! Job: hand the engine the directory of a *complete* Solr snapshot, never the live index, either
//! (a) the newest `snapshot.*` directory left by the nightly Solr backup job in `backup_dir`, or
//! (b) a new named snapshot that we ask Solr's ReplicationHandler to write under `location`.
//! The engine archives that directory like any tree and then calls [`confirm_unchanged`].
//!
//! Invariants:
//! - A returned [`Snapshot`] was complete when listed: a top-level `segments_N` and no `write.lock`
//!   anywhere in it. `files` is exactly that listing, sorted by '/'-separated relative path.
//! - (a) never falls back to an older snapshot while the newest is still being written: that means
//!   the nightly job is running, and a hot backup must not overlap it.
//! - A snapshot whose file list or sizes differ after archiving fails the set. This re-check is the
//!   real guard: Solr copies a commit's files in no fixed order (Lucene's `SegmentInfos.files` is a
//!   hash set), so `segments_N` can land before the rest and "complete" is necessary, not sufficient.
//!
//! Solr behaviour relied on (standalone ReplicationHandler, Solr 4.x to 9.x). Sources: Solr Ref
//! Guide "Backup and Restore" (solr-ref-guide/.../backup-restore.adoc) and, in apache/solr,
//! `ReplicationHandler.java` (doSnapShoot, getReplicationDetails), `SnapShooter.java`
//! (createSnapshot, createSnapAsync) and the test helper `CheckBackupStatus.java`; SolJSON wiki
//! for `json.nl`; SOLR-6153 and SOLR-18344 for the history of `details.backup`.
//! - `command=backup&name=N&location=L` is asynchronous and answers
//!   `{"responseHeader":{..},"status":"OK"}`; it writes `L/snapshot.N` (unnamed:
//!   `snapshot.<yyyyMMddHHmmssSSS>`, server local time). Refusals come back non-2xx with
//!   `{"error":{"msg":..}}` (e.g. "Snapshot directory already exists"), or 200 with
//!   `"status":"ERROR","message":..`.
//! - `command=details` has `details.backup` only once a backup has *finished*; until then it
//!   holds the previous backup's entry (SOLR-18344). Success: startTime, fileCount,
//!   status="success", snapshotCompletedAt, snapshotName [, directoryName]. Failure: only
//!   `snapShootException` (Solr <= 8) or `exception` (Solr 9), with no snapshotName. Newer Solr
//!   may report an in-progress entry or status "failed"; both are handled.
//! - `backup` is a plain NamedList: with the default `json.nl=flat` it is a flat array
//!   `[k1,v1,k2,v2,..]`; `json.nl=map` gives an object, `arrarr` `[[k,v],..]`, `arrmap`
//!   `[{k:v},..]`. All four are accepted.
//!
//! Because a failure entry carries no name, `details` is read once before triggering, and an
//! unnamed failure entry counts as ours only if it differs from that baseline (Solr's own
//! `CheckBackupStatus` compares against the previous completion time the same way).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::Value;

use crate::error::{Error, IoContext, Result};

/// Where the Solr snapshot comes from. Missing fields take the [`Default`] values when deserialized.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SolrSource {
    /// (a) a backup directory such as dir.root/solr4Backup/alfresco holding snapshot.* dirs
    pub backup_dir: Option<PathBuf>,
    /// (b) a Solr core URL, e.g. http://localhost:8983/solr/alfresco
    pub url: Option<String>,
    /// with url: where Solr writes the snapshot (the `location` param); the snapshot dir is
    /// location/snapshot.<name>. Must be absolute, and the same path must be readable here.
    pub location: Option<PathBuf>,
    /// how long to wait for an in-progress snapshot / a triggered backup (default 600 s)
    pub wait_secs: u64,
    /// poll interval (default 2 s; tests use small values)
    pub poll_millis: u64,
}

impl Default for SolrSource {
    fn default() -> Self {
        SolrSource { backup_dir: None, url: None, location: None, wait_secs: 600, poll_millis: 2000 }
    }
}

type Files = Vec<(String, u64)>;

/// A complete snapshot: its directory and the file list with sizes observed before the copy.
/// `name` is the part after `snapshot.` in the directory name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub name: String,
    /// relative path ('/'-separated), size; sorted
    pub files: Files,
}

/// Is this directory a complete Lucene/Solr snapshot? complete = a segments_N file present,
/// no write.lock anywhere in it.
pub fn is_complete(dir: &Path) -> Result<bool> {
    Ok(inspect(dir)?.1.is_none())
}

/// Lists `dir` and says why it is not a complete snapshot (None when it is). The caller keeps the
/// listing, so the files recorded are exactly the ones that were judged complete.
fn inspect(dir: &Path) -> Result<(Files, Option<String>)> {
    let files = list_files(dir)?;
    let reason = match files.iter().find(|(p, _)| p == "write.lock" || p.ends_with("/write.lock")) {
        Some((lock, _)) => Some(format!("{} exists", dir.join(lock).display())),
        None if !files.iter().any(|(p, _)| is_segments_file(p)) => {
            Some(format!("{} has no segments_N file", dir.display()))
        }
        None => None,
    };
    Ok((files, reason))
}

/// `segments_<generation in base 36>` at the top level; not `segments.gen` or temp files.
fn is_segments_file(rel: &str) -> bool {
    rel.strip_prefix("segments_")
        .is_some_and(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()))
}

/// Every non-directory under `dir` with its size, without following symlinks (a symlink is
/// recorded with its own size). Names that are not UTF-8 are shown lossily.
fn list_files(dir: &Path) -> Result<Files> {
    let mut out = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = todo.pop() {
        for entry in std::fs::read_dir(&abs).ctx(&abs)? {
            let entry = entry.ctx(&abs)?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).ctx(&path)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if meta.is_dir() {
                todo.push((path, child));
            } else {
                out.push((child, meta.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `snapshot.YYYYMMDDHHMMSSmmm` (what Solr names unnamed backups) as milliseconds, read as UTC.
fn name_timestamp_millis(name: &str) -> Option<i128> {
    if name.len() != 17 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fmt = time::macros::format_description!("[year][month][day][hour][minute][second][subsecond digits:3]");
    let t = time::PrimitiveDateTime::parse(name, &fmt).ok()?;
    Some(t.assume_utc().unix_timestamp_nanos() / 1_000_000)
}

/// The newest snapshot directory in `dir`, as (name after `snapshot.`, path). Ordering rule: a name
/// that parses as `YYYYMMDDHHMMSSmmm` sorts by that timestamp, any other name by its directory's
/// mtime; ties go to the greater name. Solr writes name timestamps in its local time zone, so
/// between a timestamped and a custom-named snapshot the order can be off by the UTC offset.
/// Entries that are not directories named `snapshot.*` are ignored.
fn newest_snapshot(dir: &Path) -> Result<(String, PathBuf)> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::InvalidInput(format!("Solr backup directory {} does not exist", dir.display())))
        }
        r => r.ctx(dir)?,
    };
    let mut newest: Option<(i128, String, PathBuf)> = None;
    for entry in entries {
        let entry = entry.ctx(dir)?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_prefix("snapshot.")) else { continue };
        let path = entry.path();
        // Solr's numberToKeep rotation may delete an old snapshot while we list: skip it.
        let meta = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            r => r.ctx(&path)?,
        };
        if !meta.is_dir() {
            continue;
        }
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        let key = name_timestamp_millis(name).unwrap_or_else(|| mtime.map_or(0, |d| d.as_millis() as i128));
        if newest.as_ref().is_none_or(|(k, n, _)| (key, name) > (*k, n.as_str())) {
            newest = Some((key, name.to_owned(), path));
        }
    }
    newest.map(|(_, name, path)| (name, path)).ok_or_else(|| {
        Error::Failed(format!(
            "no snapshot.* directories in Solr backup directory {} (has the Solr backup job run?)",
            dir.display()
        ))
    })
}

/// When waiting stops; `wait_secs` is capped at 30 days so a silly value cannot overflow `Instant`.
fn deadline(src: &SolrSource) -> Instant {
    Instant::now() + Duration::from_secs(src.wait_secs.min(30 * 24 * 3600))
}

/// Sleeps one poll interval (cut to the deadline); false once the deadline has passed.
fn wait_turn(src: &SolrSource, deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    std::thread::sleep(Duration::from_millis(src.poll_millis.max(1)).min(deadline - now));
    true
}

/// (a): the newest snapshot in `backup_dir` (ordering rule: see `newest_snapshot`). If it is still
/// being written, re-list every poll interval until it completes or `wait_secs` passes; never fall
/// back to an older one.
pub fn find_snapshot(src: &SolrSource) -> Result<Snapshot> {
    let backup_dir =
        src.backup_dir.as_deref().ok_or_else(|| Error::InvalidInput("solr: backup_dir is not set".into()))?;
    let deadline = deadline(src);
    loop {
        let (name, dir) = newest_snapshot(backup_dir)?;
        let reason = match inspect(&dir)? {
            (files, None) => return Ok(Snapshot { dir, name, files }),
            (_, Some(reason)) => reason,
        };
        if !wait_turn(src, deadline) {
            return Err(Error::Failed(format!(
                "newest Solr snapshot snapshot.{name} in {} is incomplete ({reason}) and did not complete within {} s: \
                 the nightly Solr backup job appears to be running, and the hot backup must not overlap it; \
                 schedule coffer outside the Solr backup window",
                backup_dir.display(),
                src.wait_secs
            )));
        }
    }
}

/// (b): ask Solr to write `location/snapshot.<name>`, then poll `details` until `details.backup`
/// reports `name` with status "success" (checked complete on disk), a failure, or `wait_secs` passes.
pub fn trigger_snapshot(src: &SolrSource, name: &str) -> Result<Snapshot> {
    let bad = |m: String| Error::InvalidInput(format!("solr: {m}"));
    let url = src.url.as_deref().ok_or_else(|| bad("url is not set".into()))?;
    let location = src.location.as_deref().ok_or_else(|| bad(format!("with url {url}, location must be set")))?;
    let valid = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if name.is_empty() || name.starts_with('.') || !name.chars().all(valid) {
        return Err(bad(format!("snapshot name {name:?} must be [A-Za-z0-9._-], not starting with '.'")));
    }
    // Solr resolves a relative location against its instance dir, which we cannot see.
    let loc = location.to_str().filter(|_| location.is_absolute());
    let loc = loc.ok_or_else(|| bad(format!("location {} must be an absolute UTF-8 path", location.display())))?;
    if !location.is_dir() {
        return Err(bad(format!(
            "location {loc} is not a directory on this host; Solr writes the snapshot there and coffer reads it from the same path"
        )));
    }
    let dir = location.join(format!("snapshot.{name}"));
    if std::fs::symlink_metadata(&dir).is_ok() {
        return Err(bad(format!("{} already exists", dir.display())));
    }

    let endpoint = format!("{}/replication", url.trim_end_matches('/'));
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(120))
        .build();
    let details = || get_json(&agent, &endpoint, &[("command", "details"), ("wt", "json")]);
    let baseline = backup_entry(&details()?);
    let params = [("command", "backup"), ("name", name), ("location", loc), ("wt", "json")];
    let reply = get_json(&agent, &endpoint, &params)?;
    if reply.get("status").and_then(Value::as_str) != Some("OK") {
        return Err(Error::Failed(format!("Solr at {endpoint} did not start backup {name}: {}", solr_message(&reply))));
    }

    let deadline = deadline(src);
    loop {
        let reply = details()?;
        if let Some(entry) = backup_entry(&reply) {
            let snap_name = field(&entry, "snapshotName").and_then(Value::as_str);
            let ours = snap_name == Some(name);
            // Failure entries carry no name: an unnamed one is ours only if it is new.
            if ours || (snap_name.is_none() && baseline.as_ref() != Some(&entry)) {
                if let Some(msg) = failure(&entry) {
                    return Err(Error::Failed(format!("Solr at {endpoint}: backup {name} failed: {msg}")));
                }
                if ours && field(&entry, "status").and_then(Value::as_str) == Some("success") {
                    break;
                }
            }
        }
        if !wait_turn(src, deadline) {
            let last = reply.pointer("/details/backup").map_or("none".into(), Value::to_string);
            return Err(Error::Failed(format!(
                "Solr at {endpoint}: backup {name} did not finish within {} s (last details.backup: {last})",
                src.wait_secs
            )));
        }
    }
    match inspect(&dir)? {
        (files, None) => Ok(Snapshot { dir, name: name.to_owned(), files }),
        (_, Some(reason)) => {
            Err(Error::Failed(format!("Solr at {endpoint} reported backup {name} complete, but {reason}")))
        }
    }
}

/// One GET against the replication handler, parsed as JSON. Every error names the URL and command.
fn get_json(agent: &ureq::Agent, endpoint: &str, params: &[(&str, &str)]) -> Result<Value> {
    let shown = format!("{endpoint}?command={}", params.first().map_or("", |p| p.1));
    let req = params.iter().fold(agent.get(endpoint), |r, (k, v)| r.query(k, v));
    let snippet = |s: &str| s.chars().take(300).collect::<String>();
    let fail = |m: String| Error::Failed(format!("Solr at {shown} {m}"));
    match req.call() {
        Ok(resp) => {
            let body = resp.into_string().map_err(|e| fail(format!("sent an unreadable reply: {e}")))?;
            serde_json::from_str(&body)
                .map_err(|e| fail(format!("sent a reply that is not JSON ({e}): {}", snippet(&body))))
        }
        Err(ureq::Error::Status(code, resp)) => {
            let body = resp.into_string().unwrap_or_default();
            let msg = serde_json::from_str::<Value>(&body).map_or_else(|_| snippet(&body), |v| solr_message(&v));
            Err(fail(format!("answered HTTP {code}: {msg}")))
        }
        Err(e) => Err(fail(format!("is unreachable: {e}"))),
    }
}

/// Solr's own explanation in a reply: error.msg, else message, else the whole reply.
fn solr_message(v: &Value) -> String {
    let pick = v.pointer("/error/msg").or_else(|| v.get("message")).or_else(|| v.get("error"));
    pick.map_or_else(|| v.to_string(), text_of).chars().take(500).collect()
}

fn text_of(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// `details.backup` as (name, value) pairs, whichever `json.nl` style rendered it.
fn backup_entry(reply: &Value) -> Option<Vec<(String, Value)>> {
    let key = |k: &Value| k.as_str().unwrap_or_default().to_owned();
    let pairs = |m: &serde_json::Map<String, Value>| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>();
    Some(match reply.pointer("/details/backup")? {
        Value::Object(m) => pairs(m),
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_array) => {
            a.iter().filter_map(|p| Some((key(p.get(0)?), p.get(1)?.clone()))).collect()
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_object) => {
            a.iter().filter_map(Value::as_object).flat_map(pairs).collect()
        }
        Value::Array(a) => a.chunks_exact(2).map(|c| (key(&c[0]), c[1].clone())).collect(),
        _ => return None,
    })
}

fn field<'a>(entry: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    entry.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The failure message of a backup entry, if it reports one.
fn failure(entry: &[(String, Value)]) -> Option<String> {
    let failed = field(entry, "status").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("failed"));
    match field(entry, "exception").or_else(|| field(entry, "snapShootException")) {
        Some(e) => Some(text_of(e)),
        None if failed => Some("status \"failed\" (Solr gave no message)".into()),
        None => None,
    }
}

/// Dispatch on backup_dir vs url (exactly one must be set, else InvalidInput).
pub fn capture(src: &SolrSource, unique_name: &str) -> Result<Snapshot> {
    match (&src.backup_dir, &src.url) {
        (Some(_), None) if src.location.is_none() => find_snapshot(src),
        (None, Some(_)) => trigger_snapshot(src, unique_name),
        _ => Err(Error::InvalidInput(
            "solr: set exactly one of backup_dir (use the Solr backup job's snapshots) or url with location \
             (trigger a snapshot through Solr's replication handler)"
                .into(),
        )),
    }
}

/// Re-lists the snapshot dir after it was archived: if the file list or any size differs from
/// `snap.files`, the snapshot changed while being copied and the set must fail.
pub fn confirm_unchanged(snap: &Snapshot) -> Result<()> {
    let dir = snap.dir.display();
    let now = match list_files(&snap.dir) {
        Err(_) if !snap.dir.exists() => {
            return Err(Error::Failed(format!(
                "Solr snapshot {dir} disappeared while it was being archived (Solr's backup rotation?); this backup set fails"
            )))
        }
        r => r?,
    };
    let before: BTreeMap<&str, u64> = snap.files.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    let after: BTreeMap<&str, u64> = now.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    let mut changes: Vec<String> = before
        .iter()
        .filter_map(|(p, s)| match after.get(p) {
            None => Some(format!("{p} removed")),
            Some(n) if n != s => Some(format!("{p} size {s} -> {n}")),
            Some(_) => None,
        })
        .collect();
    changes.extend(after.keys().filter(|p| !before.contains_key(*p)).map(|p| format!("{p} added")));
    if changes.is_empty() {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "Solr snapshot {dir} changed while it was being archived, so the copy is not a consistent snapshot \
         and this backup set fails: {}",
        changes.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;
    use std::fs;
    use std::io::{BufRead, BufReader, Write};

    type Tree<'a> = &'a [(&'a str, &'a str)];
    const DONE: Tree = &[("segments_2", "segs"), ("_0.cfs", "abc")];

    fn snap(root: &Path, name: &str, files: Tree) -> PathBuf {
        let dir = root.join(format!("snapshot.{name}"));
        for (rel, body) in files {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, body).expect("write");
        }
        dir
    }

    fn dir_source(dir: &Path) -> SolrSource {
        SolrSource { backup_dir: Some(dir.into()), wait_secs: 0, poll_millis: 1, ..Default::default() }
    }

    #[test]
    fn newest_complete_snapshot_is_chosen() {
        let t = tempfile::tempdir().expect("tempdir");
        snap(t.path(), "20240102020000000", DONE);
        // Older by name but written last (newer mtime): the name's timestamp decides.
        snap(t.path(), "20240101020000000", DONE);
        fs::write(t.path().join("README"), "not a snapshot").expect("write");
        fs::write(t.path().join("snapshot.notes.txt"), "a file, not a snapshot").expect("write");
        fs::create_dir(t.path().join("other")).expect("mkdir");
        let s = find_snapshot(&dir_source(t.path())).expect("snapshot");
        assert_eq!(
            (s.name.as_str(), s.dir.clone()),
            ("20240102020000000", t.path().join("snapshot.20240102020000000"))
        );
        assert_eq!(s.files, vec![("_0.cfs".to_string(), 3), ("segments_2".to_string(), 4)]);
    }

    #[test]
    fn incomplete_newest_snapshot_fails_after_waiting() {
        let cases: &[(Tree, &str)] = &[
            (&[("segments_1", "s"), ("write.lock", "")], "write.lock"),
            (&[("_0.cfs", "abc"), ("segments.gen", "x")], "has no segments_N file"),
        ];
        for (files, why) in cases {
            let t = tempfile::tempdir().expect("tempdir");
            snap(t.path(), "20240101020000000", DONE);
            snap(t.path(), "20240102020000000", files);
            let e = find_snapshot(&dir_source(t.path())).expect_err("incomplete");
            let msg = e.to_string();
            assert_eq!(e.kind(), ErrorKind::Failed);
            assert!(msg.contains(why) && msg.contains("Solr backup job") && msg.contains("must not overlap"), "{msg}");
        }
    }

    #[test]
    fn missing_or_empty_backup_dir_names_the_path() {
        let t = tempfile::tempdir().expect("tempdir");
        let missing = t.path().join("solr4Backup");
        let e = find_snapshot(&dir_source(&missing)).expect_err("missing");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains(&missing.display().to_string()));
        let e = find_snapshot(&dir_source(t.path())).expect_err("empty");
        assert!(e.to_string().contains(&t.path().display().to_string()));
    }

    #[test]
    fn completeness_rules() {
        let t = tempfile::tempdir().expect("tempdir");
        assert!(is_complete(&snap(t.path(), "a", DONE)).expect("a"));
        assert!(!is_complete(&snap(t.path(), "b", &[("segments_1", "s"), ("sub/write.lock", "")])).expect("b"));
        assert!(!is_complete(&snap(t.path(), "c", &[("sub/segments_1", "s")])).expect("c"));
        assert!(is_complete(&t.path().join("nope")).is_err());
        assert!(
            is_segments_file("segments_a1") && !is_segments_file("segments_") && !is_segments_file("segments_1.tmp")
        );
        assert_eq!(name_timestamp_millis("19700101000000001"), Some(1));
        assert_eq!(name_timestamp_millis("20241301000000000"), None);
    }

    #[test]
    fn confirm_unchanged_detects_added_file_and_size_change() {
        let t = tempfile::tempdir().expect("tempdir");
        snap(t.path(), "20240101020000000", DONE);
        let s = find_snapshot(&dir_source(t.path())).expect("snapshot");
        confirm_unchanged(&s).expect("unchanged");
        fs::write(s.dir.join("_1.cfs"), "new").expect("write");
        assert!(confirm_unchanged(&s).expect_err("added").to_string().contains("_1.cfs added"));
        fs::remove_file(s.dir.join("_1.cfs")).expect("rm");
        fs::write(s.dir.join("_0.cfs"), "abcdef").expect("write");
        assert!(confirm_unchanged(&s).expect_err("grew").to_string().contains("_0.cfs size 3 -> 6"));
        fs::remove_dir_all(&s.dir).expect("rm");
        assert!(confirm_unchanged(&s).expect_err("gone").to_string().contains("disappeared"));
    }

    /// A stand-in for Solr's /replication handler, because Solr cannot be installed here. It answers
    /// command=backup as Solr does (writes `location`/snapshot.<name>, replies status OK) and
    /// command=details with `baseline` as details.backup before the backup and the `script` entries
    /// after it, one per call (the last repeats). `http500` answers everything with Solr's error body.
    struct StandIn {
        location: PathBuf,
        baseline: Option<Value>,
        script: Vec<Value>,
        http500: bool,
    }

    fn serve(spec: StandIn) -> SolrSource {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/solr/alfresco", listener.local_addr().expect("addr"));
        let location = spec.location.clone();
        std::thread::spawn(move || {
            let (mut polls, mut backed_up) = (0, false);
            for stream in listener.incoming() {
                let mut stream = stream.expect("accept");
                let mut lines = BufReader::new(stream.try_clone().expect("clone")).lines();
                let request = lines.next().expect("request").expect("line");
                while lines.next().and_then(|l| l.ok()).is_some_and(|l| !l.is_empty()) {}
                let target = request.split(' ').nth(1).expect("target");
                let (path, query) = target.split_once('?').expect("query");
                let q: BTreeMap<&str, &str> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
                assert_eq!((path, q.get("wt")), ("/solr/alfresco/replication", Some(&"json")));
                let (code, body) = match q.get("command") {
                    _ if spec.http500 => (
                        500,
                        json!({"responseHeader": {"status": 500, "QTime": 0},
                        "error": {"msg": "java.lang.OutOfMemoryError: Java heap space", "code": 500}}),
                    ),
                    Some(&"backup") => {
                        let encoded = spec.location.to_str().expect("utf8").replace('/', "%2F");
                        assert_eq!(q.get("location"), Some(&encoded.as_str()));
                        let dir = spec.location.join(format!("snapshot.{}", q["name"]));
                        fs::create_dir(&dir).expect("mkdir");
                        fs::write(dir.join("segments_1"), "segs").expect("write");
                        fs::write(dir.join("_0.cfs"), "index").expect("write");
                        backed_up = true;
                        (200, json!({"responseHeader": {"status": 0, "QTime": 1}, "status": "OK"}))
                    }
                    Some(&"details") => {
                        let mut details = json!({"indexSize": "1.2 KB", "indexPath": "/var/solr/data/index/",
                            "commits": [], "isMaster": "true", "isSlave": "false", "generation": 1});
                        polls += usize::from(backed_up);
                        let backup = if backed_up {
                            spec.script.get(polls - 1).or(spec.script.last())
                        } else {
                            spec.baseline.as_ref()
                        };
                        if let Some(b) = backup {
                            details["backup"] = b.clone();
                        }
                        (200, json!({"responseHeader": {"status": 0, "QTime": 0}, "details": details, "status": "OK"}))
                    }
                    _ => (400, json!({"error": {"msg": "unknown command", "code": 400}})),
                };
                let body = body.to_string();
                let head = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                );
                let _ = write!(stream, "{head}Connection: close\r\n\r\n{body}");
            }
        });
        SolrSource { url: Some(url), location: Some(location), wait_secs: 30, poll_millis: 1, ..Default::default() }
    }

    fn stand_in(location: &Path, baseline: Option<Value>, script: Vec<Value>) -> SolrSource {
        serve(StandIn { location: location.into(), baseline, script, http500: false })
    }

    fn success(name: &str) -> Value {
        json!([
            "startTime",
            "Tue Jan 30 14:32:12 UTC 2024",
            "fileCount",
            2,
            "status",
            "success",
            "snapshotCompletedAt",
            "Tue Jan 30 14:32:13 UTC 2024",
            "snapshotName",
            name
        ])
    }

    #[test]
    fn triggered_backup_polls_until_success() {
        let t = tempfile::tempdir().expect("tempdir");
        let name = "coffer-20240130T143200";
        let in_progress = json!(["startTime", "Tue Jan 30 14:32:12 UTC 2024", "snapshotName", name]);
        let s = capture(&stand_in(t.path(), None, vec![in_progress, success(name)]), name).expect("snapshot");
        assert_eq!(s.dir, t.path().join(format!("snapshot.{name}")));
        assert_eq!(s.files, vec![("_0.cfs".to_string(), 5), ("segments_1".to_string(), 4)]);
    }

    #[test]
    fn triggered_backup_reads_object_rendering_and_ignores_stale_failure() {
        let t = tempfile::tempdir().expect("tempdir");
        let stale = json!(["exception", "an earlier backup failed"]);
        let ok = json!({"startTime": "x", "fileCount": 2, "status": "success", "snapshotName": "n1"});
        assert_eq!(
            capture(&stand_in(t.path(), Some(stale.clone()), vec![stale, ok]), "n1").expect("snapshot").name,
            "n1"
        );
    }

    #[test]
    fn triggered_backup_reports_solr_failure() {
        let t = tempfile::tempdir().expect("tempdir");
        let failed =
            json!(["startTime", "x", "status", "failed", "snapshotName", "n2", "exception", "No space left on device"]);
        let msg =
            capture(&stand_in(t.path(), Some(success("older")), vec![failed]), "n2").expect_err("failed").to_string();
        assert!(msg.contains("backup n2 failed: No space left on device"), "{msg}");
        // Solr 9 shape: an unnamed entry holding only the exception.
        let msg =
            capture(&stand_in(t.path(), None, vec![json!(["exception", "disk full"])]), "n3").expect_err("failed");
        assert!(msg.to_string().contains("failed: disk full"), "{msg}");
    }

    #[test]
    fn triggered_backup_times_out() {
        let t = tempfile::tempdir().expect("tempdir");
        let src = SolrSource { wait_secs: 0, ..stand_in(t.path(), None, vec![]) };
        let msg = capture(&src, "n4").expect_err("timeout").to_string();
        assert!(msg.contains("did not finish within 0 s"), "{msg}");
    }

    #[test]
    fn http_500_and_unreachable_name_the_url() {
        let t = tempfile::tempdir().expect("tempdir");
        let src = serve(StandIn { location: t.path().into(), baseline: None, script: vec![], http500: true });
        let msg = capture(&src, "n5").expect_err("500").to_string();
        let url = src.url.expect("url");
        assert!(msg.contains(&url) && msg.contains("HTTP 500") && msg.contains("Java heap space"), "{msg}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/solr/alfresco", closed.local_addr().expect("addr"));
        drop(closed);
        let src = SolrSource { url: Some(url.clone()), location: Some(t.path().into()), ..Default::default() };
        let msg = capture(&src, "n6").expect_err("down").to_string();
        assert!(msg.contains(&url) && msg.contains("unreachable"), "{msg}");
    }

    #[test]
    fn bad_config_is_invalid_input() {
        let t = tempfile::tempdir().expect("tempdir");
        let both =
            SolrSource { backup_dir: Some("/x".into()), url: Some("http://h/solr/c".into()), ..Default::default() };
        assert_eq!(capture(&both, "n").expect_err("both").kind(), ErrorKind::InvalidInput);
        assert_eq!(capture(&SolrSource::default(), "n").expect_err("none").kind(), ErrorKind::InvalidInput);
        let src = SolrSource {
            url: Some("http://127.0.0.1:9/solr/c".into()),
            location: Some(t.path().into()),
            ..Default::default()
        };
        assert_eq!(capture(&src, "../x").expect_err("name").kind(), ErrorKind::InvalidInput);
        let rel = SolrSource { location: Some("backups".into()), ..src.clone() };
        assert_eq!(capture(&rel, "n").expect_err("relative").kind(), ErrorKind::InvalidInput);
        let none = SolrSource { location: None, ..src };
        assert_eq!(capture(&none, "n").expect_err("no location").kind(), ErrorKind::InvalidInput);
    }
}
