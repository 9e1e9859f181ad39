//! Helpers shared by the test files.

use std::ops::Bound;
use std::sync::{Mutex, mpsc};

use qube_common::Result;
use qube_storage::{Cursor, Direction, Engine, KeyRange, MemoryEngine, Status, WriteBatch};

/// A memory engine that can stop one reader right after it took its
/// engine snapshot (its scan cursor), to replay one interleaving exactly.
#[derive(Default)]
pub struct PausingEngine {
    inner: MemoryEngine,
    /// Encoded-key prefix of the scan to stop, "paused" and "resume".
    hook: Mutex<Option<PauseHook>>,
}

pub type PauseHook = (Vec<u8>, mpsc::Sender<()>, mpsc::Receiver<()>);

impl PausingEngine {
    /// Arms the hook: the next scan starting inside `prefix` (an encoded
    /// MVCC key prefix) stops after taking its snapshot. Returns the
    /// "paused" receiver and the "resume" sender.
    pub fn arm(&self, prefix: Vec<u8>) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (paused_tx, paused_rx) = mpsc::channel();
        let (resume_tx, resume_rx) = mpsc::channel();
        *self.hook.lock().unwrap() = Some((prefix, paused_tx, resume_rx));
        (paused_rx, resume_tx)
    }
}

impl Engine for PausingEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn write(&self, batch: WriteBatch) -> Result<()> {
        self.inner.write(batch)
    }
    fn scan(&self, range: KeyRange, direction: Direction) -> Result<Box<dyn Cursor + '_>> {
        let hit = match &range.start {
            Bound::Included(s) => {
                let mut hook = self.hook.lock().unwrap();
                if hook.as_ref().is_some_and(|h| s.starts_with(&h.0)) { hook.take() } else { None }
            }
            _ => None,
        };
        let cursor = self.inner.scan(range, direction)?;
        if let Some((_, paused, resume)) = hit {
            paused.send(()).unwrap();
            resume.recv().unwrap();
        }
        Ok(cursor)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn status(&self) -> Result<Status> {
        self.inner.status()
    }
}
