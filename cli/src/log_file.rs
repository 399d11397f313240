//! `--log-file PATH`: the log also written to a file, rotated by size. When the file would grow
//! past `max_bytes`, `PATH.N-1` becomes `PATH.N` (… `PATH` becomes `PATH.1`) and a fresh `PATH` is
//! opened; the oldest, `PATH.<keep>`, is deleted. So at most `keep + 1` files of at most
//! `max_bytes` each (a single line longer than that gets a file of its own) are ever on disk.
//!
//! Hand-written rather than a crate: the rotating-file crates bring a date library and compression
//! that this needs neither of, and the command stays small (it is resident beside its workers).
//! Only the printer thread of the file writes here: a slow disk blocks that thread, never the master.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The most rotated files `--log-files` may keep.
pub const MAX_KEPT_FILES: u32 = 100;

/// The smallest `--log-file-size` (smaller would rotate on every few lines).
pub const MIN_FILE_BYTES: u64 = 4096;

/// Where and how much.
#[derive(Debug, Clone)]
pub struct FileOptions {
    pub path: PathBuf,
    /// Rotate before the file would pass this size.
    pub max_bytes: u64,
    /// Rotated files kept beside the live one (`PATH.1` … `PATH.<keep>`).
    pub keep: u32,
}

/// Why the options cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("--log-file {path}: {error}")]
    Open { path: String, error: std::io::Error },
    #[error("--log-files: {0} is too many: at most {MAX_KEPT_FILES} rotated files")]
    TooManyFiles(u32),
    #[error("--log-file-size: {0} bytes is too small: at least {MIN_FILE_BYTES}")]
    TooSmall(u64),
}

/// The live file and its size; rotates on write.
pub struct RotatingFile {
    options: FileOptions,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens (appends to) the live file, after checking the options.
    pub fn open(options: FileOptions) -> Result<RotatingFile, FileError> {
        if options.keep > MAX_KEPT_FILES {
            return Err(FileError::TooManyFiles(options.keep));
        }
        if options.max_bytes < MIN_FILE_BYTES {
            return Err(FileError::TooSmall(options.max_bytes));
        }
        let file = open_live(&options.path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile { options, file, size })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.options.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts every file one place up and opens a fresh live one.
    fn rotate(&mut self) -> std::io::Result<()> {
        let _ = self.file.flush();
        if self.options.keep == 0 {
            let _ = std::fs::remove_file(&self.options.path);
        } else {
            let _ = std::fs::remove_file(self.rotated(self.options.keep));
            for n in (1..self.options.keep).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.options.path, self.rotated(1))?;
        }
        self.file = open_live(&self.options.path).map_err(|e| match e {
            FileError::Open { error, .. } => error,
            other => std::io::Error::other(other.to_string()),
        })?;
        self.size = 0;
        Ok(())
    }
}

fn open_live(path: &Path) -> Result<File, FileError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|error| FileError::Open {
            path: path.display().to_string(),
            error,
        })
}

impl Write for RotatingFile {
    /// Whole lines only reach here (the printer's buffer holds whole lines), so a rotation never
    /// cuts one.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.options.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_a_bounded_number_of_files_of_bounded_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.log");
        let mut file = RotatingFile::open(FileOptions {
            path: path.clone(),
            max_bytes: MIN_FILE_BYTES,
            keep: 2,
        })
        .unwrap();
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..1000 {
            file.write_all(line.as_bytes()).unwrap();
        }
        file.flush().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["drover.log", "drover.log.1", "drover.log.2"]);
        for name in names {
            let size = std::fs::metadata(dir.path().join(&name)).unwrap().len();
            assert!(
                size <= MIN_FILE_BYTES && size.is_multiple_of(100),
                "{name}: {size} bytes"
            );
        }
        assert!(matches!(
            RotatingFile::open(FileOptions {
                path,
                max_bytes: 10,
                keep: 1
            }),
            Err(FileError::TooSmall(10))
        ));
    }
}
