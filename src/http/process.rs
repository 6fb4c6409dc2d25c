//! The standard `process_*` series of a Prometheus exporter (the names and
//! units every client library uses, which dashboards expect), read from
//! `/proc/self` at each scrape. Linux only: elsewhere, or if `/proc` cannot
//! be read, the series are left out rather than made up.

use std::fmt::Write;

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors (`None`: unlimited).
    pub max_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads them now; `None` if `/proc/self` cannot be read or parsed.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let mut stats = parse(&stat, &boot, &limits, clock_ticks()?, page_size()?)?;
        // The directory's own descriptor, open while it was read, is not one
        // of the process's.
        stats.open_fds = open_fds.saturating_sub(1);
        Some(stats)
    }

    /// Appends the series in the Prometheus text format.
    pub fn render(&self, o: &mut String) {
        let series: [(&str, &str, &str, String); 6] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds.to_string(),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                self.resident_bytes.to_string(),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                self.virtual_bytes.to_string(),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds.to_string(),
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                self.open_fds.to_string(),
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                self.max_fds.map_or("+Inf".to_string(), |n| n.to_string()),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

/// The stats from the text of `/proc/self/stat`, `/proc/stat` and
/// `/proc/self/limits` (`open_fds` left 0).
fn parse(stat: &str, boot: &str, limits: &str, ticks: f64, page: u64) -> Option<ProcessStats> {
    // The command name (field 2) is in parentheses and may hold anything:
    // the fields are counted from the last ')'; field 3 is index 0.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let (utime, stime) = (field(14)?, field(15)?);
    let start_ticks = field(22)?;
    let btime: u64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()
        .map(|soft| soft.parse().ok())?;
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_bytes: field(24)?.saturating_mul(page),
        virtual_bytes: field(23)?,
        start_time_seconds: btime as f64 + start_ticks as f64 / ticks,
        open_fds: 0,
        max_fds,
    })
}

/// Clock ticks per second (the unit of CPU times in `/proc`).
fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (n > 0).then_some(n as f64)
}

/// Bytes per memory page (the unit of `rss` in `/proc/self/stat`).
fn page_size() -> Option<u64> {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command name with spaces and parentheses does not shift the
    /// fields; an unlimited soft limit is `None`.
    #[test]
    fn parses_proc_texts() {
        let stat = "4242 (vkv (io) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 50 0 0 20 0 9 0 12345 104857600 2560 18446744073709551615";
        let boot = "cpu  1 2 3\nbtime 1780000000\nprocesses 9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        let s = parse(stat, boot, limits, 100.0, 4096).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_time_seconds, 1_780_000_123.45);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.resident_bytes, 2560 * 4096);
        assert_eq!(s.max_fds, Some(20_000));
        let unlimited = limits.replace("20000                20000", "unlimited unlimited");
        assert_eq!(
            parse(stat, boot, &unlimited, 100.0, 4096).unwrap().max_fds,
            None
        );
        assert_eq!(parse("garbage", boot, limits, 100.0, 4096), None);
    }
}
