//! What the machine can give a run: the memory the kernel reports available, read before an
//! activation arena is allocated, so a model too big at its input size (a huge
//! `define_symbols` value) is a diagnostic saying how much it needs, not an abort in the
//! allocator or the OOM killer.

/// Bytes the operating system reports available for new allocations (`MemAvailable` of
/// `/proc/meminfo`); `None` where that is not known (not Linux), and nothing is checked then.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `bytes` for people: `3.2 GB`, `512 MB`.
pub fn human(bytes: u64) -> String {
    let gb = bytes as f64 / 1e9;
    if gb >= 1.0 { format!("{gb:.1} GB") } else { format!("{:.0} MB", bytes as f64 / 1e6) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(20_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(human(3_200_000_000), "3.2 GB");
        assert_eq!(human(512_000_000), "512 MB");
    }
}
