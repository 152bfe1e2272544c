//! Resident memory (VmRSS of /proc/PID/status), for the module's footprint
//! in a client and the server's memory per idle session.

/// VmRSS of `pid` ("self" for this process) in KiB, if readable.
pub fn vm_rss_kib(pid: &str) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_rss_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(super::vm_rss_kib("self").is_some_and(|kib| kib > 0));
        }
    }
}
