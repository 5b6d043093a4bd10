//! `process_*` metrics, read from `/proc/self` at each scrape (as the Go
//! client's process collector does), with no extra dependency.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Clock ticks per second of `/proc/*/stat` times: USER_HZ, fixed at 100 in
/// the Linux user-space ABI on every architecture we run on.
const USER_HZ: f64 = 100.0;

/// Registers the process collector in `registry`.
pub(super) fn register(registry: &mut Registry) {
    registry.register_collector(Box::new(ProcessCollector {
        boot_time: boot_time(),
    }));
}

#[derive(Debug)]
struct ProcessCollector {
    /// Seconds since the epoch at boot (`btime` of `/proc/stat`).
    boot_time: Option<f64>,
}

/// What `/proc/self` says about this process.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Sample {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Start time in seconds since boot.
    pub start_since_boot: Option<f64>,
    /// Virtual memory size in bytes.
    pub virtual_bytes: Option<f64>,
    /// Resident set size in bytes.
    pub resident_bytes: Option<f64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .map(|stat| parse_stat(&stat))
            .unwrap_or_default();
        let resident = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| parse_status_kb(&status, "VmRSS:"))
            .or(sample.resident_bytes);
        if let Some(cpu) = sample.cpu_seconds {
            let metric = ConstCounter::new(cpu);
            metric.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                metric.metric_type(),
            )?)?;
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                entries.count() as f64,
            )?;
        }
        if let Some(rss) = resident {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss,
            )?;
        }
        if let (Some(boot), Some(start)) = (self.boot_time, sample.start_since_boot) {
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                boot + start,
            )?;
        }
        if let Some(vsize) = sample.virtual_bytes {
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                vsize,
            )?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Reads `/proc/self/stat`: fields after the parenthesised command name
/// (which may itself contain spaces and parentheses).
pub(super) fn parse_stat(stat: &str) -> Sample {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Sample::default();
    };
    // rest starts at field 3 (state); field N is at index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    Sample {
        cpu_seconds: num(14).zip(num(15)).map(|(u, s)| (u + s) / USER_HZ),
        start_since_boot: num(22).map(|t| t / USER_HZ),
        virtual_bytes: num(23),
        resident_bytes: None,
    }
}

/// A `kB` line of `/proc/self/status` in bytes.
pub(super) fn parse_status_kb(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    let kb: f64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024.0)
}
