//! A repository in an S3 bucket (AWS, Ceph RGW, MinIO, Garage), through `opendal`.
//!
//! Objects live at `PREFIX/config` and `PREFIX/<kind>/<name>`. Every guarantee of the
//! [`Storage`] trait holds on S3 as it is today: a PUT is atomic (an object is whole or
//! absent), reads and HEADs after a PUT or DELETE see it (S3 has been strongly consistent
//! since 2020; Garage is read-after-write for one key), and listings may lag.
//!
//! opendal is async; coffer's pipeline is threads. Each `S3Storage` owns a small tokio
//! runtime and every call is `block_on` from the caller's thread, so many threads can have
//! requests in flight at once (restore's range reads, the pack writer's uploads) while the
//! runtime's two workers drive the sockets. Retries (exponential backoff with jitter, bounded),
//! timeouts and a concurrency limit are opendal's layers; a call that fails after its retries
//! says how long it tried.

use super::{check_name, check_range, Kind, ObjectInfo, Storage};
use crate::error::{Error, Result};
use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};
use std::future::IntoFuture;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Requests in flight at once, over all threads (uploads, range reads, listings).
pub const MAX_REQUESTS: usize = 32;
/// Retries of one request after its first failure; with the delays below a dead endpoint
/// is given up on after about half a minute.
pub const RETRIES: usize = 6;
const MIN_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(10);
/// A request without a body must be answered within this.
const TIMEOUT: Duration = Duration::from_secs(60);
/// One read or write of a body: a 16 MiB pack at 1 Mbit/s takes 134 s.
const IO_TIMEOUT: Duration = Duration::from_secs(300);

/// Where a repository in a bucket is: `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `http[s]://HOST[:PORT]`.
    pub endpoint: String,
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's top.
    pub prefix: String,
}

impl S3Location {
    /// Parses the part after `s3:` (restic's form).
    pub fn parse(url: &str) -> Result<S3Location> {
        let bad = |why: &str| {
            Error::InvalidInput(format!("s3:{url}: {why} (the form is s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX])"))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no http:// or https://"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        let (host, path) = rest.split_once('/').ok_or_else(|| bad("no bucket"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(bad(&format!("{bucket:?} is not a bucket name (3-63 of a-z, 0-9, '-', '.')")));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p.is_empty() || p == "." || p == "..") && !prefix.is_empty() {
            return Err(bad("the prefix has an empty, '.' or '..' part"));
        }
        Ok(S3Location { endpoint: format!("{scheme}://{host}"), bucket: bucket.into(), prefix: prefix.into() })
    }

    pub fn url(&self) -> String {
        match self.prefix.as_str() {
            "" => format!("s3:{}/{}", self.endpoint, self.bucket),
            p => format!("s3:{}/{}/{p}", self.endpoint, self.bucket),
        }
    }
}

/// Credentials and region: from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_DEFAULT_REGION` / `AWS_REGION`, or a profile of `~/.aws/credentials`.
#[derive(Debug, Clone, Default)]
pub struct S3Credentials {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
}

impl S3Credentials {
    /// With `profile` (a set definition's `s3_profile`) when no access key is given.
    pub fn or_profile(mut self, profile: Option<String>) -> S3Credentials {
        if self.access_key_id.is_none() && profile.is_some() {
            self.profile = profile;
        }
        self
    }

    pub fn from_env() -> S3Credentials {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        S3Credentials {
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            region: var("AWS_DEFAULT_REGION").or_else(|| var("AWS_REGION")),
            profile: var("AWS_PROFILE"),
        }
    }
}

pub struct S3Storage {
    location: S3Location,
    /// Retries of a failed request ([`RETRIES`], or `COFFER_S3_RETRIES`).
    retries: usize,
    op: Operator,
    runtime: tokio::runtime::Runtime,
}

impl S3Storage {
    /// Opens the bucket prefix with [`RETRIES`] retries per request (or `COFFER_S3_RETRIES`).
    pub fn open(location: &S3Location, creds: &S3Credentials) -> Result<S3Storage> {
        let retries = std::env::var("COFFER_S3_RETRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(RETRIES);
        S3Storage::open_with_retries(location, creds, retries)
    }

    pub fn open_with_retries(location: &S3Location, creds: &S3Credentials, retries: usize) -> Result<S3Storage> {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| install_transport(&location.endpoint));
        let mut b = opendal::services::S3::default()
            .endpoint(&location.endpoint)
            .bucket(&location.bucket)
            .root(&format!("/{}", location.prefix))
            .region(creds.region.as_deref().unwrap_or("us-east-1"))
            // Not an EC2 instance: asking its metadata service would only add a timeout.
            .disable_ec2_metadata();
        if let (Some(id), Some(secret)) = (&creds.access_key_id, &creds.secret_access_key) {
            b = b.access_key_id(id).secret_access_key(secret);
        }
        if let Some(p) = &creds.profile {
            b = b.profile(p);
        }
        let fail = |e: opendal::Error| Error::InvalidInput(format!("{}: {e}", location.url()));
        let op = Operator::new(b)
            .map_err(fail)?
            .layer(TimeoutLayer::new().with_timeout(TIMEOUT).with_io_timeout(IO_TIMEOUT))
            .layer(
                RetryLayer::new()
                    .with_jitter()
                    .with_factor(2.0)
                    .with_min_delay(MIN_DELAY)
                    .with_max_delay(MAX_DELAY)
                    .with_max_times(retries),
            )
            .layer(ConcurrentLimitLayer::new(MAX_REQUESTS));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coffer-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::Failed(format!("{}: cannot start the S3 client: {e}", location.url())))?;
        Ok(S3Storage { location: location.clone(), retries, op, runtime })
    }

    fn key(kind: Kind, name: &str) -> Result<String> {
        check_name(kind, name)?;
        Ok(match kind {
            Kind::Config => name.to_string(),
            _ => format!("{}/{name}", kind.dir()),
        })
    }

    fn object(&self, key: &str) -> String {
        format!("{}/{key}", self.location.url())
    }

    /// Runs one request, turning opendal's error into ours, naming the object and how long
    /// the request and its retries took.
    fn call<T>(&self, key: &str, f: impl std::future::Future<Output = opendal::Result<T>>) -> Result<T> {
        let started = Instant::now();
        self.runtime.block_on(f).map_err(|e| self.error(key, e, started.elapsed()))
    }

    fn error(&self, key: &str, e: opendal::Error, took: Duration) -> Error {
        let object = self.object(key);
        let text = e.to_string();
        // Some failures (a connection refused) carry their cause only in the full text.
        let detail = if e.message().is_empty() { text.clone() } else { e.message().to_string() };
        let why = match e.kind() {
            // S3 answers 404 for a missing bucket too: that is not a missing object.
            ErrorKind::NotFound if text.contains("NoSuchBucket") => {
                format!("bucket {:?} does not exist on {}", self.location.bucket, self.location.endpoint)
            }
            ErrorKind::NotFound => return Error::ObjectMissing { object },
            ErrorKind::PermissionDenied => format!(
                "access denied by {} (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the key's rights on bucket {:?}): {}",
                self.location.endpoint,
                self.location.bucket,
                detail
            ),
            // A request that was retried (the server is unreachable, overloaded, or failing).
            _ if e.is_temporary() || text.contains("send http request") || took >= MIN_DELAY => format!(
                "{} did not answer: gave up after {} retries over {:.1}s: {}",
                self.location.endpoint,
                self.retries,
                took.as_secs_f64(),
                detail
            ),
            _ => format!("{} answered: {detail}", self.location.endpoint),
        };
        Error::Storage { object, source: std::io::Error::other(why) }
    }
}

/// Installs the process's HTTP client. Over plain `http://` (a server on the LAN) every request
/// gets a fresh connection: servers that write a small response's headers and body separately
/// without TCP_NODELAY (Garage does) otherwise stall each request on a reused connection for
/// the client's delayed ACK, 40 ms, which made a restore of 1,582 ranges 3x slower than
/// restic's whole-pack reads; a connection on a LAN costs a fraction of a millisecond. Over
/// `https://` connections are kept: a TLS handshake costs more than that stall.
fn install_transport(endpoint: &str) {
    let mut b = reqwest::Client::builder();
    if endpoint.starts_with("http://") {
        b = b.pool_max_idle_per_host(0);
    }
    match b.build() {
        Ok(client) => {
            opendal::HttpTransporter::install_default(opendal_http_transport_reqwest::ReqwestTransport::new(client))
        }
        // Fall back to opendal's own client rather than fail: it works, only slower.
        Err(_) => opendal_http_transport_reqwest::install_default(),
    }
}

impl Storage for S3Storage {
    fn location(&self) -> String {
        self.location.url()
    }

    fn read(&self, kind: Kind, name: &str, range: Option<Range<u64>>) -> Result<Vec<u8>> {
        let key = S3Storage::key(kind, name)?;
        let Some(r) = range else {
            return Ok(self.call(&key, self.op.read(&key))?.to_vec());
        };
        if r.start >= r.end {
            let size = self.size(kind, name)?.ok_or_else(|| Error::ObjectMissing { object: self.object(&key) })?;
            check_range(&self.object(&key), size, &r)?;
            return Ok(Vec::new());
        }
        let got = match self.runtime.block_on(self.op.read_with(&key).range(r.clone()).into_future()) {
            Ok(b) => b.to_vec(),
            // Asked past the end: say so with the object's size, as a short object is damage.
            Err(e) if e.kind() == ErrorKind::RangeNotSatisfied => Vec::new(),
            Err(e) => return Err(self.error(&key, e, Duration::ZERO)),
        };
        if got.len() as u64 != r.end - r.start {
            let size = self.size(kind, name)?.ok_or_else(|| Error::ObjectMissing { object: self.object(&key) })?;
            check_range(&self.object(&key), size, &r)?;
            return Err(Error::Corrupt {
                path: self.object(&key).into(),
                offset: r.start,
                what: format!("asked {} bytes, got {}", r.end - r.start, got.len()),
            });
        }
        Ok(got)
    }

    fn put(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<()> {
        let key = S3Storage::key(kind, name)?;
        self.call(&key, self.op.write(&key, bytes.to_vec())).map(|_| ())
    }

    fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        let dir = match kind {
            Kind::Config => String::new(),
            _ => format!("{}/", kind.dir()),
        };
        let entries = self.call(&dir, self.op.list_with(&dir).recursive(true).into_future())?;
        let mut out = Vec::new();
        for e in entries {
            if e.metadata().is_dir() {
                continue;
            }
            let Some(name) = e.path().strip_prefix(&dir) else { continue };
            // Only names the trait allows, directly in the kind's place (the config's list
            // is the top level: `config` itself, not the other kinds' objects).
            if name.contains('/') || check_name(kind, name).is_err() {
                continue;
            }
            let m = e.metadata();
            let modified = m.last_modified().map(|t| t.into_inner().as_second()).unwrap_or(0);
            out.push(ObjectInfo { name: name.to_string(), size: m.content_length(), modified });
        }
        Ok(out)
    }

    fn size(&self, kind: Kind, name: &str) -> Result<Option<u64>> {
        let key = S3Storage::key(kind, name)?;
        match self.call(&key, self.op.stat(&key)) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(Error::ObjectMissing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remove(&self, kind: Kind, name: &str) -> Result<()> {
        let key = S3Storage::key(kind, name)?;
        match self.call(&key, self.op.delete(&key)) {
            Ok(()) | Err(Error::ObjectMissing { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn parallel_requests(&self) -> usize {
        4
    }

    /// 1 MiB: a few milliseconds on a LAN, about one request's round trip.
    fn read_gap(&self) -> u64 {
        1024 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_in_restics_form_and_bad_ones_say_why() {
        let l = S3Location::parse("http://127.0.0.1:3900/backups/alfresco/prod").unwrap();
        assert_eq!(l.endpoint, "http://127.0.0.1:3900");
        assert_eq!(l.bucket, "backups");
        assert_eq!(l.prefix, "alfresco/prod");
        assert_eq!(l.url(), "s3:http://127.0.0.1:3900/backups/alfresco/prod");
        let top = S3Location::parse("https://s3.example.com/bucket-1/").unwrap();
        assert_eq!((top.bucket.as_str(), top.prefix.as_str()), ("bucket-1", ""));
        for (bad, why) in [
            ("127.0.0.1/b", "no http"),
            ("ftp://h/bucket", "scheme"),
            ("http://h", "no bucket"),
            ("http:///bucket", "no host"),
            ("http://h/B_ad", "not a bucket name"),
            ("http://h/bucket/a/../b", "'..'"),
        ] {
            let e = S3Location::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }
}
