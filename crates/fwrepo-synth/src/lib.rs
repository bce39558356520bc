//! Seeded, dependency-free generator of firmware-like data and of a synthetic series of
//! Service Pack for ProLiant releases, for tests, benchmarks and `cargo xtask testdata`.
//!
//! Files look like firmware to a chunker: high-entropy (compressed) payload sections, repeated
//! tables, and 0xFF padding. Between releases a component is left unchanged, patched in a few
//! bytes, given inserted or removed regions, shifted, or has a payload recompressed, the changes
//! a delta-transfer system must cope with. The same seed always yields the same bytes.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// SplitMix64: tiny, fast, and good enough to make incompressible bytes.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

/// `len` incompressible bytes, the same for the same seed: [`Rng::bytes`] of [`Rng::new`]`(seed)`.
/// Tests use it for blobs whose structure does not matter.
pub fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// A firmware-like image of exactly `len` bytes.
pub fn firmware_image(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64 * 1024);
    out.extend_from_slice(b"FWIMG\x01\x00\x00");
    while out.len() < len {
        match rng.range(0, 10) {
            // Compressed payload: most of a real image.
            0..=5 => {
                let n = rng.range(32 * 1024, 512 * 1024);
                let start = out.len();
                out.resize(start + n, 0);
                rng.fill(&mut out[start..]);
            }
            // Tables: fixed-size records with counters.
            6..=7 => {
                let record = rng.range(16, 64);
                let template = rng.bytes(record);
                for i in 0..rng.range(100, 2000) {
                    out.extend_from_slice(&template);
                    out.extend_from_slice(&(i as u32).to_le_bytes());
                }
            }
            // Erased-flash padding.
            _ => {
                let n = rng.range(4 * 1024, 128 * 1024);
                out.resize(out.len() + n, 0xFF);
            }
        }
    }
    out.truncate(len);
    out
}

/// How a component changes from one release to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    /// A few bytes patched in place (version strings, checksums).
    SmallPatch,
    /// A region inserted somewhere in the middle.
    Insert,
    /// A region removed from the middle.
    Remove,
    /// Everything after the header moved by a few bytes.
    Shift,
    /// One payload section replaced by different high-entropy bytes of similar size.
    Recompress,
}

/// Applies `change` to `data`.
pub fn mutate(rng: &mut Rng, data: &[u8], change: Change) -> Vec<u8> {
    let mut v = data.to_vec();
    if v.len() < 4096 {
        return v;
    }
    match change {
        Change::Unchanged => {}
        Change::SmallPatch => {
            for _ in 0..rng.range(1, 6) {
                let at = rng.range(0, v.len() - 16);
                rng.fill(&mut v[at..at + 8]);
            }
        }
        Change::Insert => {
            let at = rng.range(v.len() / 4, 3 * v.len() / 4);
            let n = rng.range(1024, 96 * 1024);
            let ins = rng.bytes(n);
            v.splice(at..at, ins);
        }
        Change::Remove => {
            let at = rng.range(v.len() / 4, v.len() / 2);
            let n = rng.range(1024, (v.len() / 8).max(1025));
            v.drain(at..(at + n).min(v.len()));
        }
        Change::Shift => {
            let n = rng.range(1, 512);
            let ins = rng.bytes(n);
            v.splice(8..8, ins);
        }
        Change::Recompress => {
            let n = rng.range(64 * 1024, (v.len() / 3).max(64 * 1024 + 1)).min(v.len() - 8);
            let at = rng.range(8, v.len() - n);
            rng.fill(&mut v[at..at + n]);
        }
    }
    v
}

/// The shape of a synthetic series.
#[derive(Clone, Debug)]
pub struct SeriesParams {
    pub seed: u64,
    pub releases: usize,
    pub models: usize,
    pub components: usize,
    pub min_size: usize,
    pub max_size: usize,
}

impl SeriesParams {
    /// A few releases of small files: quick for tests.
    pub fn small() -> SeriesParams {
        SeriesParams { seed: 1, releases: 3, models: 12, components: 10, min_size: 64 * 1024, max_size: 768 * 1024 }
    }

    /// The default series `cargo xtask testdata` writes (about 70 MiB per release).
    pub fn standard() -> SeriesParams {
        SeriesParams { seed: 2014, releases: 4, models: 36, components: 40, min_size: 256 * 1024, max_size: 4 << 20 }
    }
}

/// One component package of a release.
#[derive(Clone, Debug)]
pub struct Component {
    /// File name inside the release's `firmware/` folder.
    pub file: String,
    pub name: String,
    /// `firmware`, `driver` or `software`.
    pub kind: &'static str,
    pub version: String,
    pub models: Vec<String>,
    pub data: Vec<u8>,
    /// What changed since the previous release (`Unchanged` in the first one).
    pub change: Change,
}

/// One SPP release.
#[derive(Clone, Debug)]
pub struct Release {
    pub id: String,
    pub name: String,
    pub date: String,
    pub components: Vec<Component>,
}

/// Yields the releases of a series one after the other, holding only the previous one.
pub struct Series {
    params: SeriesParams,
    rng: Rng,
    models: Vec<String>,
    prev: Option<Release>,
    made: usize,
}

const FAMILIES: &[(&str, &str)] = &[
    ("DL360", "1U rack"),
    ("DL380", "2U rack"),
    ("DL385", "2U rack"),
    ("DL560", "2U rack"),
    ("ML350", "tower"),
    ("ML110", "tower"),
    ("BL460c", "blade"),
    ("XL170r", "dense"),
    ("DL20", "1U rack"),
    ("DL325", "1U rack"),
    ("DL345", "2U rack"),
    ("DL580", "4U rack"),
];
const GENERATIONS: &[&str] = &["Gen9", "Gen10", "Gen10 Plus", "Gen11"];
const PARTS: &[(&str, &str)] = &[
    ("System ROM", "firmware"),
    ("iLO Firmware", "firmware"),
    ("Smart Array Controller Firmware", "firmware"),
    ("Ethernet Adapter Firmware", "firmware"),
    ("Power Management Controller Firmware", "firmware"),
    ("SAS Drive Firmware", "firmware"),
    ("NVMe Drive Firmware", "firmware"),
    ("Fibre Channel HBA Firmware", "firmware"),
    ("Ethernet Driver", "driver"),
    ("Storage Controller Driver", "driver"),
    ("Agentless Management Service", "software"),
    ("Smart Storage Administrator", "software"),
];

impl Series {
    pub fn new(params: SeriesParams) -> Series {
        let mut models = Vec::new();
        'outer: for gen_ in GENERATIONS {
            for (family, _) in FAMILIES {
                if models.len() == params.models {
                    break 'outer;
                }
                models.push(format!("ProLiant {family} {gen_}"));
            }
        }
        Series { rng: Rng::new(params.seed), params, models, prev: None, made: 0 }
    }

    pub fn models(&self) -> &[String] {
        &self.models
    }

    fn release_id(n: usize) -> (String, String) {
        let year = 2014 + n / 2;
        let month = if n.is_multiple_of(2) { 3 } else { 9 };
        (format!("{year}.{month:02}.0"), format!("{year}-{month:02}-{:02}", 10 + n % 17))
    }

    fn first_component(&mut self, i: usize) -> Component {
        let (part, kind) = PARTS[i % PARTS.len()];
        let serial = i / PARTS.len();
        let name = if serial == 0 { part.to_owned() } else { format!("{part} ({})", serial + 1) };
        let len = self.rng.range(self.params.min_size, self.params.max_size + 1);
        let data = firmware_image(&mut self.rng, len);
        let n_models = self.rng.range(1, self.models.len().min(8) + 1);
        let first = self.rng.range(0, self.models.len());
        let mut models: Vec<String> =
            (0..n_models).map(|k| self.models[(first + k * 3) % self.models.len()].clone()).collect();
        models.sort();
        models.dedup();
        Component {
            file: format!("cp{:06}.scexe", 20000 + i * 7),
            name,
            kind,
            version: format!("{}.{}", 1 + i % 3, 10 + self.rng.range(0, 30)),
            models,
            data,
            change: Change::Unchanged,
        }
    }

    fn next_component(&mut self, prev: &Component, release: usize) -> Component {
        const CHANGES: &[Change] = &[
            Change::Unchanged,
            Change::Unchanged,
            Change::SmallPatch,
            Change::Insert,
            Change::Remove,
            Change::Shift,
            Change::Recompress,
        ];
        let change = CHANGES[self.rng.range(0, CHANGES.len())];
        let data = mutate(&mut self.rng, &prev.data, change);
        let (version, file) = if change == Change::Unchanged {
            (prev.version.clone(), prev.file.clone())
        } else {
            let (major, minor) = prev.version.split_once('.').unwrap_or(("1", "0"));
            let minor: u64 = minor.parse().unwrap_or(0);
            // Minor numbers cross digit counts (1.9 → 1.10) so version ordering is exercised.
            let bumped = format!("{major}.{}", minor + 1 + self.rng.range(0, 7) as u64);
            (
                bumped,
                format!("{}-r{release}.scexe", prev.file.trim_end_matches(".scexe").split("-r").next().unwrap_or("cp")),
            )
        };
        Component { file, version, data, change, ..prev.clone() }
    }
}

impl Iterator for Series {
    type Item = Release;

    fn next(&mut self) -> Option<Release> {
        if self.made == self.params.releases {
            return None;
        }
        let (id, date) = Series::release_id(self.made);
        let components = match self.prev.take() {
            None => (0..self.params.components).map(|i| self.first_component(i)).collect(),
            Some(prev) => {
                let made = self.made;
                prev.components.iter().map(|c| self.next_component(c, made)).collect()
            }
        };
        let release = Release { name: format!("Service Pack for ProLiant {id}"), id, date, components };
        self.made += 1;
        self.prev = Some(release.clone());
        Some(release)
    }
}

/// Quotes `s` as a TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Release {
    /// The release manifest (`release.toml`) that `fwrepo publish` reads.
    pub fn manifest(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "[release]\nid = {}\nname = {}\ndate = {}",
            toml_str(&self.id),
            toml_str(&self.name),
            toml_str(&self.date)
        );
        for c in &self.components {
            let models: Vec<String> = c.models.iter().map(|m| toml_str(m)).collect();
            let _ = writeln!(
                s,
                "\n[[component]]\nfile = {}\nname = {}\nkind = {}\nversion = {}\nmodels = [{}]",
                toml_str(&format!("firmware/{}", c.file)),
                toml_str(&c.name),
                toml_str(c.kind),
                toml_str(&c.version),
                models.join(", ")
            );
        }
        s
    }

    /// Writes `DIR/release.toml` and `DIR/firmware/<file>` for each component.
    pub fn write_to(&self, dir: &Path) -> io::Result<()> {
        let fw = dir.join("firmware");
        std::fs::create_dir_all(&fw)?;
        for c in &self.components {
            std::fs::write(fw.join(&c.file), &c.data)?;
        }
        std::fs::write(dir.join("release.toml"), self.manifest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_bytes_are_the_rng_stream_and_differ_by_seed() {
        assert_eq!(seeded_bytes(3, 1001), Rng::new(3).bytes(1001));
        assert_eq!(seeded_bytes(3, 1001), seeded_bytes(3, 1001));
        assert_eq!(seeded_bytes(3, 1001)[..500], seeded_bytes(3, 500)[..]);
        let (a, b) = (seeded_bytes(1, 4096), seeded_bytes(2, 4096));
        assert!(a.iter().zip(&b).filter(|(x, y)| x == y).count() < 64, "seeds 1 and 2 give alike bytes");
    }

    #[test]
    fn same_seed_same_series_and_releases_differ() {
        let a: Vec<Release> = Series::new(SeriesParams::small()).collect();
        let b: Vec<Release> = Series::new(SeriesParams::small()).collect();
        assert_eq!(a.len(), 3);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.id, y.id);
            for (cx, cy) in x.components.iter().zip(&y.components) {
                assert_eq!(cx.data, cy.data);
            }
        }
        let changed = a[1].components.iter().zip(&a[0].components).filter(|(n, o)| n.data != o.data).count();
        assert!(changed > 0 && changed < a[1].components.len(), "{changed}");
        for c in &a[1].components {
            if c.change != Change::Unchanged {
                assert_ne!(c.file, a[0].components.iter().find(|p| p.name == c.name).unwrap().file);
            }
        }
    }

    #[test]
    fn manifest_quotes_strings() {
        assert_eq!(toml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
        let r = Series::new(SeriesParams::small()).next().unwrap();
        let m = r.manifest();
        assert!(m.starts_with("[release]\nid = \"2014.03.0\""));
        assert_eq!(m.matches("[[component]]").count(), r.components.len());
    }

    #[test]
    fn mutations_change_what_they_say() {
        let mut rng = Rng::new(7);
        let base = firmware_image(&mut rng, 1 << 20);
        assert_eq!(base.len(), 1 << 20);
        assert_eq!(mutate(&mut rng, &base, Change::Unchanged), base);
        assert!(mutate(&mut rng, &base, Change::Insert).len() > base.len());
        assert!(mutate(&mut rng, &base, Change::Remove).len() < base.len());
        let patched = mutate(&mut rng, &base, Change::SmallPatch);
        assert_eq!(patched.len(), base.len());
        assert_ne!(patched, base);
    }
}
