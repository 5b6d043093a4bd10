use super::*;

const V1_STAT: &str = "cache 4096\nrss 8192\npgfault 3\ntotal_cache 1048576\ntotal_rss 2097152\n\
total_pgfault 1200\ntotal_pgmajfault 7\ntotal_inactive_file 524288\ntotal_active_file 4096\n";

const V2_STAT: &str = "anon 3145728\nfile 1048576\nkernel 65536\ninactive_file 262144\n\
active_file 786432\npgfault 990\npgmajfault 4\n";

#[test]
fn cpu_counters() {
    type Parser = fn(&str) -> Option<u64>;
    let cases: [(&str, Parser, &str, Option<u64>); 5] = [
        (
            "v1 nanoseconds",
            parse_v1_cpu,
            "123456789\n",
            Some(123_456_789),
        ),
        ("v1 garbage", parse_v1_cpu, "x\n", None),
        (
            "v2 usage_usec to ns",
            parse_v2_cpu,
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
            Some(2_500_000),
        ),
        (
            "v2 key not a prefix match",
            parse_v2_cpu,
            "usage_usec_total 9\nusage_usec 1\n",
            Some(1000),
        ),
        ("v2 missing", parse_v2_cpu, "user_usec 2000\n", None),
    ];
    for (name, parse, text, want) in cases {
        assert_eq!(parse(text), want, "{name}");
    }
}

#[test]
fn memory_v1_and_v2() {
    struct Case {
        name: &'static str,
        got: Option<MemorySample>,
        working_set: u64,
        available: Option<u64>,
        rss: u64,
        faults: (u64, u64),
    }
    let cases = [
        Case {
            name: "v1 unlimited",
            got: parse_v1_memory("1572864\n", "9223372036854771712\n", V1_STAT),
            working_set: 1_572_864 - 524_288,
            available: None,
            rss: 2_097_152,
            faults: (1200, 7),
        },
        Case {
            name: "v1 limited",
            got: parse_v1_memory("1572864\n", "4194304\n", V1_STAT),
            working_set: 1_048_576,
            available: Some(4_194_304 - 1_048_576),
            rss: 2_097_152,
            faults: (1200, 7),
        },
        Case {
            name: "v1 inactive above usage floors at 0",
            got: parse_v1_memory("4096\n", "8192\n", V1_STAT),
            working_set: 0,
            available: Some(8192),
            rss: 2_097_152,
            faults: (1200, 7),
        },
        Case {
            name: "v2 max",
            got: parse_v2_memory("4194304\n", "max\n", V2_STAT),
            working_set: 4_194_304 - 262_144,
            available: None,
            rss: 3_145_728,
            faults: (990, 4),
        },
        Case {
            name: "v2 limited",
            got: parse_v2_memory("4194304\n", "8388608\n", V2_STAT),
            working_set: 3_932_160,
            available: Some(8_388_608 - 3_932_160),
            rss: 3_145_728,
            faults: (990, 4),
        },
    ];
    for c in cases {
        let m = c
            .got
            .unwrap_or_else(|| panic!("{}: parsed nothing", c.name));
        assert_eq!(m.working_set(), c.working_set, "{}", c.name);
        assert_eq!(m.available(), c.available, "{}", c.name);
        assert_eq!(m.rss, c.rss, "{}", c.name);
        assert_eq!((m.page_faults, m.major_page_faults), c.faults, "{}", c.name);
    }
    assert_eq!(parse_v1_memory("", "1", V1_STAT), None);
    assert_eq!(parse_v2_memory("n/a", "max", V2_STAT), None);
}

#[test]
fn reads_a_fake_hierarchy_in_each_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let write = |dir: &str, file: &str, text: &str| {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(file), text).unwrap();
    };
    write("cpuacct/skiff/pod/c", "cpuacct.usage", "42\n");
    write("memory/skiff/pod/c", "memory.usage_in_bytes", "1572864\n");
    write("memory/skiff/pod/c", "memory.limit_in_bytes", "4194304\n");
    write("memory/skiff/pod/c", "memory.stat", V1_STAT);
    write("pids/skiff/pod/c", "pids.current", "3\n");
    let v1 = CgroupFiles::new(CgroupMode::Hybrid, root, "/skiff/pod/c");
    assert!(v1.exists());
    let s = v1.read_sample();
    assert_eq!(s.cpu_usage_nanos, Some(42));
    assert_eq!(s.pids, Some(3));
    assert_eq!(s.memory.unwrap().working_set(), 1_048_576);

    write("skiff/pod/d", "cpu.stat", "usage_usec 7\n");
    write("skiff/pod/d", "memory.current", "4194304\n");
    write("skiff/pod/d", "memory.stat", V2_STAT);
    let v2 = CgroupFiles::new(CgroupMode::Unified, root, "/skiff/pod/d");
    let s = v2.read_sample();
    assert_eq!(s.cpu_usage_nanos, Some(7000));
    assert_eq!(s.pids, None);
    let m = s.memory.unwrap();
    assert_eq!((m.limit, m.working_set()), (None, 3_932_160));

    let gone = CgroupFiles::new(CgroupMode::Unified, root, "/skiff/none");
    assert!(!gone.exists());
    assert_eq!(gone.read_sample(), CgroupSample::default());
}

#[test]
fn net_dev_skips_loopback() {
    let text = "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  \
eth0:   5000      50    2    0    0     0          0         0     7000      70    3    0    0     0       0          0\n";
    assert_eq!(
        parse_net_dev(text),
        [InterfaceSample {
            name: "eth0".into(),
            rx_bytes: 5000,
            rx_errors: 2,
            tx_bytes: 7000,
            tx_errors: 3,
        }]
    );
    assert!(parse_net_dev("").is_empty());
}
