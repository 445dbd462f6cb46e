//! The access log's writer thread: takes records off the bounded queue in batches, formats
//! each for its tunnel's log, writes, and flushes after each batch, so a record is on disk
//! within about [`BATCH`] of its connection's end and a busy proxy's go out in large writes. Files are opened by whoever
//! asks (start, reload, reopen), where an error can be answered, and handed over here.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use porxy_core::{ConnectionRecord, LogLimit};

use super::counts::Counts;
use super::doorbell::{Doorbell, BATCH};
use super::line::line;
use super::setting::{Plan, Target};
use crate::tunnel_names::TunnelNames;

/// What the writer is sent.
pub(super) enum Msg {
    Record(ConnectionRecord),
    /// From now on, this plan, with its files opened.
    Switch(Plan, HashMap<PathBuf, File>),
    /// Flush and end.
    Stop,
}

/// Bytes held per file before a write.
const FILE_BUFFER: usize = 64 * 1024;
/// At most one warning about failing writes in this period.
const WARN_PERIOD: Duration = Duration::from_secs(10);

/// The writer thread's state.
pub(super) struct Writer {
    rx: Receiver<Msg>,
    plan: Plan,
    files: HashMap<PathBuf, BufWriter<File>>,
    names: TunnelNames,
    counts: Arc<Counts>,
    failures: LogLimit,
}

impl Writer {
    pub(super) fn new(rx: Receiver<Msg>, names: TunnelNames, counts: Arc<Counts>) -> Writer {
        Writer {
            rx,
            plan: Plan::default(),
            files: HashMap::new(),
            names,
            counts,
            failures: LogLimit::default(),
        }
    }

    /// Runs until told to stop (or every sender is gone): takes what is queued, writes it
    /// and flushes; then, if anything came, lets the next batch gather, else sleeps until a
    /// record rings (see `doorbell.rs`).
    pub(super) fn run(mut self, doorbell: &Doorbell) {
        let mut held = None;
        loop {
            // Names change only with a reload: read them once a batch.
            let names = self.names.get();
            let mut took = false;
            loop {
                let msg = match held.take() {
                    Some(msg) => msg,
                    None => match self.rx.try_recv() {
                        Ok(msg) => msg,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            self.flush();
                            return;
                        }
                    },
                };
                took = true;
                match msg {
                    Msg::Record(record) => {
                        let name = names.get(&record.tunnel).map(String::as_str);
                        self.write(&record, name);
                    }
                    Msg::Switch(plan, files) => self.switch(plan, files),
                    Msg::Stop => {
                        self.flush();
                        return;
                    }
                }
            }
            self.flush();
            if took {
                std::thread::park_timeout(BATCH);
                continue;
            }
            doorbell.sleep(|| match self.rx.try_recv() {
                Ok(msg) => {
                    held = Some(msg);
                    false
                }
                Err(TryRecvError::Empty) => true,
                Err(TryRecvError::Disconnected) => false,
            });
        }
    }

    fn write(&mut self, record: &ConnectionRecord, name: Option<&str>) {
        let setting = self.plan.for_tunnel(name);
        let tunnel = match name {
            Some(name) => name.to_string(),
            None => record.tunnel.to_string(),
        };
        let result = match &setting.target {
            Target::Off => return,
            Target::Stderr => {
                // One write per line: porxy's own log lines go to stderr too.
                let text = line(record, &tunnel, setting.format);
                io::stderr().lock().write_all(text.as_bytes())
            }
            Target::File(path) => match self.files.get_mut(path) {
                Some(file) => file.write_all(line(record, &tunnel, setting.format).as_bytes()),
                None => Err(io::Error::other("the file is not open")),
            },
        };
        match result {
            Ok(()) => {
                self.counts.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed(&setting.target.to_string(), &e),
        }
    }

    fn switch(&mut self, plan: Plan, files: HashMap<PathBuf, File>) {
        self.flush();
        self.plan = plan;
        self.files = files
            .into_iter()
            .map(|(path, file)| (path, BufWriter::with_capacity(FILE_BUFFER, file)))
            .collect();
    }

    fn flush(&mut self) {
        let mut failed = Vec::new();
        for (path, file) in &mut self.files {
            if let Err(e) = file.flush() {
                failed.push((path.display().to_string(), e));
            }
        }
        for (path, e) in failed {
            self.failed(&path, &e);
        }
    }

    /// A write to `target` failed: counted, and warned about at a limited rate.
    fn failed(&mut self, target: &str, error: &io::Error) {
        self.counts.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(times) = self.failures.occurred(Instant::now(), WARN_PERIOD) {
            tracing::warn!(log = target, error = %error, times, "cannot write the access log");
        }
    }
}
