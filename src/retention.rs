//! Retention: which sets `forget` keeps, and why.
//!
//! [`decide`] is pure: it gets the sets of one name with their times and tags and returns a
//! keep-or-forget decision per set with the rule(s) that kept it. It reads no clock; every
//! rule is relative to the sets themselves. Semantics follow restic's `forget`:
//!
//! - `keep_last N`: the N newest sets.
//! - `keep_hourly/daily/weekly/monthly/yearly N`: going from the newest set back, the newest
//!   set of each hour/day/ISO week/month/year that has sets, for the N most recent such
//!   periods. Periods are UTC.
//! - `keep_within D`: sets newer than (newest set's time − D).
//! - `keep_tags`: sets carrying any of these tags.
//!
//! Invariants: a policy with no rule is an error (it would forget everything); the newest set
//! is always kept (reason `newest` if no rule chose it). [`forget`] applies a policy to a
//! repository per set name; it only ever removes `sets/<id>` files (the first step of the
//! format's delete order), under a shared lease; freeing space is `prune`'s job.

use crate::error::{Error, Result};
use crate::id::SetId;
use crate::lock::{Lease, LeaseKind};
use crate::repo::Repo;
use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};

/// A retention policy. Zero counts and an empty tag list mean "rule not used".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
    /// Seconds (see [`crate::verify::parse_age`]).
    pub keep_within: Option<i64>,
    pub keep_tags: Vec<String>,
}

impl Policy {
    /// True when no rule is set (such a policy is refused).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_hourly == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.keep_yearly == 0
            && self.keep_within.is_none()
            && self.keep_tags.is_empty()
    }
}

/// Why a set is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within,
    Tag,
    /// The newest set of a name, which is never forgotten.
    Newest,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Last => "last",
            Reason::Hourly => "hourly",
            Reason::Daily => "daily",
            Reason::Weekly => "weekly",
            Reason::Monthly => "monthly",
            Reason::Yearly => "yearly",
            Reason::Within => "within",
            Reason::Tag => "tag",
            Reason::Newest => "newest",
        }
    }
}

/// A set as the policy sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: SetId,
    pub time: OffsetDateTime,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: SetId,
    pub time: OffsetDateTime,
    /// Empty: the set is forgotten.
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The period a time falls into for each bucket rule (UTC).
fn bucket(rule: Reason, t: OffsetDateTime) -> i64 {
    let t = t.to_offset(UtcOffset::UTC);
    match rule {
        Reason::Hourly => t.unix_timestamp().div_euclid(3600),
        Reason::Daily => t.unix_timestamp().div_euclid(86_400),
        Reason::Weekly => {
            let (y, w, _) = t.date().to_iso_week_date();
            y as i64 * 100 + w as i64
        }
        Reason::Monthly => t.year() as i64 * 12 + t.month() as i64,
        Reason::Yearly => t.year() as i64,
        _ => unreachable!("not a bucket rule"),
    }
}

/// Decides, for the sets of one name, which to keep. The result is newest first (by time,
/// then id). Errors only on an empty policy.
pub fn decide(policy: &Policy, sets: &[Candidate]) -> Result<Vec<Decision>> {
    if policy.is_empty() {
        return Err(Error::InvalidInput(
            "no keep rule given (--keep-last, --keep-daily, … or a [retention] table); refusing to forget every set"
                .into(),
        ));
    }
    let mut order: Vec<&Candidate> = sets.iter().collect();
    order.sort_by_key(|c| std::cmp::Reverse((c.time, c.id)));
    let Some(newest) = order.first().map(|c| c.time) else { return Ok(Vec::new()) };
    let mut buckets: Vec<(Reason, u32, Option<i64>)> = [
        (Reason::Hourly, policy.keep_hourly),
        (Reason::Daily, policy.keep_daily),
        (Reason::Weekly, policy.keep_weekly),
        (Reason::Monthly, policy.keep_monthly),
        (Reason::Yearly, policy.keep_yearly),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(r, n)| (r, n, None))
    .collect();
    let within_since = policy.keep_within.map(|s| newest - time::Duration::seconds(s));
    let mut out = Vec::with_capacity(order.len());
    for (nr, c) in order.iter().enumerate() {
        let mut reasons = Vec::new();
        if (nr as u64) < policy.keep_last as u64 {
            reasons.push(Reason::Last);
        }
        for (rule, left, last) in buckets.iter_mut() {
            let b = bucket(*rule, c.time);
            // Newest first, so the first set seen in a period is that period's newest.
            if *left > 0 && *last != Some(b) {
                reasons.push(*rule);
                *last = Some(b);
                *left -= 1;
            }
        }
        if within_since.is_some_and(|since| c.time > since) {
            reasons.push(Reason::Within);
        }
        if c.tags.iter().any(|t| policy.keep_tags.contains(t)) {
            reasons.push(Reason::Tag);
        }
        if nr == 0 && reasons.is_empty() {
            reasons.push(Reason::Newest);
        }
        out.push(Decision { id: c.id, time: c.time, reasons });
    }
    Ok(out)
}

/// What `forget` does.
#[derive(Debug, Clone)]
pub struct ForgetOptions {
    pub policy: Policy,
    /// Only sets of this name (None: every name, each with the same policy).
    pub name: Option<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetOutcome {
    pub id: SetId,
    pub started: String,
    pub tags: Vec<String>,
    pub keep: bool,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: String,
    /// Newest first.
    pub sets: Vec<SetOutcome>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    pub dry_run: bool,
    pub groups: Vec<Group>,
    pub kept: u64,
    /// Forgotten (with `dry_run`: would be).
    pub removed: u64,
}

/// Applies the policy to every set name (or the one asked for) and removes the manifests of
/// the sets it does not keep, then fsyncs `sets/`. With `dry_run` nothing is changed and no
/// lease is taken.
pub fn forget(repo: &Repo, opts: &ForgetOptions, notify: &mut dyn FnMut(String)) -> Result<ForgetReport> {
    if opts.policy.is_empty() {
        decide(&opts.policy, &[])?;
    }
    if !opts.dry_run {
        repo.writable("forget")?;
    }
    let _lease = if opts.dry_run {
        None
    } else {
        Some(Lease::acquire(repo.storage.clone(), LeaseKind::Shared, "forget", notify)?)
    };
    let mut by_name: std::collections::BTreeMap<String, Vec<(SetId, crate::set::Manifest)>> = Default::default();
    for (id, m) in repo.list_sets()? {
        if opts.name.as_ref().is_none_or(|n| *n == m.name) {
            by_name.entry(m.name.clone()).or_default().push((id, m));
        }
    }
    let mut rep = ForgetReport { dry_run: opts.dry_run, groups: Vec::new(), kept: 0, removed: 0 };
    let sets_dir = repo.sets_dir();
    for (name, sets) in by_name {
        let mut cands = Vec::with_capacity(sets.len());
        for (id, m) in &sets {
            // `Manifest::decode` already checked that the time parses.
            let time = crate::clock::parse(&m.started)
                .map_err(|e| Error::corrupt(sets_dir.join(id.to_hex()), 0, format!("set time: {e}")))?;
            cands.push(Candidate { id: *id, time, tags: m.tags.clone() });
        }
        let decisions = decide(&opts.policy, &cands)?;
        let mut group = Group { name, sets: Vec::new() };
        for d in decisions {
            let m = &sets.iter().find(|(id, _)| *id == d.id).expect("decided sets come from the input").1;
            if d.keep() {
                rep.kept += 1;
            } else {
                rep.removed += 1;
                if !opts.dry_run {
                    repo.remove_manifest(&d.id)?;
                }
            }
            group.sets.push(SetOutcome {
                id: d.id,
                started: m.started.clone(),
                tags: m.tags.clone(),
                keep: d.keep(),
                reasons: d.reasons,
            });
        }
        rep.groups.push(group);
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use Reason::*;

    /// A synthetic calendar. Edges: s01 is in ISO week 2025-W01 though its year is 2024; s02
    /// and s03 share an hour; s07/s08 share a day; s10/s11 share an hour and s12 is exactly
    /// one hour after s10.
    const CALENDAR: &[(&str, &str, &[&str])] = &[
        ("s01", "2024-12-31T23:00:00Z", &[]),
        ("s02", "2025-01-01T01:00:00Z", &[]),
        ("s03", "2025-01-01T01:30:00Z", &["keep"]),
        ("s04", "2025-01-01T02:10:00Z", &[]),
        ("s05", "2025-01-02T10:00:00Z", &["audit"]),
        ("s06", "2025-01-05T10:00:00Z", &[]),
        ("s07", "2025-01-06T09:00:00Z", &[]),
        ("s08", "2025-01-06T21:00:00Z", &[]),
        ("s09", "2025-02-01T00:00:00Z", &[]),
        ("s10", "2025-03-15T12:00:00Z", &[]),
        ("s11", "2025-03-15T12:59:00Z", &[]),
        ("s12", "2025-03-15T13:00:00Z", &[]),
    ];

    fn label_id(label: &str) -> SetId {
        SetId(Id(*blake3::hash(label.as_bytes()).as_bytes()))
    }

    fn calendar() -> Vec<Candidate> {
        // Given out of order on purpose: decide sorts.
        CALENDAR
            .iter()
            .rev()
            .map(|(l, t, tags)| Candidate {
                id: label_id(l),
                time: crate::clock::parse(t).unwrap(),
                tags: tags.iter().map(|s| s.to_string()).collect(),
            })
            .collect()
    }

    fn kept(policy: &Policy) -> Vec<(&'static str, Vec<Reason>)> {
        let d = decide(policy, &calendar()).unwrap();
        assert_eq!(d.len(), CALENDAR.len());
        let label = |id: SetId| CALENDAR.iter().find(|(l, _, _)| label_id(l) == id).unwrap().0;
        d.into_iter().filter(|d| d.keep()).map(|d| (label(d.id), d.reasons)).collect()
    }

    fn p(f: impl FnOnce(&mut Policy)) -> Policy {
        let mut p = Policy::default();
        f(&mut p);
        p
    }

    #[test]
    fn each_rule_and_combinations_keep_what_the_table_says() {
        type Row = (&'static str, Policy, Vec<(&'static str, Vec<Reason>)>);
        let table: Vec<Row> = vec![
            ("last 3", p(|p| p.keep_last = 3), vec![("s12", vec![Last]), ("s11", vec![Last]), ("s10", vec![Last])]),
            (
                "hourly 3",
                p(|p| p.keep_hourly = 3),
                vec![("s12", vec![Hourly]), ("s11", vec![Hourly]), ("s09", vec![Hourly])],
            ),
            (
                "hourly 7: s03 is its hour's newest, s02 is not",
                p(|p| p.keep_hourly = 7),
                vec![
                    ("s12", vec![Hourly]),
                    ("s11", vec![Hourly]),
                    ("s09", vec![Hourly]),
                    ("s08", vec![Hourly]),
                    ("s07", vec![Hourly]),
                    ("s06", vec![Hourly]),
                    ("s05", vec![Hourly]),
                ],
            ),
            (
                "daily 3",
                p(|p| p.keep_daily = 3),
                vec![("s12", vec![Daily]), ("s09", vec![Daily]), ("s08", vec![Daily])],
            ),
            (
                "daily 6",
                p(|p| p.keep_daily = 6),
                vec![
                    ("s12", vec![Daily]),
                    ("s09", vec![Daily]),
                    ("s08", vec![Daily]),
                    ("s06", vec![Daily]),
                    ("s05", vec![Daily]),
                    ("s04", vec![Daily]),
                ],
            ),
            (
                "weekly 5: only four weeks have sets; 2024-12-31 is in ISO week 2025-W01",
                p(|p| p.keep_weekly = 5),
                vec![("s12", vec![Weekly]), ("s09", vec![Weekly]), ("s08", vec![Weekly]), ("s06", vec![Weekly])],
            ),
            (
                "monthly 4",
                p(|p| p.keep_monthly = 4),
                vec![("s12", vec![Monthly]), ("s09", vec![Monthly]), ("s08", vec![Monthly]), ("s01", vec![Monthly])],
            ),
            ("yearly 5", p(|p| p.keep_yearly = 5), vec![("s12", vec![Yearly]), ("s01", vec![Yearly])]),
            (
                "within 1h is strict: s10 is exactly 1h older",
                p(|p| p.keep_within = Some(3600)),
                vec![("s12", vec![Within]), ("s11", vec![Within])],
            ),
            (
                "within 2h",
                p(|p| p.keep_within = Some(7200)),
                vec![("s12", vec![Within]), ("s11", vec![Within]), ("s10", vec![Within])],
            ),
            (
                "tag: the newest is kept too",
                p(|p| p.keep_tags = vec!["keep".into()]),
                vec![("s12", vec![Newest]), ("s03", vec![Tag])],
            ),
            (
                "two tags",
                p(|p| p.keep_tags = vec!["keep".into(), "audit".into()]),
                vec![("s12", vec![Newest]), ("s05", vec![Tag]), ("s03", vec![Tag])],
            ),
            (
                "unknown tag: only the newest survives",
                p(|p| p.keep_tags = vec!["nope".into()]),
                vec![("s12", vec![Newest])],
            ),
            ("within 0: only the newest", p(|p| p.keep_within = Some(0)), vec![("s12", vec![Newest])]),
            (
                "last 1 + daily 2 + monthly 3",
                p(|p| {
                    p.keep_last = 1;
                    p.keep_daily = 2;
                    p.keep_monthly = 3;
                }),
                vec![("s12", vec![Last, Daily, Monthly]), ("s09", vec![Daily, Monthly]), ("s08", vec![Monthly])],
            ),
            (
                "daily 2 + weekly 3 + yearly 2 + tag",
                p(|p| {
                    p.keep_daily = 2;
                    p.keep_weekly = 3;
                    p.keep_yearly = 2;
                    p.keep_tags = vec!["audit".into()];
                }),
                vec![
                    ("s12", vec![Daily, Weekly, Yearly]),
                    ("s09", vec![Daily, Weekly]),
                    ("s08", vec![Weekly]),
                    ("s05", vec![Tag]),
                    ("s01", vec![Yearly]),
                ],
            ),
            (
                "more than there are",
                p(|p| p.keep_last = 100),
                CALENDAR.iter().rev().map(|(l, _, _)| (*l, vec![Last])).collect(),
            ),
        ];
        for (what, policy, want) in table {
            assert_eq!(kept(&policy), want, "{what}");
        }
    }

    #[test]
    fn an_empty_policy_is_refused() {
        let err = decide(&Policy::default(), &calendar()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    }

    #[test]
    fn the_only_set_is_never_forgotten_and_no_sets_is_fine() {
        let one = &calendar()[..1];
        let d = decide(&p(|p| p.keep_tags = vec!["x".into()]), one).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].reasons, vec![Newest]);
        assert!(decide(&p(|p| p.keep_last = 1), &[]).unwrap().is_empty());
    }

    #[test]
    fn buckets_are_utc() {
        // 23:30 at -05:00 is 04:30 UTC the next day: a different UTC day than 03:00Z.
        let a = crate::clock::parse("2025-06-01T23:30:00-05:00").unwrap();
        let b = crate::clock::parse("2025-06-02T03:00:00Z").unwrap();
        assert_eq!(bucket(Daily, a), bucket(Daily, b));
        assert_ne!(bucket(Hourly, a), bucket(Hourly, b));
    }
}
