//! A child's peak resident memory, as the benchmark reports it: [`peak_resident_kib`].

/// The peak resident set size of process `pid` (VmHWM in `/proc/{pid}/status`), in KiB;
/// `None` if it cannot be read (the process is gone, or this is not Linux).
pub fn peak_resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_and_a_process_that_is_not_there_has_none() {
        let kib = peak_resident_kib(std::process::id());
        assert!(kib.is_some_and(|k| k > 0), "{kib:?}");
        assert_eq!(peak_resident_kib(u32::MAX), None);
    }
}
