//! An input file held still for ingest, so its bytes can be read through a mapping instead of
//! being copied out of the page cache with `read()`.
//!
//! Reading a file through a shared mapping is safe for ingest only if nobody changes the file
//! meanwhile: the stages (cut, SHA-256, BLAKE3, pack write) each read the chunk's bytes on
//! their own, so a writer between two of those reads could make a stored chunk differ from
//! its id. A Linux read lease (`F_SETLEASE`, `F_RDLCK`) is what makes "nobody" checkable:
//!
//! * the kernel grants it only while no one has the file open for writing (writable shared
//!   mappings included), and
//! * while it is held, anyone opening the file for writing or truncating it first *breaks*
//!   it and waits (up to `/proc/sys/fs/lease-break-time` seconds, or fails at once with
//!   `O_NONBLOCK`) until the holder lets go.
//!
//! So a lease still unbroken after every stage has finished reading means the bytes did not
//! change during the ingest: [`HeldFile::intact`] is checked between windows (to stop early)
//! and once after the last stage is done (the check that decides). A broken lease fails the
//! ingest with a clear error and nothing stored; the read path would instead store a blend of
//! old and new bytes, consistent with its ids but equal to no version of the file.
//!
//! Windows are populated with `MADV_POPULATE_READ`, which reports a read error as an error
//! instead of the `SIGBUS` a fault would raise. When a lease cannot be had (another writer has
//! the file open, a file the process neither owns nor has `CAP_LEASE` for, a file system
//! without leases, a lease-break time too short to finish a window in), ingest reads with
//! `read()` as before.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Once;

/// The shortest lease-break time (seconds) mapping is used with: after a break the kernel
/// lets the writer go once this has passed, and a truncating writer would then turn the
/// stages' reads of a window into `SIGBUS`. A window is read in milliseconds.
const MIN_BREAK_TIME_S: u64 = 5;

/// `fcntl`'s `F_SETOWN_EX` and its `struct f_owner_ex` (`<linux/fcntl.h>`), which `libc` does
/// not carry.
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;
#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// A regular file with a read lease on it (released on drop).
pub(crate) struct HeldFile {
    file: File,
    len: u64,
}

/// A read-only mapping of part of a held file, populated.
pub(crate) struct Window {
    map: memmap2::Mmap,
}

impl std::ops::Deref for Window {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl HeldFile {
    /// Takes a read lease on `file` (opened read-only); gives the file back when none can be
    /// had here.
    pub(crate) fn hold(file: File) -> Result<HeldFile, File> {
        if !break_time_is_long_enough() {
            return Err(file);
        }
        quiet_lease_breaks();
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor this function owns, with integer arguments.
        if unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) } != 0 {
            return Err(file);
        }
        // The break notice goes to this thread (the one reading the windows), so no other
        // thread's system call is interrupted by it.
        let owner = FOwnerEx {
            kind: F_OWNER_TID,
            // SAFETY: gettid has no preconditions.
            pid: unsafe { libc::gettid() },
        };
        // SAFETY: fcntl on the held descriptor with a valid `struct f_owner_ex`; failure
        // leaves the notice going to the process, which is harmless (see
        // `quiet_lease_breaks`).
        unsafe { libc::fcntl(fd, F_SETOWN_EX, &owner) };
        // The length once the lease holds: nobody can change it from here on without
        // breaking the lease.
        match file.metadata() {
            Ok(m) if m.is_file() => Ok(HeldFile { len: m.len(), file }),
            _ => {
                unlock(&file);
                Err(file)
            }
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether the lease still holds: nobody has opened the file for writing or truncated it
    /// since it was taken.
    pub(crate) fn intact(&self) -> bool {
        // SAFETY: fcntl on the held descriptor with no argument.
        let kind = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) };
        // While a break is under way the kernel reports the type it is being broken to.
        kind == libc::F_RDLCK
    }

    /// Maps `len` bytes from `offset` (within the file) and reads them into the page tables.
    pub(crate) fn window(&self, offset: u64, len: usize) -> io::Result<Window> {
        debug_assert!(offset + len as u64 <= self.len);
        // SAFETY: the mapping is read-only and private to this ingest; the lease keeps writers
        // (and truncation) out while it holds, and the ingest fails if it stopped holding
        // before every stage was done with the bytes (`intact`).
        let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(&self.file)? };
        if len > 0 {
            loop {
                match map.advise(memmap2::Advice::PopulateRead) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.raw_os_error() == Some(libc::EFAULT) => {
                        return Err(io::Error::other("the file could not be read (an I/O error, or it was cut short)"));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Window { map })
    }
}

impl Drop for HeldFile {
    fn drop(&mut self) {
        unlock(&self.file);
    }
}

fn unlock(file: &File) {
    // SAFETY: fcntl on a descriptor the caller owns, with integer arguments.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
}

/// Whether `/proc/sys/fs/lease-break-time` leaves a window's worth of time after a break.
fn break_time_is_long_enough() -> bool {
    std::fs::read_to_string("/proc/sys/fs/lease-break-time")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|s| s >= MIN_BREAK_TIME_S)
}

/// A lease break is announced with `SIGIO`, whose default action ends the process. The
/// ingest learns of breaks from `F_GETLEASE`, so the signal itself only needs to do no harm:
/// if nothing handles it, a handler that does nothing is installed (`SA_RESTART`, so an
/// interrupted system call is restarted). A handler or `SIG_IGN` set by someone else is kept.
fn quiet_lease_breaks() {
    static ONCE: Once = Once::new();
    extern "C" fn ignore(_: libc::c_int) {}
    ONCE.call_once(|| {
        // SAFETY: sigaction with valid pointers; the handler is async-signal-safe (it does
        // nothing).
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGIO, std::ptr::null(), &mut old) != 0 || old.sa_sigaction != libc::SIG_DFL {
                return;
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
            new.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(libc::SIGIO, &new, std::ptr::null_mut());
        }
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    /// Waits (bounded) until `held`'s lease is no longer intact.
    pub(crate) fn wait_broken(held: &HeldFile) {
        let t = Instant::now();
        while held.intact() {
            assert!(t.elapsed() < Duration::from_secs(10), "the lease was never broken");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_held_file_maps_its_bytes_and_stays_intact_while_only_read() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let (_dir, path) = file_with(&bytes);
        let held = HeldFile::hold(File::open(&path).unwrap()).unwrap_or_else(|_| panic!("no lease"));
        assert_eq!(held.len(), bytes.len() as u64);
        assert_eq!(&*held.window(0, bytes.len()).unwrap(), &bytes[..]);
        assert_eq!(&*held.window(4097, 10_000).unwrap(), &bytes[4097..14_097], "an offset off the page size");
        // Readers do not break a read lease.
        let _reader = File::open(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(held.intact());
    }

    #[test]
    fn a_file_open_for_writing_is_not_held() {
        let (_dir, path) = file_with(b"being written");
        let _writer = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        assert!(HeldFile::hold(File::open(&path).unwrap()).is_err());
    }

    #[test]
    fn opening_for_writing_breaks_the_lease_and_waits_for_its_release() {
        let (_dir, path) = file_with(b"old bytes");
        let held = HeldFile::hold(File::open(&path).unwrap()).unwrap_or_else(|_| panic!("no lease"));
        let writer = std::thread::spawn({
            let path = path.clone();
            move || {
                let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.write_all(b"new").unwrap();
            }
        });
        wait_broken(&held);
        assert_eq!(&*held.window(0, 9).unwrap(), b"old bytes", "the writer waits while the lease is held");
        drop(held);
        writer.join().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new bytes");
    }

    #[test]
    fn truncating_breaks_the_lease_too() {
        let (_dir, path) = file_with(b"0123456789");
        let held = HeldFile::hold(File::open(&path).unwrap()).unwrap_or_else(|_| panic!("no lease"));
        let cutter = std::thread::spawn({
            let path = path.clone();
            move || {
                let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: a valid C string path.
                assert_eq!(unsafe { libc::truncate(c.as_ptr(), 2) }, 0);
            }
        });
        wait_broken(&held);
        drop(held);
        cutter.join().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"01");
    }
}
