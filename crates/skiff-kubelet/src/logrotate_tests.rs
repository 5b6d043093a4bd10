#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;

use super::*;

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

/// 2026-11-30T01:02:03Z
const NOW: i64 = 1_796_000_523;

fn paths(names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(|n| Path::new("/l").join(n)).collect()
}

#[test]
fn plans_follow_upstream_rotation() {
    struct Case {
        name: &'static str,
        siblings: &'static [&'static str],
        max_files: usize,
        remove: &'static [&'static str],
        compress: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "first rotation",
            siblings: &[],
            max_files: 5,
            remove: &[],
            compress: &[],
        },
        Case {
            name: "the previous rotation gets compressed",
            siblings: &["0.log.20261130-000000"],
            max_files: 5,
            remove: &[],
            compress: &["0.log.20261130-000000"],
        },
        Case {
            name: "a half-done compression is redone",
            siblings: &["0.log.20261130-000000.tmp", "0.log.20261130-000000"],
            max_files: 5,
            remove: &["0.log.20261130-000000.tmp"],
            compress: &["0.log.20261130-000000"],
        },
        Case {
            name: "an original left beside its .gz is deleted",
            siblings: &["0.log.20261130-000000.gz", "0.log.20261130-000000"],
            max_files: 5,
            remove: &["0.log.20261130-000000"],
            compress: &[],
        },
        Case {
            name: "oldest files go so max_files remain after rotating",
            siblings: &[
                "0.log.20261129-000004",
                "0.log.20261129-000002.gz",
                "0.log.20261129-000001.gz",
                "0.log.20261129-000003.gz",
            ],
            max_files: 5,
            remove: &["0.log.20261129-000001.gz"],
            compress: &["0.log.20261129-000004"],
        },
        Case {
            name: "two files keep no rotated one",
            siblings: &["0.log.20261129-000001.gz", "0.log.20261129-000002"],
            max_files: 2,
            remove: &["0.log.20261129-000001.gz", "0.log.20261129-000002"],
            compress: &[],
        },
        Case {
            name: "leftovers do not count against max_files",
            siblings: &[
                "0.log.20261129-000001.gz",
                "0.log.20261129-000002.gz",
                "0.log.20261129-000002",
                "0.log.20261129-000003.tmp",
                "0.log.20261129-000003",
            ],
            max_files: 4,
            remove: &[
                "0.log.20261129-000002",
                "0.log.20261129-000003.tmp",
                "0.log.20261129-000001.gz",
            ],
            compress: &["0.log.20261129-000003"],
        },
    ];
    for c in cases {
        let plan = plan_rotation(
            Path::new("/l/0.log"),
            &paths(c.siblings),
            c.max_files,
            at(NOW),
        );
        assert_eq!(plan.remove, paths(c.remove), "{}: remove", c.name);
        assert_eq!(plan.compress, paths(c.compress), "{}: compress", c.name);
        assert_eq!(
            plan.rotated,
            Path::new("/l/0.log.20261130-010203"),
            "{}",
            c.name
        );
        // What is left after the plan, plus the live and the new rotated log.
        let left = c.siblings.len() - plan.remove.len() + 2;
        assert!(left <= c.max_files.max(2), "{}: {left} files left", c.name);
    }
}

#[test]
fn the_rotated_suffix_is_utc() {
    let local = at(NOW).to_offset(time::UtcOffset::from_hms(-7, 0, 0).unwrap());
    let plan = plan_rotation(Path::new("/l/0.log"), &[], 5, local);
    assert_eq!(plan.rotated, Path::new("/l/0.log.20261130-010203"));
}

#[test]
fn max_size_and_max_files_are_validated() {
    let sizes: [(&str, Result<Option<u64>, &str>); 7] = [
        ("10Mi", Ok(Some(10 * 1024 * 1024))),
        ("64Ki", Ok(Some(65536))),
        ("1G", Ok(Some(1_000_000_000))),
        ("-1", Ok(None)),
        ("0", Err("must be a positive quantity")),
        ("ten", Err("failed to parse container log max size")),
        ("", Err("failed to parse container log max size")),
    ];
    for (value, want) in sizes {
        match (parse_max_size(value), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{value:?}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{value:?}: {got}"),
            (got, want) => panic!("{value:?}: got {got:?}, want {want:?}"),
        }
    }
    assert_eq!(
        parse_max_size(DEFAULT_CONTAINER_LOG_MAX_SIZE),
        Ok(Some(10 << 20))
    );
    for (files, ok) in [(0, false), (1, false), (2, true), (5, true)] {
        assert_eq!(validate_max_files(files).is_ok(), ok, "{files}");
    }
    assert_eq!(
        validate_max_files(1).unwrap_err(),
        "invalid configuration: containerLogMaxFiles must be greater than 1"
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

#[tokio::test]
async fn rotation_compresses_prunes_renames_and_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("0.log");
    std::fs::write(&log, "live\n").unwrap();
    std::fs::write(dir.join("0.log.20261129-000001.gz"), "old").unwrap();
    std::fs::write(dir.join("0.log.20261129-000002"), "previous\n").unwrap();
    std::fs::write(dir.join("0.log.20261129-000002.tmp"), "junk").unwrap();
    std::fs::write(dir.join("1.log"), "another container").unwrap();

    let reopened = log.clone();
    let reopen = async move {
        // The runtime opens a fresh file at the log path.
        std::fs::write(&reopened, "").unwrap();
        Ok(())
    };
    rotate_log("c1", &log, 3, at(NOW), reopen).await.unwrap();
    assert_eq!(
        names(dir),
        [
            "0.log",
            "0.log.20261129-000002.gz",
            "0.log.20261130-010203",
            "1.log"
        ]
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
    assert_eq!(
        std::fs::read_to_string(dir.join("0.log.20261130-010203")).unwrap(),
        "live\n"
    );
    assert_eq!(gunzip(&dir.join("0.log.20261129-000002.gz")), "previous\n");
}

#[tokio::test]
async fn a_failed_reopen_renames_the_log_back() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("0.log");
    std::fs::write(&log, "live\n").unwrap();
    let reopen = async { Err(tonic::Status::failed_precondition("not running")) };
    let err = rotate_log("c1", &log, 5, at(NOW), reopen)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LogRotateError::Reopen { id, status } if id == "c1" && status.message() == "not running"),
        "{err}"
    );
    assert_eq!(names(tmp.path()), ["0.log"]);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "live\n");
}

#[tokio::test]
async fn a_missing_log_directory_is_an_error_and_nothing_is_reopened() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("gone/0.log");
    let reopen = async { panic!("reopened without a rotation") };
    let err = rotate_log("c1", &log, 5, at(NOW), reopen)
        .await
        .unwrap_err();
    assert!(matches!(err, LogRotateError::Io { .. }), "{err}");
}
