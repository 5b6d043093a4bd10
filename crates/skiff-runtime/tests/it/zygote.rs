//! The supervisor zygote's protocol, against the real shim binary: bad
//! requests get a `Failed` reply and the zygote carries on; a good one gets
//! a forked supervisor (whose report arrives on the pipe sent with it) and
//! its pidfd; the zygote ends when the runtime's end closes.
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use skiff_runtime::shim::zygote::Reply;
use skiff_runtime::shim::{RunArgs, StartReport};
use skiff_sys::fdpass;

fn ask(
    socket: &OwnedFd,
    data: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> (Reply, Vec<OwnedFd>) {
    fdpass::send(socket, data, fds).unwrap();
    let mut buf = [0u8; 4096];
    let (len, fds) = fdpass::recv(socket, &mut buf).unwrap();
    (serde_json::from_slice(&buf[..len]).unwrap(), fds)
}

#[test]
fn bad_requests_are_refused_and_a_good_one_forks_a_supervisor() {
    let (ours, theirs) = fdpass::seqpacket_pair().unwrap();
    fdpass::set_timeout(&ours, Duration::from_secs(30)).unwrap();
    let mut zygote = Command::new(env!("CARGO_BIN_EXE_skiff-runtime-shim"))
        .arg("zygote")
        .stdin(Stdio::from(theirs))
        .spawn()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(tmp.path().join("shim.log")).unwrap();
    let (mut report, report_w) = std::io::pipe().unwrap();
    let report_w = OwnedFd::from(report_w);

    let (reply, fds) = ask(&ours, b"{not json", &[report_w.as_fd(), log.as_fd()]);
    assert!(
        matches!(&reply, Reply::Failed(m) if m.starts_with("bad arguments")),
        "{reply:?}"
    );
    assert!(fds.is_empty());

    let huge = vec![b' '; 100 << 10];
    let (reply, _) = ask(&ours, &huge, &[report_w.as_fd(), log.as_fd()]);
    assert!(
        matches!(&reply, Reply::Failed(m) if m.contains("longer than")),
        "{reply:?}"
    );

    let args = RunArgs {
        id: "c1".into(),
        bundle: tmp.path().join("no-such-bundle"),
        log_path: None,
        exit_file: tmp.path().join("exit.json"),
        cgroups_path: "/skiff-zygote-test/c1".into(),
        control_socket: None,
        stdin: false,
        stdin_once: false,
        tty: false,
        detach_mounts: vec![],
        keep_mounts: vec![],
        mount_template: None,
    };
    let json = serde_json::to_vec(&args).unwrap();
    let (reply, _) = ask(&ours, &json, &[log.as_fd()]);
    assert!(
        matches!(&reply, Reply::Failed(m) if m.contains("got 1 descriptors")),
        "{reply:?}"
    );

    // A supervisor for a bundle that is not there: forked, it reports the
    // failure on the pipe and ends; its pidfd says so.
    let (reply, mut fds) = ask(&ours, &json, &[report_w.as_fd(), log.as_fd()]);
    drop(report_w);
    let Reply::Forked { pid } = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(fds.len(), 1);
    let mut line = String::new();
    report.read_to_string(&mut line).unwrap();
    let report: StartReport = serde_json::from_str(line.trim()).unwrap();
    assert!(
        matches!(&report, StartReport::Failed(m) if m.contains("no-such-bundle")),
        "{report:?}"
    );
    let pidfd = fds.remove(0);
    let mut poll = [rustix::event::PollFd::new(
        &pidfd,
        rustix::event::PollFlags::IN,
    )];
    rustix::event::poll(&mut poll, None).unwrap();
    // The zygote reaps it: the PID goes away.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while skiff_sys::process::process_exists(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "supervisor {pid} never reaped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    drop(ours);
    let status = zygote.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
