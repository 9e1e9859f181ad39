//! The data file: pages addressed by number, read and written with
//! positioned I/O (`pread`/`pwrite`, no mmap). A failed write or sync
//! poisons the file: it refuses every later write, because after a failed
//! fsync the kernel may have dropped the dirty pages and what is on disk is
//! unknown (PostgreSQL's "fsyncgate", 2018).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use qube_common::{Error, Result};

use super::page::{PAGE_SIZE, Page, PageId, check_page, seal};

pub struct PageFile {
    file: File,
    path: PathBuf,
    poisoned: AtomicBool,
    /// Test hook: the next sync fails as if the disk reported an error.
    fail_next_sync: AtomicBool,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
}

impl PageFile {
    pub fn open(path: &Path, create: bool) -> Result<PageFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Ok(PageFile {
            file,
            path: path.to_path_buf(),
            poisoned: AtomicBool::new(false),
            fail_next_sync: AtomicBool::new(false),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads a page without checking it (meta pages have their own format).
    pub fn read_raw(&self, id: PageId, buf: &mut Page) -> Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let Some(at) = id.checked_mul(PAGE_SIZE as u64) else {
            return Err(Error::corrupt_page(&self.path, id, "page number out of range"));
        };
        match self.file.read_exact_at(buf, at) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(Error::corrupt_page(&self.path, id, "page lies beyond the end of the file"))
            }
            Err(e) => Err(Error::io(format!("reading page {id} of {}", self.path.display()), e)),
        }
    }

    /// Reads and verifies a page into a caller's buffer.
    pub fn read_into(&self, id: PageId, buf: &mut Page) -> Result<()> {
        self.read_raw(id, buf)?;
        check_page(buf, id, &self.path)
    }

    /// Reads and verifies a page (magic, version, id, checksum).
    pub fn read(&self, id: PageId) -> Result<Arc<Page>> {
        let mut page = Arc::new([0u8; PAGE_SIZE]);
        let buf =
            Arc::get_mut(&mut page).ok_or_else(|| Error::Internal("fresh Arc shared".into()))?;
        self.read_raw(id, buf)?;
        check_page(buf, id, &self.path)?;
        Ok(page)
    }

    pub fn write(&self, id: PageId, page: &Page) -> Result<()> {
        self.check_poison()?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        let Some(at) = id.checked_mul(PAGE_SIZE as u64) else {
            return Err(Error::Internal(format!("write to page {id}, out of range")));
        };
        self.file.write_all_at(page, at).map_err(|e| {
            self.poisoned.store(true, Ordering::SeqCst);
            Error::io(format!("writing page {id} of {}", self.path.display()), e)
        })
    }

    /// Writes a tree, overflow or free-list page with its checksum. Pages
    /// are sealed here, when they reach the disk, not at every commit: most
    /// versions of a hot page are superseded before they are ever written.
    pub fn write_page(&self, id: PageId, page: &Page) -> Result<()> {
        let mut sealed = *page;
        seal(&mut sealed);
        self.write(id, &sealed)
    }

    pub fn sync(&self) -> Result<()> {
        self.check_poison()?;
        let res = if self.fail_next_sync.swap(false, Ordering::SeqCst) {
            Err(std::io::Error::other("injected sync failure"))
        } else {
            self.file.sync_data()
        };
        res.map_err(|e| {
            self.poisoned.store(true, Ordering::SeqCst);
            Error::Poisoned(format!("fsync of {} failed: {e}", self.path.display()))
        })
    }

    pub fn set_len_pages(&self, pages: u64) -> Result<()> {
        self.check_poison()?;
        self.file
            .set_len(pages * PAGE_SIZE as u64)
            .map_err(|e| Error::io(format!("resizing {}", self.path.display()), e))
    }

    pub fn len_bytes(&self) -> u64 {
        self.file.metadata().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    pub fn check_poison(&self) -> Result<()> {
        if self.is_poisoned() {
            return Err(Error::Poisoned(format!(
                "an earlier write or fsync of {} failed",
                self.path.display()
            )));
        }
        Ok(())
    }

    #[doc(hidden)]
    pub fn fail_next_sync(&self) {
        self.fail_next_sync.store(true, Ordering::SeqCst);
    }
}
