//! Counting packets in a pcap file written by `tcpdump -U -w`: exact ground truth.

/// Number of records in a classic pcap file (either byte order, µs or ns timestamps).
pub fn count_records(bytes: &[u8]) -> anyhow::Result<u64> {
    anyhow::ensure!(
        bytes.len() >= 24,
        "pcap file too short ({} bytes)",
        bytes.len()
    );
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let le = match magic {
        0xa1b2c3d4 | 0xa1b23c4d => true,
        0xd4c3b2a1 | 0x4d3cb2a1 => false,
        m => anyhow::bail!("not a pcap file (magic {m:#x})"),
    };
    let mut off = 24usize;
    let mut n = 0u64;
    while off + 16 <= bytes.len() {
        let f: [u8; 4] = bytes[off + 8..off + 12].try_into().unwrap();
        let incl = if le {
            u32::from_le_bytes(f)
        } else {
            u32::from_be_bytes(f)
        } as usize;
        if off + 16 + incl > bytes.len() {
            break; // a record cut short by the writer being stopped
        }
        off += 16 + incl;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_whole_records_only() {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1];
        f.extend_from_slice(&[0; 20]);
        for len in [10u32, 0, 3] {
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend(std::iter::repeat_n(0u8, len as usize));
        }
        assert_eq!(count_records(&f).unwrap(), 3);
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&100u32.to_le_bytes());
        assert_eq!(count_records(&f).unwrap(), 3);
        assert!(count_records(&[0; 24]).is_err());
    }
}
