//! Real Garage S3 servers for integration tests: one node, or a cluster of three processes
//! with `replication_factor = 3`, each in its own temp dir on loopback ports.
//!
//! [`Garage::start`] writes each node's `garage.toml` (sqlite metadata, an RPC secret shared by
//! the nodes, an S3 API on its own port, region `garage`), starts the servers, connects the
//! nodes, assigns and applies a layout, and creates a bucket and a key allowed on it. Waiting
//! is polling the server's own answers (`garage status`, `garage bucket list`) until they say
//! it is ready, with a bound; nothing sleeps for a guessed time. Dropping the value kills only
//! the processes it started and removes their directories.
//!
//! The binary is `$COFFER_GARAGE_BIN`, else `garage` on `PATH`, else `~/.cargo/bin/garage`;
//! missing, the tests fail with how to install it (`cargo install garage --locked`, which
//! `.ci/install-deps` runs).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "garage";
pub const BUCKET: &str = "coffer-test";
/// How long a node may take to answer after it was started (a cold sqlite, a slow CI core).
const READY_WITHIN: Duration = Duration::from_secs(90);

pub struct Node {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub rpc_port: u16,
    pub s3_port: u16,
    child: Option<Child>,
}

pub struct Garage {
    _tmp: tempfile::TempDir,
    bin: PathBuf,
    pub nodes: Vec<Node>,
    pub key_id: String,
    pub secret: String,
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("COFFER_GARAGE_BIN") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("garage"))
        .find(|p| p.is_file());
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/garage"));
    on_path.or(home.filter(|p| p.is_file())).unwrap_or_else(|| {
        panic!(
            "Garage S3 test server: no `garage` binary (set COFFER_GARAGE_BIN, or put it on PATH); \
             install it with `cargo install garage --locked` (about 20 minutes), as .ci/install-deps does"
        )
    })
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a loopback port").port()
}

impl Garage {
    /// One node, replication factor 1.
    pub fn single() -> Garage {
        Garage::start(1)
    }

    /// Three nodes, replication factor 3 (writes and reads need two of them).
    pub fn cluster() -> Garage {
        Garage::start(3)
    }

    fn start(n: usize) -> Garage {
        let bin = binary();
        let tmp = tempfile::Builder::new().prefix("coffer-garage-").tempdir().expect("garage temp dir");
        let secret: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
        let mut nodes = Vec::new();
        for i in 0..n {
            let dir = tmp.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).expect("node dir");
            let (rpc_port, s3_port) = (free_port(), free_port());
            let config = dir.join("garage.toml");
            std::fs::write(&config, node_config(&dir, n, rpc_port, s3_port, &secret, &[])).expect("write garage.toml");
            nodes.push(Node { dir, config, rpc_port, s3_port, child: None });
        }
        let mut g = Garage { _tmp: tmp, bin, nodes, key_id: String::new(), secret: String::new() };
        for i in 0..n {
            g.start_node(i);
        }
        let ids: Vec<String> = (0..n).map(|i| g.node_id(i)).collect();
        // Restarted nodes find each other through their configs, however early they were killed.
        for node in &g.nodes {
            let text = node_config(&node.dir, n, node.rpc_port, node.s3_port, &secret, &ids);
            std::fs::write(&node.config, text).expect("rewrite garage.toml");
        }
        for id in &ids[1..] {
            g.cli_ok(0, &["node", "connect", id]);
        }
        g.wait_for(0, &["status"], |out| ids.iter().all(|id| out.contains(&id[..16])));
        for id in &ids {
            let short = id.split('@').next().expect("id");
            g.cli_ok(0, &["layout", "assign", "-z", "dc1", "-c", "1G", short]);
        }
        g.cli_ok(0, &["layout", "apply", "--version", "1"]);
        g.wait_for(0, &["bucket", "list"], |_| true);
        g.cli_ok(0, &["bucket", "create", BUCKET]);
        let key = g.cli_ok(0, &["key", "create", "coffer-test-key"]);
        g.key_id = field(&key, "Key ID:");
        g.secret = field(&key, "Secret key:");
        g.cli_ok(0, &["bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "coffer-test-key"]);
        g
    }

    /// `s3:http://127.0.0.1:PORT/BUCKET/PREFIX` on node `i`'s S3 API.
    pub fn url(&self, i: usize, prefix: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{BUCKET}/{prefix}", self.nodes[i].s3_port)
    }

    /// Gives a command this server's credentials and region.
    pub fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_DEFAULT_REGION", REGION)
            .env_remove("AWS_REGION")
            .env_remove("AWS_PROFILE")
    }

    /// The library's view of the same bucket, for listing what a run uploaded.
    pub fn storage(&self, i: usize, prefix: &str) -> coffer::storage::S3Storage {
        self.storage_with_retries(i, prefix, coffer::storage::s3::RETRIES)
    }

    pub fn storage_with_retries(&self, i: usize, prefix: &str, retries: usize) -> coffer::storage::S3Storage {
        let url = self.url(i, prefix);
        let loc = coffer::storage::S3Location::parse(url.strip_prefix("s3:").expect("s3 url")).expect("url");
        let creds = coffer::storage::S3Credentials {
            access_key_id: Some(self.key_id.clone()),
            secret_access_key: Some(self.secret.clone()),
            region: Some(REGION.into()),
            profile: None,
        };
        coffer::storage::S3Storage::open_with_retries(&loc, &creds, retries).expect("open the test bucket")
    }

    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("server.log"))
            .expect("server log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start garage node {i} ({}): {e}", self.bin.display()));
        node.child = Some(child);
        self.wait_for(i, &["status"], |_| true);
    }

    /// Starts every stopped node and waits until node 0's S3 API answers a listing (after a
    /// restart of the whole cluster, the nodes must find each other again first).
    pub fn restart_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                self.start_node(i);
            }
        }
        let started = Instant::now();
        loop {
            use coffer::storage::{Kind, Storage};
            let listed = self.storage_with_retries(0, "", 0).list(Kind::Config);
            match listed {
                Ok(_) => return,
                Err(e) if started.elapsed() > READY_WITHIN => {
                    panic!("garage's S3 API not ready {READY_WITHIN:?} after a restart: {e}\n{}", self.log(0))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Kills node `i` with SIGKILL (as a crash or power loss would stop it).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }

    fn node_id(&self, i: usize) -> String {
        let out = self.cli_ok(i, &["node", "id", "-q"]);
        out.lines().map(str::trim).find(|l| l.contains('@')).unwrap_or_else(|| panic!("garage node id: {out}")).into()
    }

    fn cli(&self, i: usize, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .expect("run the garage cli")
    }

    fn cli_ok(&self, i: usize, args: &[&str]) -> String {
        let o = self.cli(i, args);
        assert!(
            o.status.success(),
            "garage {args:?} failed ({}):\n{}\n{}\n--- node log ---\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log(i)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Polls `garage ARGS` on node `i` until it succeeds and `done` accepts its output.
    fn wait_for(&self, i: usize, args: &[&str], done: impl Fn(&str) -> bool) {
        let started = Instant::now();
        loop {
            let o = self.cli(i, args);
            let out = String::from_utf8_lossy(&o.stdout);
            if o.status.success() && done(&out) {
                return;
            }
            if started.elapsed() > READY_WITHIN {
                panic!(
                    "garage node {i} not ready after {READY_WITHIN:?} (`garage {args:?}`: {})\n{out}\n{}\n--- node log ---\n{}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr),
                    self.log(i)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn node_config(dir: &Path, n: usize, rpc_port: u16, s3_port: u16, secret: &str, peers: &[String]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
         replication_factor = {n}\nrpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
         rpc_public_addr = \"127.0.0.1:{rpc_port}\"\nrpc_secret = \"{secret}\"\n\
         bootstrap_peers = [{}]\n\
         [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n",
        peers.join(", "),
        d = dir.display()
    )
}

/// The value after `label` on its line of `garage key create`'s output.
fn field(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {label:?} in garage's output:\n{out}"))
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    getrandom::getrandom(&mut b).expect("random");
    b[0]
}
