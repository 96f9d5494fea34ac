//! Test helpers: a small disk to fill up.
//!
//! Owns: [`SmallDisk`], for tests of what a full disk does to spools and uploads.
//! Must not: be compiled into release builds (feature `test-support` or tests only).

use uuid::Uuid;

/// A small tmpfs mounted on a new temporary directory, for tests of what happens
/// when a disk fills up; unmounted (and the directory removed) on drop. Needs the
/// right to mount (root, as the test command runs); panics with the reason if not.
pub struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    /// Mount a tmpfs of `bytes` bytes (rounded up to whole pages by the kernel).
    pub fn mount(bytes: u64) -> SmallDisk {
        let path = std::env::temp_dir().join(format!("gremium-disk-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("mount point");
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a {bytes}-byte tmpfs on {} failed (the full-disk tests need to run as root): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { path }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Take all free space but about `leave` bytes with a new file (allocated at
    /// once, never overshooting); returns it (remove it to free the space). A writer
    /// on the disk may take some of the space between reading it and allocating, so
    /// a refused allocation is tried again with what is free then.
    pub fn fill_leaving(&self, leave: u64) -> std::path::PathBuf {
        use fs4::fs_std::FileExt;
        let filler = self
            .path
            .join(format!("filler-{}", Uuid::new_v4().simple()));
        let f = std::fs::File::create(&filler).expect("filler");
        let mut last = None;
        for _ in 0..20 {
            let free = fs4::available_space(&self.path).expect("free space");
            match f.allocate(free.saturating_sub(leave)) {
                Ok(()) => return filler,
                // Less is free now than a moment ago.
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => last = Some(e),
                Err(e) => panic!("allocating the filler: {e}"),
            }
        }
        panic!("allocating the filler: {last:?}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
        let _ = std::fs::remove_dir(&self.path);
    }
}
