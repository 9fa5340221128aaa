//! `/stats` as the tests read it: the accounting figures and the identity
//! free + reserved + used = capacity, found in the JSON text without a JSON library.

#[derive(Debug, Clone)]
pub struct Stats {
    pub capacity: u64,
    pub free: u64,
    pub reserved: u64,
    pub used: u64,
    pub blocks: u64,
    pub data_bytes: u64,
    pub raw: String,
}

/// The first number after `"key":` in a JSON text (the required keys come first, at the top
/// level).
pub fn json_u64(json: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat)? + pat.len();
    let digits: String = json[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// The string after `"key":` in a JSON text.
pub fn json_str(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat)? + pat.len();
    let rest = json[at..].trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

impl Stats {
    pub fn parse(raw: String) -> Stats {
        let get = |k: &str| json_u64(&raw, k).unwrap_or_else(|| panic!("/stats lacks {k}: {raw}"));
        Stats {
            capacity: get("capacity_bytes"),
            free: get("free_bytes"),
            reserved: get("reserved_bytes"),
            used: get("used_bytes"),
            blocks: get("blocks"),
            data_bytes: get("data_bytes"),
            raw,
        }
    }

    #[track_caller]
    pub fn assert_identity(&self) {
        assert_eq!(
            self.free + self.reserved + self.used,
            self.capacity,
            "free + reserved + used != capacity: {self:?}"
        );
    }
}
