//! Parsing of the load generator's workload flags: target, URL, operation mix, block sizes,
//! durations.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::Rng;

/// Which URL shapes requests use.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Target {
    /// buddy-blocks: `PUT /block`, `GET|HEAD|DELETE /block/<hash>`.
    Buddy,
    /// A WebDAV file server: `PUT|GET|HEAD|DELETE <prefix>/<hash>`, name chosen by the client.
    Webdav,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Buddy => "buddy",
            Target::Webdav => "webdav",
        }
    }
}

/// `http://HOST:PORT[/PREFIX]`, resolved once.
#[derive(Clone, Debug)]
pub struct Url {
    pub addr: SocketAddr,
    /// The `Host` header value (`HOST:PORT` as written).
    pub host_header: String,
    /// Path prefix without a trailing slash (`""` for the root).
    pub prefix: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url {text:?}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("--url {text:?}: no host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("--url {text:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url {text:?}: host did not resolve"))?;
        Ok(Url {
            addr,
            host_header: authority.to_string(),
            prefix: path.trim_end_matches('/').to_string(),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Put = 0,
    Get = 1,
    Head = 2,
    Delete = 3,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Put, Op::Get, Op::Head, Op::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Head => "head",
            Op::Delete => "delete",
        }
    }

    fn from_name(s: &str) -> Option<Op> {
        Op::ALL
            .into_iter()
            .find(|op| op.name().eq_ignore_ascii_case(s))
    }
}

/// Weighted choice of operations.
#[derive(Clone, Debug)]
pub struct Mix {
    entries: Vec<(Op, u64)>,
    total: u64,
}

impl Mix {
    /// `put`, `get`, ... or `get=90,put=10`.
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut entries: Vec<(Op, u64)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((n, w)) => (
                    n.trim(),
                    w.trim()
                        .parse::<u64>()
                        .map_err(|_| format!("--mix {text:?}: bad weight in {part:?}"))?,
                ),
                None => (part, 1),
            };
            let op = Op::from_name(name).ok_or_else(|| {
                format!("--mix {text:?}: unknown operation {name:?} (put, get, head, delete)")
            })?;
            if entries.iter().any(|(o, _)| *o == op) {
                return Err(format!("--mix {text:?}: {name} given twice"));
            }
            if weight > 0 {
                entries.push((op, weight));
            }
        }
        let total = entries.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err(format!(
                "--mix {text:?}: no operation with a positive weight"
            ));
        }
        Ok(Mix { entries, total })
    }

    pub fn pick(&self, rng: &mut Rng) -> Op {
        if self.entries.len() == 1 {
            return self.entries[0].0;
        }
        let mut x = rng.below(self.total);
        for &(op, w) in &self.entries {
            if x < w {
                return op;
            }
            x -= w;
        }
        unreachable!("weights add up to total")
    }

    pub fn has(&self, op: Op) -> bool {
        self.entries.iter().any(|(o, _)| *o == op)
    }

    /// `put` for a single operation, else `get=90,put=10`.
    pub fn describe(&self) -> String {
        if self.entries.len() == 1 {
            return self.entries[0].0.name().to_string();
        }
        self.entries
            .iter()
            .map(|(op, w)| format!("{}={w}", op.name()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Largest block buddy-blocks stores.
pub const BLOCK_MAX: usize = 512 * 1024;

/// Weighted choice of block lengths.
#[derive(Clone, Debug)]
pub struct SizeDist {
    entries: Vec<(usize, u64)>,
    total: u64,
    mixed_alias: bool,
}

/// `4k`, `64K`, `512KiB`, `1000`, `1m` -> bytes (binary multiples).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let (digits, mult) = if let Some(d) = lower
        .strip_suffix("kib")
        .or_else(|| lower.strip_suffix('k'))
    {
        (d, 1024)
    } else if let Some(d) = lower
        .strip_suffix("mib")
        .or_else(|| lower.strip_suffix('m'))
    {
        (d, 1024 * 1024)
    } else {
        (lower.strip_suffix('b').unwrap_or(&lower), 1)
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("bad size {text:?}"))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} too large"))?;
    if bytes == 0 || bytes > BLOCK_MAX {
        return Err(format!("size {text:?}: must be 1..=512k"));
    }
    Ok(bytes)
}

/// `4096` -> `4k`; other lengths stay in bytes.
pub fn format_size(bytes: usize) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}k", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

impl SizeDist {
    pub const MIXED: &'static str = "4k=70,64k=20,512k=10";

    pub fn parse(text: &str) -> Result<SizeDist, String> {
        let mixed_alias = text.trim().eq_ignore_ascii_case("mixed");
        let spec = if mixed_alias { Self::MIXED } else { text };
        let mut entries: Vec<(usize, u64)> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (size, weight) = match part.split_once('=') {
                Some((s, w)) => (
                    parse_size(s)?,
                    w.trim()
                        .parse::<u64>()
                        .map_err(|_| format!("--size {text:?}: bad weight in {part:?}"))?,
                ),
                None => (parse_size(part)?, 1),
            };
            if weight > 0 {
                match entries.iter_mut().find(|(s, _)| *s == size) {
                    Some(e) => e.1 += weight,
                    None => entries.push((size, weight)),
                }
            }
        }
        let total = entries.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err(format!("--size {text:?}: no size with a positive weight"));
        }
        Ok(SizeDist {
            entries,
            total,
            mixed_alias,
        })
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        if self.entries.len() == 1 {
            return self.entries[0].0;
        }
        let mut x = rng.below(self.total);
        for &(len, w) in &self.entries {
            if x < w {
                return len;
            }
            x -= w;
        }
        unreachable!("weights add up to total")
    }

    /// Every length that can be picked.
    pub fn lens(&self) -> Vec<usize> {
        self.entries.iter().map(|(s, _)| *s).collect()
    }

    /// `4k` for one size, `mixed` for the default distribution, else `4k=50,512k=50`.
    pub fn describe(&self) -> String {
        if self.mixed_alias {
            return "mixed".to_string();
        }
        if self.entries.len() == 1 {
            return format_size(self.entries[0].0);
        }
        self.entries
            .iter()
            .map(|(s, w)| format!("{}={w}", format_size(*s)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `5s`, `500ms`, `1m`, `2.5` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {text:?} (e.g. 5s, 500ms, 1m)"))?;
    if !(0.0..=86_400.0).contains(&v) || !v.is_finite() {
        return Err(format!("duration {text:?} out of range"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("512KiB").unwrap(), 524_288);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("513k").is_err());
        assert!(parse_size("0").is_err());
        let d = SizeDist::parse("mixed").unwrap();
        assert_eq!(d.lens(), vec![4096, 65536, 524_288]);
        assert_eq!(d.describe(), "mixed");
        assert_eq!(SizeDist::parse("64k").unwrap().describe(), "64k");
        let mut rng = Rng::new(1);
        let mut big = 0;
        for _ in 0..10_000 {
            if d.pick(&mut rng) == 524_288 {
                big += 1;
            }
        }
        assert!((800..1200).contains(&big), "{big}");
    }

    #[test]
    fn mixes() {
        let m = Mix::parse("get=90,put=10").unwrap();
        assert!(m.has(Op::Get) && m.has(Op::Put) && !m.has(Op::Delete));
        assert_eq!(m.describe(), "get=90,put=10");
        assert_eq!(Mix::parse("PUT").unwrap().describe(), "put");
        assert!(Mix::parse("post").is_err());
        assert!(Mix::parse("get=0").is_err());
        assert!(Mix::parse("get,get").is_err());
    }

    #[test]
    fn durations_and_urls() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("x").is_err());
        let u = Url::parse("http://127.0.0.1:8080/dav/").unwrap();
        assert_eq!(u.addr.port(), 8080);
        assert_eq!(u.prefix, "/dav");
        assert_eq!(u.host_header, "127.0.0.1:8080");
        assert!(Url::parse("https://x").is_err());
    }
}
