//! hostPath volumes: type checks and creation, as upstream's `pkg/volume/hostpath`.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

/// Checks (and for the `...OrCreate` types, creates) a hostPath of `path_type`.
/// The messages are upstream's.
pub fn check_host_path(path: &str, path_type: Option<&str>) -> Result<(), String> {
    if path.split('/').any(|p| p == "..") {
        return Err(format!("invalid HostPath `{path}`: must not contain '..'"));
    }
    let path_type = path_type.unwrap_or_default();
    match path_type {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if !exists(path) {
                make_dir(path).map_err(|e| e.to_string())?;
            }
            type_matched(path, "Directory", "directory")
        }
        "Directory" => type_matched(path, "Directory", "directory"),
        "FileOrCreate" => {
            if !exists(path) {
                make_file(path).map_err(|e| e.to_string())?;
            }
            type_matched(path, "File", "file")
        }
        "File" => type_matched(path, "File", "file"),
        "Socket" => type_matched(path, "Socket", "socket file"),
        "CharDevice" => type_matched(path, "CharDevice", "character device"),
        "BlockDevice" => type_matched(path, "BlockDevice", "block device"),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

fn exists(path: &str) -> bool {
    std::fs::metadata(path).is_ok()
}

/// The hostPath type of what `path` points at (upstream's `GetFileType`).
fn file_type(path: &str) -> Result<&'static str, String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!("path {} does not exist", skiff_api::go_quote(path))
        } else {
            e.to_string()
        }
    })?;
    let ft = meta.file_type();
    Ok(if ft.is_socket() {
        "Socket"
    } else if ft.is_block_device() {
        "BlockDevice"
    } else if ft.is_char_device() {
        "CharDevice"
    } else if ft.is_dir() {
        "Directory"
    } else if ft.is_file() {
        "File"
    } else {
        return Err(
            "only recognise file, directory, socket, block device and character device".to_string(),
        );
    })
}

fn type_matched(path: &str, expected: &str, description: &str) -> Result<(), String> {
    if !exists(path) {
        return Err(format!("hostPath {path} doesn't exist"));
    }
    let actual = file_type(path).map_err(|e| {
        format!(
            "hostPath type check failed, {path} is not a {description}, unable to determine its type: {e}"
        )
    })?;
    if actual != expected {
        return Err(format!(
            "hostPath type check failed: {path} is not a {description}, it's a {actual}"
        ));
    }
    Ok(())
}

fn make_dir(path: &str) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
    match builder.recursive(true).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

fn make_file(path: &str) -> io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(Path::new(path))
    {
        Ok(f) => f.set_permissions(std::fs::Permissions::from_mode(0o644)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn type_checks_with_upstream_messages() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let f = format!("{d}/file");
        std::fs::write(&f, "x").unwrap();
        let sock = format!("{d}/sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let missing = format!("{d}/missing");

        let cases: Vec<(&str, Option<&str>, Option<String>)> = vec![
            (&d, None, None),
            (&missing, None, None),
            (&missing, Some(""), None),
            (&d, Some("Directory"), None),
            (&f, Some("File"), None),
            (&sock, Some("Socket"), None),
            ("/dev/null", Some("CharDevice"), None),
            (
                &f,
                Some("Directory"),
                Some(format!(
                    "hostPath type check failed: {f} is not a directory, it's a File"
                )),
            ),
            (
                &d,
                Some("File"),
                Some(format!(
                    "hostPath type check failed: {d} is not a file, it's a Directory"
                )),
            ),
            (
                &f,
                Some("Socket"),
                Some(format!(
                    "hostPath type check failed: {f} is not a socket file, it's a File"
                )),
            ),
            (
                "/dev/null",
                Some("BlockDevice"),
                Some(
                    "hostPath type check failed: /dev/null is not a block device, it's a CharDevice"
                        .to_string(),
                ),
            ),
            (
                &f,
                Some("CharDevice"),
                Some(format!(
                    "hostPath type check failed: {f} is not a character device, it's a File"
                )),
            ),
            (
                &missing,
                Some("Directory"),
                Some(format!("hostPath {missing} doesn't exist")),
            ),
            (
                &d,
                Some("Weird"),
                Some("Weird is an invalid volume type".to_string()),
            ),
            (
                "/a/../b",
                None,
                Some("invalid HostPath `/a/../b`: must not contain '..'".to_string()),
            ),
        ];
        for (path, ty, want) in cases {
            assert_eq!(check_host_path(path, ty).err(), want, "{path} {ty:?}");
        }
        assert!(!exists(&missing), "plain checks never create");
    }

    #[test]
    fn or_create_types_create_with_upstream_modes() {
        let dir = tempfile::tempdir().unwrap();
        let d = format!("{}/new/sub", dir.path().display());
        check_host_path(&d, Some("DirectoryOrCreate")).unwrap();
        let meta = std::fs::metadata(&d).unwrap();
        assert!(meta.is_dir());
        // 0755 less the umask, which never removes owner bits.
        assert_eq!(meta.permissions().mode() & 0o700, 0o700);
        assert_eq!(meta.permissions().mode() & 0o022, 0);

        let f = format!("{}/f", dir.path().display());
        check_host_path(&f, Some("FileOrCreate")).unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);

        // Existing entries of the other kind are reported, not replaced.
        let err = check_host_path(&f, Some("DirectoryOrCreate")).unwrap_err();
        assert_eq!(
            err,
            format!("hostPath type check failed: {f} is not a directory, it's a File")
        );
        let err = check_host_path(&d, Some("FileOrCreate")).unwrap_err();
        assert_eq!(
            err,
            format!("hostPath type check failed: {d} is not a file, it's a Directory")
        );
    }
}
