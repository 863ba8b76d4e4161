//! Temporary files for greetings and logs, in the target directory, removed on drop
//! (a failing test leaves nothing behind).

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A file that exists for as long as this value.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
}

/// Writes `bytes` to a fresh file in the target directory (its own, even where
/// tests running at once ask for the same name).
pub fn temp_file(name: &str, bytes: &[u8]) -> TempFile {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let nth = MADE.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{}-{nth}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    TempFile { path }
}

impl TempFile {
    /// The path as a flag's value.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temporary path")
    }
}

impl Deref for TempFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Already removed by the test itself is fine.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A directory that exists, with all it holds, for as long as this value.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

/// Makes a fresh directory in the target directory (its own, as [`temp_file`]).
pub fn temp_dir(name: &str) -> TempDir {
    // A fresh name, whose file is removed at once.
    let path = temp_file(name, b"").to_path_buf();
    std::fs::create_dir(&path).unwrap();
    TempDir { path }
}

impl TempDir {
    /// Writes `bytes` to `relative` in the directory (making its parents), returning
    /// the file's path.
    pub fn write(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
