//! Reading pcap files written by `tcpdump -U -w`: exact ground truth for counts and timing.

/// Number of records in a classic pcap file (either byte order, µs or ns timestamps).
pub fn count_records(bytes: &[u8]) -> anyhow::Result<u64> {
    Ok(timestamps_ns(bytes)?.len() as u64)
}

/// Each whole record's timestamp in nanoseconds since the epoch, in file order.
pub fn timestamps_ns(bytes: &[u8]) -> anyhow::Result<Vec<u64>> {
    Ok(records(bytes)?.into_iter().map(|(ts, _)| ts).collect())
}

/// Each whole record: (timestamp in nanoseconds since the epoch, captured bytes), in file order.
pub fn records(bytes: &[u8]) -> anyhow::Result<Vec<(u64, Vec<u8>)>> {
    anyhow::ensure!(
        bytes.len() >= 24,
        "pcap file too short ({} bytes)",
        bytes.len()
    );
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let (le, nanos) = match magic {
        0xa1b2c3d4 => (true, false),
        0xa1b23c4d => (true, true),
        0xd4c3b2a1 => (false, false),
        0x4d3cb2a1 => (false, true),
        m => anyhow::bail!("not a pcap file (magic {m:#x})"),
    };
    let word = |at: usize| {
        let f: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(f)
        } else {
            u32::from_be_bytes(f)
        }
    };
    let mut off = 24usize;
    let mut out = Vec::new();
    while off + 16 <= bytes.len() {
        let incl = word(off + 8) as usize;
        if off + 16 + incl > bytes.len() {
            break; // a record cut short by the writer being stopped
        }
        let frac = word(off + 4) as u64;
        let ts = word(off) as u64 * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        out.push((ts, bytes[off + 16..off + 16 + incl].to_vec()));
        off += 16 + incl;
    }
    Ok(out)
}

/// The most timestamps inside any one-second interval, sliding continuously: an independent
/// ground truth for the agent's peak (which slides in 10 ms steps, so it may be lower by at most
/// the packets of one step).
pub fn busiest_second(ts: &[u64]) -> u64 {
    let mut ts = ts.to_vec();
    ts.sort_unstable();
    let (mut best, mut lo) = (0usize, 0usize);
    for hi in 0..ts.len() {
        while ts[hi] - ts[lo] >= 1_000_000_000 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_whole_records_only() {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1];
        f.extend_from_slice(&[0; 20]);
        for (sec, len) in [(5u32, 10u32), (6, 0), (7, 3)] {
            f.extend_from_slice(&sec.to_le_bytes());
            f.extend_from_slice(&250u32.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend(std::iter::repeat_n(0u8, len as usize));
        }
        assert_eq!(count_records(&f).unwrap(), 3);
        assert_eq!(timestamps_ns(&f).unwrap()[1], 6_000_250_000);
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&100u32.to_le_bytes());
        assert_eq!(count_records(&f).unwrap(), 3);
        assert!(count_records(&[0; 24]).is_err());
    }

    #[test]
    fn busiest_second_slides_continuously() {
        const S: u64 = 1_000_000_000;
        let ts = [0, S / 2, S - 1, S, S + S / 2, 3 * S];
        assert_eq!(busiest_second(&ts), 3);
        assert_eq!(busiest_second(&[]), 0);
    }
}
