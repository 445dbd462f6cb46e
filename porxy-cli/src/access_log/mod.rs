//! The access log: one line per connection as it ends, to a file or stderr, in logfmt or JSON
//! (`access_log`, `access_log_format`: proxy-wide and per listener).
//!
//! Never on the data path: the reactor that ends a connection hands its record to
//! [`AccessLog`]'s sink, which puts it on a bounded queue without waiting; a writer thread
//! formats and writes. A full queue (a disk slower than the traffic, a pipe nobody reads)
//! drops the record, counted and warned about at a limited rate; the reactors never wait.
//! Files are reopened on SIGUSR1 and the control socket's `REOPEN`, for logrotate: records
//! queued before the reopen go to the old file, later ones to the new, none lost.

mod counts;
mod doorbell;
mod line;
pub mod setting;
mod writer;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use porxy_core::{AccessSink, ConnectionRecord, LogLimit};

pub use counts::{Counts, RecordCounts};
use doorbell::Doorbell;
pub use setting::{Format, Plan, Setting, Target};
use writer::{Msg, Writer};

use crate::tunnel_names::TunnelNames;

/// Records queued at most for the writer; more are dropped.
const QUEUE: usize = 4096;
/// At most one warning about dropped records in this period.
const DROP_WARN_PERIOD: Duration = Duration::from_secs(10);

/// A file of the access log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the access log {}: {source}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A plan with its files open, not yet in force.
pub(crate) struct Prepared {
    plan: Plan,
    files: HashMap<PathBuf, File>,
}

/// The running access log.
pub struct AccessLog {
    sink: Arc<Sink>,
    /// The plan in force (reopen opens its files again); held while switching, so that two
    /// switches do not cross.
    plan: Mutex<Plan>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the reactors call.
struct Sink {
    tx: SyncSender<Msg>,
    doorbell: Arc<Doorbell>,
    /// Whether any tunnel is recorded: when not, no record is even built.
    on: AtomicBool,
    counts: Arc<Counts>,
    drops: Mutex<LogLimit>,
}

impl AccessSink for Sink {
    fn wants(&self, _tunnel: SocketAddr) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    fn record(&self, record: ConnectionRecord) {
        match self.tx.try_send(Msg::Record(record)) {
            Ok(()) => self.doorbell.ring(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                let due = self
                    .drops
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .occurred(Instant::now(), DROP_WARN_PERIOD);
                if let Some(times) = due {
                    tracing::warn!(
                        times,
                        "access log records dropped: the writer cannot keep up"
                    );
                }
            }
        }
    }
}

impl AccessLog {
    /// Opens the files of `plan` and starts the writer; `names` names the tunnels in the
    /// lines. An unwritable file is an error, before anything starts.
    pub(crate) fn start(plan: Plan, names: TunnelNames) -> Result<AccessLog, OpenError> {
        let files = open_all(&plan)?;
        let (tx, rx) = sync_channel(QUEUE);
        let counts = Arc::new(Counts::default());
        let writer = Writer::new(rx, names, counts.clone());
        let doorbell = Arc::new(Doorbell::default());
        let bell = doorbell.clone();
        let thread = std::thread::Builder::new()
            .name("porxy-access-log".into())
            .spawn(move || writer.run(&bell))
            .map_err(|source| OpenError {
                path: "(writer thread)".into(),
                source,
            })?;
        doorbell.set_writer(thread.thread().clone());
        let log = AccessLog {
            sink: Arc::new(Sink {
                tx,
                doorbell: doorbell.clone(),
                on: AtomicBool::new(false),
                counts,
                drops: Mutex::new(LogLimit::default()),
            }),
            plan: Mutex::new(Plan::default()),
            thread: Mutex::new(Some(thread)),
        };
        log.switch(plan, files);
        Ok(log)
    }

    /// The sink to give the proxy.
    pub(crate) fn sink(&self) -> Arc<dyn AccessSink> {
        self.sink.clone()
    }

    /// What became of the records so far.
    pub fn counts(&self) -> &Counts {
        &self.sink.counts
    }

    /// Whether any tunnel's connections are recorded.
    pub fn is_on(&self) -> bool {
        self.sink.on.load(Ordering::Relaxed)
    }

    /// Opens the files of `plan`, for a reload that may still fail: nothing changes until
    /// [`AccessLog::commit`].
    pub(crate) fn prepare(&self, plan: Plan) -> Result<Prepared, OpenError> {
        let files = open_all(&plan)?;
        Ok(Prepared { plan, files })
    }

    /// Takes a prepared plan from now on.
    pub(crate) fn commit(&self, prepared: Prepared) {
        let mut current = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        if *current == prepared.plan && prepared.plan.files().is_empty() {
            return;
        }
        *current = prepared.plan.clone();
        self.send_switch(prepared.plan, prepared.files);
    }

    /// Opens the files again by path (after logrotate renamed them); the number of files.
    pub(crate) fn reopen(&self) -> Result<usize, OpenError> {
        let current = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        let files = open_all(&current)?;
        let count = files.len();
        self.send_switch(current.clone(), files);
        Ok(count)
    }

    /// Writes what is queued and stops the writer (once the proxy has stopped).
    pub(crate) fn finish(&self) {
        let _ = self.sink.tx.send(Msg::Stop);
        self.sink.doorbell.ring_now();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the access log writer panicked");
            }
        }
    }

    fn switch(&self, plan: Plan, files: HashMap<PathBuf, File>) {
        *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = plan.clone();
        self.send_switch(plan, files);
    }

    fn send_switch(&self, plan: Plan, files: HashMap<PathBuf, File>) {
        self.sink.on.store(plan.is_on(), Ordering::Relaxed);
        // Waits for room: a switch is never dropped, and records queued before it go to the
        // files before it.
        let _ = self.sink.tx.send(Msg::Switch(plan, files));
        self.sink.doorbell.ring_now();
    }
}

/// Opens (creating, appending) every file `plan` writes to.
fn open_all(plan: &Plan) -> Result<HashMap<PathBuf, File>, OpenError> {
    plan.files()
        .into_iter()
        .map(|path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(|file| (path.clone(), file))
                .map_err(|source| OpenError {
                    path: path.clone(),
                    source,
                })
        })
        .collect()
}
