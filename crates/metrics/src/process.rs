//! Process basics under their standard names, read from `/proc/self` at scrape time on Linux
//! (the `prometheus` crate's own `process` feature would pull in `procfs` for five numbers).
//! Elsewhere the gauges stay at 0.

use prometheus::{Counter, Gauge, IntGauge, Registry};

use crate::register;

/// Clock ticks per second of `/proc/*/stat` times: `USER_HZ`, 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

#[derive(Debug)]
pub(crate) struct ProcessMetrics {
    cpu: Counter,
    resident: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start_time: Gauge,
    threads: IntGauge,
}

#[allow(clippy::expect_used)]
impl ProcessMetrics {
    pub(crate) fn new(r: &Registry) -> Self {
        let int = |name: &str, help: &str| {
            register(r, &IntGauge::new(name, help).expect("valid metric options"))
        };
        ProcessMetrics {
            cpu: register(
                r,
                &Counter::new(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                )
                .expect("valid metric options"),
            ),
            resident: int(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            open_fds: int("process_open_fds", "Number of open file descriptors."),
            max_fds: int(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            start_time: register(
                r,
                &Gauge::new(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                )
                .expect("valid metric options"),
            ),
            threads: int("process_threads", "Number of OS threads in the process."),
        }
    }

    /// Reads `/proc/self` (a few small files) into the gauges.
    pub(crate) fn refresh(&self) {
        if !cfg!(target_os = "linux") {
            return;
        }
        if let Some(stat) = read("/proc/self/stat") {
            // Fields after the command name (which may hold spaces) in parentheses.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = after.split_whitespace().collect();
            // `after` starts at field 3 (state): field N is fields[N - 3].
            let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
            if let (Some(utime), Some(stime)) = (field(14), field(15)) {
                let total = (utime + stime) / USER_HZ;
                let delta = total - self.cpu.get();
                if delta > 0.0 {
                    self.cpu.inc_by(delta);
                }
            }
            if let Some(threads) = field(20) {
                self.threads.set(threads as i64);
            }
            if let (Some(start), Some(boot)) = (field(22), boot_time()) {
                self.start_time.set(boot + start / USER_HZ);
            }
        }
        if let Some(status) = read("/proc/self/status") {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            {
                self.resident.set(kb * 1024);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Some(limits) = read("/proc/self/limits") {
            if let Some(soft) = limits
                .lines()
                .find_map(|l| l.strip_prefix("Max open files"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<i64>().ok())
            {
                self.max_fds.set(soft);
            }
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Boot time (unix seconds) from `/proc/stat`'s `btime`.
fn boot_time() -> Option<f64> {
    read("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}
