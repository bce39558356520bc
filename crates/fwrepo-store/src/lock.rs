//! The writer lock: one writer per data dir, across processes, with a clear error for a second.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

pub const LOCK_FILE: &str = "LOCK";

/// Holds `DIR/LOCK` locked (flock) for as long as it lives. The kernel drops the lock when the
/// process dies, so a crashed writer never leaves the store locked.
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    pub fn acquire(dir: &Path) -> Result<WriterLock> {
        let path = dir.join(LOCK_FILE);
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).at(&path)?;
        // SAFETY: flock on an fd we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::WouldBlock {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_owned(),
                    pid => format!("pid {pid}"),
                };
                return Err(Error::Locked { path: dir.to_owned(), holder });
            }
            return Err(err).at(&path);
        }
        file.set_len(0).at(&path)?;
        file.rewind().at(&path)?;
        write!(file, "{}", std::process::id()).at(&path)?;
        Ok(WriterLock { _file: file })
    }
}
