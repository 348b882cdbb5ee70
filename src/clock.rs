//! Time: an injectable clock and the RFC 3339 UTC form every persisted time uses.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Source of "now", injected so tests control set times (retention, ordering checks).
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).expect("any UTC time formats as RFC 3339")
}

pub fn parse(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("{s:?}: {e}"))
}

pub fn unix_nanos(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos()
}

/// Now, in whole seconds since the epoch (catalog bookkeeping times).
pub fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
