//! One capstan process at a time in a checkout folder.
//!
//! Every pass resets its clone hard; two processes sharing a folder (the daemon and
//! a manual `capstan update --once`, or two replicas on one volume) would reset each
//! other's work mid-commit. The clone's `.git/capstan.lock` is locked (an OS file
//! lock, released when the process dies, so a killed process never leaves it
//! stuck) for as long as a [`Checkout`](super::Checkout) is open. A second process
//! waits a bounded time, then fails naming the holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::Error;

/// How long a second process waits for the folder.
pub const WAIT: Duration = Duration::from_secs(60);

/// Held while the folder is in use; unlocks on drop.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

impl FolderLock {
    /// Locks `<git_dir>/capstan.lock`, waiting up to `wait` for another holder.
    pub fn acquire(git_dir: &Path, wait: Duration) -> Result<FolderLock, Error> {
        let path = git_dir.join("capstan.lock");
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::Busy {
                        path: path.clone(),
                        holder: holder(&mut file),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        // Who holds it, for the next process's error message.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "pid {}", std::process::id()).map_err(io)?;
        Ok(FolderLock { _file: file })
    }
}

fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "another process".into()
    } else {
        text.chars().take(40).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_fails_naming_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = FolderLock::acquire(dir.path(), WAIT).expect("first");
        let err = FolderLock::acquire(dir.path(), Duration::from_millis(300)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        FolderLock::acquire(dir.path(), Duration::from_millis(300)).expect("free again");
    }
}
