//! Every report file is written through here: into a temporary file beside the target,
//! then renamed into place, so a crashed run never leaves a half-written report.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A report file being written; it appears under its name only on [`AtomicFile::commit`].
/// Dropped without commit, it leaves nothing behind.
pub struct AtomicFile {
    writer: BufWriter<NamedTempFile>,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts writing `path` (its folder must exist).
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let temp = tempfile::Builder::new()
            .prefix(".recon-")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        Ok(AtomicFile {
            writer: BufWriter::with_capacity(256 * 1024, temp),
            path: path.to_path_buf(),
        })
    }

    /// The buffered writer for the file's content.
    pub fn writer(&mut self) -> &mut BufWriter<NamedTempFile> {
        &mut self.writer
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(self) -> io::Result<()> {
        let temp = self.writer.into_inner().map_err(|e| e.into_error())?;
        temp.as_file().sync_all()?;
        temp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Writes a whole file atomically.
pub fn write_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.writer().write_all(contents)?;
    file.commit()
}

/// Removes a file if it exists (a report left by an earlier run in the same folder).
pub fn remove_stale(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_appears_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        let mut file = AtomicFile::create(&path).unwrap();
        file.writer().write_all(b"{}").unwrap();
        assert!(!path.exists());
        file.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        let dropped = AtomicFile::create(&dir.path().join("y.json")).unwrap();
        drop(dropped);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
