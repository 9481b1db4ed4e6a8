//! The instance catalog: vCPUs, memory, the most ENIs and the on-demand price per hour of EC2
//! instance types, per region. Shipped as data (`collector/data/instance-catalog.csv`, its
//! header cites the public sources and their dates); a user file (`instance_catalog_file`, the
//! same format) adds rows and replaces rows of the same instance type and region. A node's cost
//! per month is its price × 730 hours.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

/// Hours in a month, as AWS' pricing pages count them.
pub const HOURS_PER_MONTH: f64 = 730.0;

const BUILTIN: &str = include_str!("../data/instance-catalog.csv");
const HEADER: &str = "instance_type,vcpu,memory_mib,max_enis,region,usd_per_hour";
const EXAMPLE: &str = "m5.large,2,8192,3,us-east-1,0.096";

/// What a node costs while it stays, or why that is not known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// US dollars per month (730 h) on demand; null when the catalog cannot say.
    pub usd_per_month: Option<f64>,
    /// How it was reckoned, or why it is null.
    pub basis: String,
}

/// One instance type's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceType {
    pub vcpu: u32,
    pub memory_mib: u64,
    pub max_enis: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read instance_catalog_file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("instance_catalog_file {} line {line}: {why} in '{row}'; rows are {HEADER}, e.g. {EXAMPLE}", path.display())]
    Row {
        path: PathBuf,
        line: usize,
        row: String,
        why: String,
    },
}

/// The catalog: sizes by instance type, prices by (instance type, region).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub types: HashMap<String, InstanceType>,
    pub prices: HashMap<(String, String), f64>,
    /// Rows that came from the user's file.
    pub user_rows: usize,
}

/// One parsed row.
type Row = (String, InstanceType, Option<(String, f64)>);

fn name_ok(s: &str, dot: bool) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && (!dot || s.split('.').count() == 2 && !s.starts_with('.') && !s.ends_with('.'))
}

fn parse_row(line: &str) -> Result<Row, String> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    if f.len() != 6 {
        return Err(format!("{} fields where 6 belong", f.len()));
    }
    if !name_ok(f[0], true) {
        return Err(format!("instance type '{}' is not like m5.large", f[0]));
    }
    let num = |i: usize, what: &str| -> Result<u64, String> {
        f[i].parse::<u64>()
            .ok()
            .filter(|v| (1..=1 << 40).contains(v))
            .ok_or_else(|| format!("{what} '{}' is not a positive whole number", f[i]))
    };
    let t = InstanceType {
        vcpu: num(1, "vcpu")? as u32,
        memory_mib: num(2, "memory_mib")?,
        max_enis: num(3, "max_enis")? as u32,
    };
    let price = match (f[4], f[5]) {
        ("", "") => None,
        (region, price) => {
            if !name_ok(region, false) {
                return Err(format!("region '{region}' is not like us-east-1"));
            }
            let p: f64 = price
                .parse()
                .ok()
                .filter(|p: &f64| p.is_finite() && *p >= 0.0 && *p < 1e6)
                .ok_or_else(|| format!("usd_per_hour '{price}' is not a price such as 0.096"))?;
            Some((region.to_string(), p))
        }
    };
    Ok((f[0].to_string(), t, price))
}

/// Every row of a catalog text: `#` comments, blank lines and the header line skipped. The
/// error is (line number, the row, why).
fn parse(text: &str) -> Result<Vec<Row>, (usize, String, String)> {
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l == HEADER {
            continue;
        }
        let row = parse_row(l).map_err(|why| (i + 1, l.to_string(), why))?;
        let key = (row.0.clone(), row.2.as_ref().map(|p| p.0.clone()));
        if !seen.insert(key) {
            return Err((
                i + 1,
                l.to_string(),
                "a second row for this instance type and region".into(),
            ));
        }
        rows.push(row);
    }
    Ok(rows)
}

impl Catalog {
    fn add(&mut self, rows: Vec<Row>) {
        for (name, t, price) in rows {
            self.types.insert(name.clone(), t);
            if let Some((region, p)) = price {
                self.prices.insert((name, region), p);
            }
        }
    }

    /// The catalog shipped with the collector.
    pub fn builtin() -> Arc<Catalog> {
        static B: LazyLock<Arc<Catalog>> = LazyLock::new(|| {
            let mut c = Catalog::default();
            c.add(parse(BUILTIN).expect("the shipped instance catalog parses"));
            Arc::new(c)
        });
        B.clone()
    }

    /// The shipped catalog with the rows of `user` over it; a bad row is an error naming it.
    pub fn load(user: Option<&Path>) -> Result<Arc<Catalog>, CatalogError> {
        let Some(path) = user else {
            return Ok(Catalog::builtin());
        };
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.to_owned(),
            source,
        })?;
        let rows = parse(&text).map_err(|(line, row, why)| CatalogError::Row {
            path: path.to_owned(),
            line,
            row: row.chars().take(120).collect(),
            why,
        })?;
        let mut c = (*Catalog::builtin()).clone();
        c.user_rows = rows.len();
        c.add(rows);
        Ok(Arc::new(c))
    }

    /// What a node of `instance_type` in `region` costs per month on demand. `spot`: the
    /// node runs on spot capacity (the on-demand figure is then an upper bound).
    pub fn monthly(&self, instance_type: Option<&str>, region: Option<&str>, spot: bool) -> Cost {
        let unknown = |basis: String| Cost {
            usd_per_month: None,
            basis,
        };
        let Some(t) = instance_type else {
            return unknown("the node has no node.kubernetes.io/instance-type label".into());
        };
        if !self.types.contains_key(t) {
            return unknown(format!(
                "instance type {t} is not in the instance catalog; add a row for it to instance_catalog_file"
            ));
        }
        let Some(r) = region else {
            return unknown(format!(
                "the node has no topology.kubernetes.io/region label, so the price of {t} is not known"
            ));
        };
        let Some(p) = self.prices.get(&(t.to_string(), r.to_string())) else {
            return unknown(format!(
                "no on-demand price for {t} in {r} in the instance catalog; add a row for it to instance_catalog_file"
            ));
        };
        let month = (p * HOURS_PER_MONTH * 100.0).round() / 100.0;
        Cost {
            usd_per_month: Some(month),
            basis: format!(
                "{t} on demand in {r}: ${p}/h × {HOURS_PER_MONTH} h{}",
                if spot {
                    " (the node is spot capacity: it costs less than this)"
                } else {
                    ""
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_has_the_common_families_with_sources() {
        let c = Catalog::builtin();
        assert!(BUILTIN.contains("# ") && BUILTIN.contains("generated 2026-"));
        for t in [
            "m5.large",
            "m6i.xlarge",
            "m7i.2xlarge",
            "c5.9xlarge",
            "c6i.4xlarge",
            "r5.large",
            "t3.medium",
            "m5.4xlarge",
        ] {
            assert!(
                c.prices.contains_key(&(t.into(), "us-east-1".into())),
                "{t}"
            );
        }
        assert_eq!(
            c.types["m5.4xlarge"],
            InstanceType {
                vcpu: 16,
                memory_mib: 65536,
                max_enis: 8
            }
        );
        assert_eq!(
            c.types["c5.9xlarge"],
            InstanceType {
                vcpu: 36,
                memory_mib: 73728,
                max_enis: 8
            }
        );
        let m = c.monthly(Some("m5.4xlarge"), Some("us-east-1"), false);
        assert_eq!(m.usd_per_month, Some(560.64), "0.768 × 730");
        let u = c.monthly(Some("x9.huge"), Some("us-east-1"), false);
        assert_eq!(u.usd_per_month, None);
        assert!(
            u.basis.contains("x9.huge is not in the instance catalog"),
            "{}",
            u.basis
        );
        assert!(c
            .monthly(Some("m5.large"), Some("eu-west-9"), false)
            .basis
            .contains("no on-demand price"));
    }

    #[test]
    fn a_user_file_adds_and_replaces_and_a_bad_row_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.csv");
        std::fs::write(&f, "# ours\ninstance_type,vcpu,memory_mib,max_enis,region,usd_per_hour\nm5.large,2,8192,3,eu-west-1,0.107\nx9.huge,96,786432,15,us-east-1,9.5\nm5.4xlarge,16,65536,8,us-east-1,0.5\n").unwrap();
        let c = Catalog::load(Some(&f)).unwrap();
        assert_eq!(c.user_rows, 3);
        assert_eq!(c.prices[&("m5.large".into(), "eu-west-1".into())], 0.107);
        assert_eq!(
            c.monthly(Some("x9.huge"), Some("us-east-1"), false)
                .usd_per_month,
            Some(6935.0)
        );
        assert_eq!(
            c.monthly(Some("m5.4xlarge"), Some("us-east-1"), false)
                .usd_per_month,
            Some(365.0)
        );
        for (bad, why) in [
            ("m5.large,2,8192,3,us-east-1", "5 fields"),
            ("m5.large,two,8192,3,us-east-1,0.1", "vcpu 'two'"),
            (
                "M5 large,2,8192,3,us-east-1,0.1",
                "instance type 'M5 large'",
            ),
            ("m5.large,2,8192,3,us-east-1,-1", "usd_per_hour '-1'"),
            ("m5.large,2,8192,3,US East,0.1", "region 'US East'"),
        ] {
            std::fs::write(&f, format!("# x\n{bad}\n")).unwrap();
            let e = Catalog::load(Some(&f)).unwrap_err().to_string();
            assert!(
                e.contains("line 2") && e.contains(why) && e.contains(bad) && !e.contains('\n'),
                "{e}"
            );
        }
        std::fs::write(
            &f,
            "m5.large,2,8192,3,us-east-1,0.1\nm5.large,2,8192,3,us-east-1,0.2\n",
        )
        .unwrap();
        assert!(Catalog::load(Some(&f))
            .unwrap_err()
            .to_string()
            .contains("line 2: a second row"));
        assert!(Catalog::load(Some(&dir.path().join("none")))
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }
}
