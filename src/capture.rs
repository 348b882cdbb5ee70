//! Components that capture themselves (command output, Solr snapshots) plug into a backup
//! through this trait; directory trees are handled by the orchestrator directly.

use crate::chunker::Params;
use crate::error::Result;
use crate::set::Component;
use crate::sink::Sink;

/// What a capture gets to work with.
pub struct Context<'a> {
    pub sink: &'a Sink<'a>,
    pub params: Params,
    pub scan_start_ns: i64,
    pub notify: &'a (dyn Fn(String) + Send + Sync),
}

pub trait Capture: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;
    /// Captures the component; `started`/`finished` are filled in by the orchestrator.
    fn capture(&self, cx: &Context) -> Result<Component>;
}
