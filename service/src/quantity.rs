//! Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `128974848`, `129e6`) as integers: CPU in
//! millicores, everything else in units (bytes). The grammar is apimachinery's
//! `resource.Quantity`: a signed decimal, then a binary-SI suffix (Ki … Ei), a decimal-SI
//! suffix (n u m "" k M G T P E) or a decimal exponent (e3, E-2). The crates that do this
//! (k8s_quantity_parser, kube_quantity) pin k8s-openapi versions years older than ours.

/// Millicores of a CPU quantity; None when it does not parse (or is negative or absurd).
pub fn millicores(q: &str) -> Option<u64> {
    scaled(q, 1000.0)
}

/// Units (bytes for memory) of a quantity, rounded up as apimachinery's `Value()` does.
pub fn units(q: &str) -> Option<u64> {
    scaled(q, 1.0)
}

fn scaled(q: &str, factor: f64) -> Option<u64> {
    let v = parse(q)? * factor;
    // Above 2^62 a figure is not a node's resources but garbage.
    (v.is_finite() && (0.0..4.6e18).contains(&v)).then(|| v.ceil() as u64)
}

/// The quantity as a number of base units.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    if q.is_empty() || q.len() > 64 {
        return None;
    }
    let end = q
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))))
        .map(|(i, _)| i)
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(end);
    if !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
        return None;
    }
    let n: f64 = number.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().ok().filter(|e: &i32| e.abs() <= 30)?;
            10f64.powi(exp)
        }
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpu_and_memory_forms() {
        for (q, m) in [
            ("500m", 500),
            ("2", 2000),
            ("0.1", 100),
            ("1.5", 1500),
            ("250000u", 250),
            ("100n", 1),
        ] {
            assert_eq!(millicores(q), Some(m), "{q}");
        }
        for (q, b) in [
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("129M", 129_000_000),
            ("123Mi", 128_974_848),
            ("1Gi", 1 << 30),
            ("1.5Gi", 3 << 29),
            ("64Ki", 65536),
        ] {
            assert_eq!(units(q), Some(b), "{q}");
        }
        for bad in ["", "abc", "1Zi", "1.2.3", "-1", "m", "1e999", "1e", "--1"] {
            assert_eq!(units(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = millicores(&s);
            let _ = units(&s);
        }
    }
}
