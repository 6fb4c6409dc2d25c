//! Small file systems the tests make and break: a size-limited tmpfs (disk
//! full) and an ext4 image on a loop device that can be forced read-only at
//! run time. Both need root (CAP_SYS_ADMIN), which the test machines and CI
//! have; when mounting fails the test fails loudly instead of skipping, so a
//! fault test never passes without having injected its fault.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn unmount(dir: &Path) {
    let dir = dir.to_string_lossy();
    // Lazy as a fallback: never leave a mount behind because a process the
    // test started still holds a file open.
    if run("umount", &[&dir]).is_err() {
        let _ = run("umount", &["-l", &dir]);
    }
}

/// A tmpfs of a fixed size, mounted on a fresh temporary directory.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes`; panics (failing the test) if it cannot.
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_string_lossy().into_owned();
        if let Err(e) = run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes}"),
                "tmpfs",
                &path,
            ],
        ) {
            panic!(
                "cannot mount a tmpfs for the disk-full test ({e}). This test needs root \
                 (CAP_SYS_ADMIN); it does not skip, so that disk-full handling is never \
                 left untested silently"
            );
        }
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(self.dir.path());
    }
}

/// An ext4 file system in an image file on a loop device, mounted with
/// `errors=remount-ro`, so that [`Ext4Loop::force_read_only`] turns it
/// read-only under open files, as a failing disk does.
pub struct Ext4Loop {
    mount: tempfile::TempDir,
    device: String,
    _image_dir: tempfile::TempDir,
}

impl Ext4Loop {
    /// Makes and mounts a file system of `bytes`; panics if it cannot.
    pub fn mount(bytes: u64) -> Ext4Loop {
        let image_dir = tempfile::tempdir().expect("tempdir");
        let image = image_dir.path().join("fs.img");
        let file = std::fs::File::create(&image).expect("create image");
        file.set_len(bytes).expect("size image");
        drop(file);
        let fail = |e: String| -> ! {
            panic!(
                "cannot make an ext4 file system on a loop device for the read-only test \
                 ({e}). This test needs root, losetup and mkfs.ext4; it does not skip, so \
                 that read-only handling is never left untested silently"
            )
        };
        let device =
            run("losetup", &["-f", "--show", &image.to_string_lossy()]).unwrap_or_else(|e| fail(e));
        let mount = tempfile::tempdir().expect("tempdir");
        let this = Ext4Loop {
            mount,
            device,
            _image_dir: image_dir,
        };
        let mount_path = this.mount.path().to_string_lossy().into_owned();
        if let Err(e) = run("mkfs.ext4", &["-q", &this.device]) {
            fail(e);
        }
        if let Err(e) = run(
            "mount",
            &["-o", "errors=remount-ro", &this.device, &mount_path],
        ) {
            fail(e);
        }
        this
    }

    pub fn path(&self) -> &Path {
        self.mount.path()
    }

    /// Makes ext4 report an error, which (with `errors=remount-ro`) aborts
    /// its journal and turns the file system read-only at once: writes to
    /// files already open fail with EROFS, reads keep working.
    pub fn force_read_only(&self) {
        let name = Path::new(&self.device)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let trigger = PathBuf::from(format!("/sys/fs/ext4/{name}/trigger_fs_error"));
        std::fs::write(&trigger, "vkv fault test")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", trigger.display()));
        // The file system must now refuse a new file.
        let probe = self.path().join("probe");
        assert!(
            std::fs::write(&probe, "x").is_err(),
            "{} is still writable after the forced error",
            self.path().display()
        );
    }
}

impl Drop for Ext4Loop {
    fn drop(&mut self) {
        unmount(self.mount.path());
        let _ = run("losetup", &["-d", &self.device]);
    }
}
