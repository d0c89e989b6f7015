//! A regular file mapped read-only into memory, for `replay`'s input (`replay::Input::Bytes`;
//! the library forbids unsafe code, so the mapping lives in the binary, beside the allocator).
//!
//! Reading a file copies every byte from the kernel's page cache into the process: `perf` put
//! 15% of a reference-rules replay's CPU in that copy (`_copy_to_iter`), on a two-core machine
//! where replay is bound by total CPU. Mapped, the decoder threads read the page cache itself.
//!
//! The one hazard of a mapping: if another process truncates the file while it is mapped,
//! reading the lost pages raises `SIGBUS`. Appending is harmless (the mapping keeps the size it
//! had). `replay --input -` reads through a pipe instead, for a file that may shrink.

use std::fs::File;
use std::os::fd::AsRawFd;

/// A read-only mapping of a whole file.
pub struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and private to this value; nothing writes through it, so
// sharing or moving it between threads is as safe as sharing a `&[u8]`.
unsafe impl Send for Mapped {}
// SAFETY: as above.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps `file`, or `None` when it cannot be: not a regular file (a pipe, a terminal), empty,
    /// or the system refuses. The caller then reads it instead.
    pub fn new(file: &File) -> Option<Mapped> {
        let meta = file.metadata().ok()?;
        if !meta.file_type().is_file() || meta.len() == 0 {
            return None;
        }
        let len = usize::try_from(meta.len()).ok()?;
        // SAFETY: a fresh read-only private mapping of an open file descriptor, at an address
        // the kernel picks; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        // Read once, front to back: the kernel may read ahead further and drop pages behind.
        // SAFETY: advice on the mapping just made; failure is harmless.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        Some(Mapped { ptr, len })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes until `self` is dropped.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl dialguard::replay::InMemory for Mapped {
    fn bytes(&self) -> &[u8] {
        Mapped::bytes(self)
    }

    /// Drops the pages wholly inside `range` from the mapping: the file's pages are page
    /// cache, but mapped they count in the process's resident memory until unmapped, so a
    /// replay of a large file would show the whole file resident at its end. (Were they read
    /// again, a private file mapping reads them back from the file: never garbage.)
    fn done(&self, range: std::ops::Range<usize>) {
        let page = page_size();
        let start = range.start.next_multiple_of(page);
        let end = range.end.min(self.len) / page * page;
        if end > start {
            // SAFETY: advice on whole pages inside the mapping made in `new`; the library no
            // longer reads them, and a read would fault the file's bytes back in.
            unsafe {
                libc::madvise(
                    self.ptr.cast::<u8>().add(start).cast(),
                    end - start,
                    libc::MADV_DONTNEED,
                )
            };
        }
    }
}

/// The system's page size.
fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096).max(1)
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, once; no borrow of `bytes` outlives
        // `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
