//! Printing helpers: human sizes, a closed pipe that ends the program quietly, and the
//! progress lines drawn on a terminal while a backup or a restore runs.

use coffer::sink::Counters;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Writes a line to stdout; a closed pipe (`coffer ls | head`) ends the program quietly.
pub fn line(s: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{s}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("coffer: writing output: {e}");
        std::process::exit(1);
    }
}

pub fn bytes(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// A progress line on stderr, only when stderr is a terminal.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// A spinner redrawn with `message()` every 150 ms, unless `quiet` or stderr is no terminal.
    pub fn start(quiet: bool, message: impl Fn() -> String + Send + 'static) -> Progress {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if quiet || !std::io::stderr().is_terminal() {
            return Progress { bar: None, stop, thread: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"));
        let (b, s) = (bar.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Relaxed) {
                b.set_message(message());
                b.tick();
                std::thread::park_timeout(std::time::Duration::from_millis(150));
            }
        });
        Progress { bar: Some(bar), stop, thread: Some(thread) }
    }

    /// Progress of a backup.
    pub fn backup(c: Arc<Counters>, quiet: bool) -> Progress {
        Progress::start(quiet, move || {
            let files = c.files_new.load(Relaxed) + c.files_changed.load(Relaxed) + c.files_unchanged.load(Relaxed);
            format!(
                "{files} files ({} unchanged), read {}, stored {}",
                c.files_unchanged.load(Relaxed),
                bytes(c.bytes_read.load(Relaxed)),
                bytes(c.stored_new.load(Relaxed))
            )
        })
    }

    /// Progress of a restore.
    pub fn restore(c: Arc<coffer::restore::Counters>, quiet: bool) -> Progress {
        Progress::start(quiet, move || {
            let (files, written, skipped) = (c.files.load(Relaxed), c.bytes.load(Relaxed), c.skipped.load(Relaxed));
            let (total_files, total_bytes) = (c.total_files.load(Relaxed), c.total_bytes.load(Relaxed));
            let read = bytes(c.bytes_read.load(Relaxed));
            if total_files == 0 {
                return format!("{files} files, {} written, {read} read, {skipped} already complete", bytes(written));
            }
            // Kept files count as done: a resumed restore starts where the last one stopped.
            let done = written + c.skipped_bytes.load(Relaxed);
            format!(
                "{} of {total_files} files, {} of {} ({:.0}%), {read} read, {skipped} already complete",
                files + skipped,
                bytes(done),
                bytes(total_bytes),
                done as f64 * 100.0 / total_bytes.max(1) as f64
            )
        })
    }

    /// Progress of a verify.
    pub fn verify(c: Arc<coffer::verify::Progress>, quiet: bool) -> Progress {
        Progress::start(quiet, move || {
            let total = c.packs_to_read.load(Relaxed);
            if total == 0 {
                format!("checked {} sets", c.sets.load(Relaxed))
            } else {
                format!(
                    "read {} of {total} packs ({}), checked {} sets",
                    c.packs_read.load(Relaxed),
                    bytes(c.bytes_read.load(Relaxed)),
                    c.sets.load(Relaxed)
                )
            }
        })
    }

    pub fn finish(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
