//! The append-only, BLAKE3 hash-chained event log on sled.
//!
//! - [`record`]: the stored record format and the chain hash.
//! - [`store`]: the sled layout and every read.
//! - [`writer`]: the single writer thread (group commit, durable acknowledgement).
//! - [`verify`]: chain and index verification.
//!
//! [`Log`] ties them together: opening verifies the tail of the chain, then
//! starts the writer.

pub mod record;
pub mod store;
pub mod verify;
pub mod writer;

use tokio::sync::{mpsc, oneshot, watch};

pub use record::{Actor, Hash, Record};
pub use store::{Head, Store, StoreError, StoredEvent, SyncMode};
pub use verify::{Broken, VerifyError};
pub use writer::{AppendError, AppendRequest, Appended, ExpectedVersion, NewEvent, WriterConfig};

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("refusing to serve a broken log: {0}")]
    Broken(Broken),
}

impl From<VerifyError> for OpenError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Broken(b) => OpenError::Broken(b),
            VerifyError::Store(s) => OpenError::Store(s),
        }
    }
}

/// An open log: a store everyone may read and a handle to its one writer.
pub struct Log {
    store: Store,
    tx: Option<mpsc::Sender<writer::Job>>,
    head_rx: watch::Receiver<Head>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A cheap, cloneable handle for appending (one per task or client).
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<writer::Job>,
}

impl Log {
    /// Opens the store in `dir`, verifies the chain from the last verified
    /// position to the head, and starts the writer.
    pub fn open(dir: &std::path::Path, config: WriterConfig) -> Result<Log, OpenError> {
        let store = Store::open(dir)?;
        let report = verify::verify_at_startup(&store)?;
        tracing::info!(
            head_seq = report.head.seq,
            verified_now = report.events,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "log opened; tail verified"
        );
        let (head_tx, head_rx) = watch::channel(report.head);
        let (tx, thread) = writer::spawn(store.clone(), config, report.head, head_tx)?;
        Ok(Log {
            store,
            tx: Some(tx),
            head_rx,
            thread: Some(thread),
        })
    }

    /// Read access to the log.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A handle for appending.
    pub fn appender(&self) -> Appender {
        Appender {
            tx: self.tx.clone().expect("log is open"),
        }
    }

    /// Follows the committed (durable) head: changes after each group commit.
    pub fn subscribe_head(&self) -> watch::Receiver<Head> {
        self.head_rx.clone()
    }

    /// Stops accepting appends, lets the writer finish what is queued, and
    /// flushes. Appenders still held elsewhere keep the writer alive until dropped.
    pub fn shutdown(mut self) -> Result<(), StoreError> {
        self.close()
    }

    fn close(&mut self) -> Result<(), StoreError> {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.store.db().flush()?;
        Ok(())
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "flush on close failed");
        }
    }
}

impl Appender {
    /// Appends and waits until the events are durable (or refused).
    /// Waits for queue space when the writer is saturated (back-pressure).
    pub async fn append(&self, req: AppendRequest) -> Result<Appended, AppendError> {
        req.validate()?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(writer::Job { req, reply })
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Like [`Appender::append`], for threads outside the async runtime.
    /// Panics if called from inside an async context.
    pub fn append_blocking(&self, req: AppendRequest) -> Result<Appended, AppendError> {
        req.validate()?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(writer::Job { req, reply })
            .map_err(|_| closed())?;
        rx.blocking_recv().map_err(|_| closed())?
    }
}

fn closed() -> AppendError {
    AppendError::Unavailable("the log writer has stopped".into())
}
