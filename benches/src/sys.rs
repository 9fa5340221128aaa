//! CPU and memory figures from the kernel: the client's own (getrusage), the server's
//! (/proc/PID/stat, /proc/PID/status) and the whole machine's (/proc/stat, /proc/loadavg).

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (user, system) CPU seconds of this process, all threads.
pub fn rusage_self() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// CPU time and RSS of a set of processes (a server's), summed.
#[derive(Clone, Debug)]
pub struct ServerSample {
    pub cpu_secs: f64,
    pub rss_kib: u64,
}

impl ServerSample {
    /// `None` when `pids` is empty or any of them cannot be read.
    pub fn take(pids: &[u32]) -> Option<ServerSample> {
        if pids.is_empty() {
            return None;
        }
        let ticks = clock_ticks();
        let mut cpu = 0.0;
        let mut rss = 0;
        for pid in pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name (which may hold spaces) start at field 3 (state).
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            cpu += (utime + stime) / ticks;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            rss += status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        Some(ServerSample {
            cpu_secs: cpu,
            rss_kib: rss,
        })
    }
}

/// Busy CPU seconds of the whole machine since boot (everything but idle and iowait).
pub fn machine_busy_ticks() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    if v.len() < 8 {
        return None;
    }
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Some(busy / clock_ticks())
}

/// The 1-minute load average.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_figures() {
        let me = std::process::id();
        let s = ServerSample::take(&[me]).expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(machine_busy_ticks().is_some());
        assert!(loadavg().is_some());
        let (u, _) = rusage_self();
        assert!(u >= 0.0);
        assert!(ServerSample::take(&[]).is_none());
    }
}
