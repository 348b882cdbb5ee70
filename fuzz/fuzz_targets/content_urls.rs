//! `content_urls`: the plain-SQL dump reader of the consistency check
//! (`parse_plain_sql` with the Alfresco defaults). No panic on any input.
#![no_main]

use coffer::consistency::{parse_plain_sql, ConsistencySettings};
use libfuzzer_sys::fuzz_target;
use std::io::BufReader;

fuzz_target!(|data: &[u8]| {
    // The first byte sizes the reader's buffer (1..=256 bytes), so lines straddling buffer
    // refills, the `\.` terminator split across reads etc. are exercised too.
    let Some((&cap, rest)) = data.split_first() else { return };
    let settings = ConsistencySettings::default();
    let reader = BufReader::with_capacity(cap as usize + 1, rest);
    let small = parse_plain_sql(reader, &settings).ok();
    // The same bytes through a plain slice reader (one buffer holding everything) must give
    // the same answer: rows must not depend on where reads happen to split lines.
    let whole = parse_plain_sql(rest, &settings).ok();
    assert_eq!(small, whole, "result depends on the reader's buffer size ({})", cap as usize + 1);
});
