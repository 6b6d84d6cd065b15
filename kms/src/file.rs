//! Reading the files that options and the environment name (CA bundles, client keys, token files), bounded: only
//! a regular file is read (a FIFO or a device such as `/dev/zero` is refused, without waiting for a writer), and at
//! most a documented size.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use zeroize::Zeroizing;

/// Why a bounded read failed.
#[derive(Debug)]
pub(crate) enum FileError {
    /// Opening or reading failed.
    Io(io::Error),
    /// Not a regular file.
    NotAFile,
    /// Longer than the limit, in bytes.
    TooLarge(u64),
}

/// The contents of the regular file at `path`, if at most `limit` bytes; wiped when dropped (key and token files
/// hold secrets).
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, FileError> {
    let file = open(path).map_err(FileError::Io)?;
    // The opened handle's metadata: the file checked is the file read.
    if !file.metadata().map_err(FileError::Io)?.is_file() {
        return Err(FileError::NotAFile);
    }
    let mut contents = Zeroizing::new(Vec::new());
    // One byte past the limit tells a file of exactly `limit` bytes from a longer one.
    file.take(limit.saturating_add(1)).read_to_end(&mut contents).map_err(FileError::Io)?;
    if contents.len() as u64 > limit {
        return Err(FileError::TooLarge(limit));
    }
    Ok(contents)
}

/// Opens without blocking: opening a FIFO for reading would otherwise wait for a writer, forever.
#[cfg(unix)]
fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

#[cfg(not(unix))]
fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_up_to_the_limit_are_read() {
        let dir = std::env::temp_dir().join(format!("mongocrypt-kms-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_bounded(&path, 10).unwrap().as_slice(), b"0123456789");
        assert!(matches!(read_bounded(&path, 9), Err(FileError::TooLarge(9))));
        assert!(matches!(read_bounded(&dir, 10), Err(FileError::NotAFile)));
        assert!(matches!(read_bounded(&dir.join("missing"), 10), Err(FileError::Io(_))));
        #[cfg(unix)]
        {
            assert!(matches!(read_bounded(Path::new("/dev/zero"), 10), Err(FileError::NotAFile)));
            let fifo = dir.join("fifo");
            let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a NUL-terminated path that outlives the call; mkfifo only reads it.
            assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
            assert!(matches!(read_bounded(&fifo, 10), Err(FileError::NotAFile)), "a FIFO without writer");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
