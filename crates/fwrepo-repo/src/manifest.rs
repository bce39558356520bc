//! Release manifests (`release.toml`): parsed with `deny_unknown_fields`, every field
//! validated and every file checked (exists, regular, readable) before anything is stored.
//!
//! ```toml
//! [release]
//! id = "2014.02.0"
//! name = "Service Pack for ProLiant 2014.02.0"
//! date = "2014-02-20"
//!
//! [[component]]
//! file = "firmware/cp022345.scexe"   # relative to the manifest
//! name = "iLO 4 Firmware"
//! kind = "firmware"
//! version = "1.40"
//! models = ["ProLiant DL380p Gen8", "ProLiant DL360p Gen8"]
//! ```
//!
//! Each component is published at target path `<release id>/<file name>`.

use std::path::{Component as PathComponent, Path, PathBuf};

use fwrepo_catalog::{ComponentName, Date, Kind, ModelName, ReleaseId, Version};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest manifest read, in bytes.
pub const MAX_MANIFEST_LEN: u64 = 16 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    release: RawRelease,
    #[serde(default)]
    component: Vec<RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    id: String,
    name: String,
    date: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    file: String,
    name: String,
    kind: String,
    version: String,
    models: Vec<String>,
}

/// A parsed, validated release manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Where it was read from.
    pub path: PathBuf,
    pub id: ReleaseId,
    pub name: String,
    pub date: Date,
    pub components: Vec<ManifestComponent>,
}

/// One component of a manifest.
#[derive(Clone, Debug)]
pub struct ManifestComponent {
    /// The file on disk (the manifest's `file`, joined to the manifest's directory).
    pub file: PathBuf,
    /// Target path `<release id>/<file name>`.
    pub target: fwrepo_tuf::TargetPath,
    pub name: ComponentName,
    pub kind: Kind,
    pub version: Version,
    pub models: Vec<ModelName>,
}

impl Manifest {
    /// Reads and validates the manifest at `path`, and checks that every file it names is a
    /// readable regular file.
    pub fn load(path: &Path) -> Result<Manifest> {
        let err = |field: &str, reason: String| Error::Manifest { path: path.to_owned(), field: field.into(), reason };
        let meta = std::fs::metadata(path).map_err(|e| err("file", e.to_string()))?;
        if meta.len() > MAX_MANIFEST_LEN {
            return Err(err("file", format!("{} bytes, more than {MAX_MANIFEST_LEN}", meta.len())));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err("file", e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Manifest::parse(path, &text, base)
    }

    /// Parses manifest `text` (read from `path`) whose files are relative to `base`.
    pub fn parse(path: &Path, text: &str, base: &Path) -> Result<Manifest> {
        let err = |field: &str, reason: String| Error::Manifest { path: path.to_owned(), field: field.into(), reason };
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            // toml's message spans several lines (it quotes the source); keep one line.
            let msg = e.message().to_owned();
            let at = e.span().map(|s| line_of(text, s.start)).map(|l| format!("line {l}")).unwrap_or("toml".into());
            err(&at, msg)
        })?;
        let id = ReleaseId::new(&raw.release.id).map_err(|e| err("release.id", e.to_string()))?;
        let date: Date =
            raw.release.date.parse().map_err(|e: fwrepo_catalog::Error| err("release.date", e.to_string()))?;
        if raw.component.is_empty() {
            return Err(err("component", "the release has no [[component]] entries".into()));
        }
        let mut components = Vec::with_capacity(raw.component.len());
        for (i, c) in raw.component.iter().enumerate() {
            let f = |name: &str| format!("component[{i}].{name}");
            let file = check_relative(&c.file).map_err(|r| err(&f("file"), format!("{:?}: {r}", c.file)))?;
            let file_name = file
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| err(&f("file"), format!("{:?}: no file name", c.file)))?;
            let target =
                fwrepo_tuf::TargetPath::new(format!("{id}/{file_name}")).map_err(|e| err(&f("file"), e.to_string()))?;
            let models = c
                .models
                .iter()
                .map(|m| ModelName::new(m.clone()))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| err(&f("models"), e.to_string()))?;
            components.push(ManifestComponent {
                file: base.join(&file),
                target,
                name: ComponentName::new(c.name.clone()).map_err(|e| err(&f("name"), e.to_string()))?,
                kind: c.kind.parse().map_err(|e: fwrepo_catalog::Error| err(&f("kind"), e.to_string()))?,
                version: Version::new(c.version.clone()).map_err(|e| err(&f("version"), e.to_string()))?,
                models,
            });
        }
        // Every file is checked before anything is stored.
        for (i, c) in components.iter().enumerate() {
            let field = format!("component[{i}].file");
            let meta = std::fs::metadata(&c.file).map_err(|e| err(&field, format!("{}: {e}", c.file.display())))?;
            if !meta.is_file() {
                return Err(err(&field, format!("{}: not a regular file", c.file.display())));
            }
            std::fs::File::open(&c.file).map_err(|e| err(&field, format!("{}: {e}", c.file.display())))?;
        }
        Ok(Manifest { path: path.to_owned(), id, name: raw.release.name, date, components })
    }
}

/// A manifest's `file` must stay below the manifest's directory.
fn check_relative(file: &str) -> std::result::Result<PathBuf, &'static str> {
    if file.is_empty() {
        return Err("empty");
    }
    let p = Path::new(file);
    for c in p.components() {
        match c {
            PathComponent::Normal(_) | PathComponent::CurDir => {}
            PathComponent::ParentDir => return Err("`..` is not allowed: files are relative to the manifest"),
            PathComponent::RootDir | PathComponent::Prefix(_) => {
                return Err("absolute paths are not allowed: files are relative to the manifest");
            }
        }
    }
    Ok(p.to_owned())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("fw")).unwrap();
        std::fs::write(dir.path().join("fw/a.bin"), b"a").unwrap();
        Manifest::parse(Path::new("release.toml"), text, dir.path())
    }

    const HEAD: &str = "[release]\nid = \"2014.02.0\"\nname = \"SPP\"\ndate = \"2014-02-20\"\n";
    const COMP: &str = "[[component]]\nfile = \"fw/a.bin\"\nname = \"iLO\"\nkind = \"firmware\"\nversion = \"1.40\"\nmodels = [\"DL380\"]\n";

    #[test]
    fn a_good_manifest_parses() {
        let m = parse(&format!("{HEAD}{COMP}")).unwrap();
        assert_eq!(m.id.as_str(), "2014.02.0");
        assert_eq!(m.components[0].target.as_str(), "2014.02.0/a.bin");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (format!("{HEAD}{COMP}extra = 1\n"), "line"),
            (format!("{HEAD}{}", COMP.replace("fw/a.bin", "../a.bin")), "component[0].file"),
            (format!("{HEAD}{}", COMP.replace("fw/a.bin", "/etc/passwd")), "component[0].file"),
            (format!("{HEAD}{}", COMP.replace("fw/a.bin", "fw/missing.bin")), "component[0].file"),
            (format!("{HEAD}{}", COMP.replace("fw/a.bin", "fw")), "component[0].file"),
            (format!("{HEAD}{}", COMP.replace("firmware", "bios")), "component[0].kind"),
            (format!("{HEAD}{}", COMP.replace("[\"DL380\"]", "[\"\"]")), "component[0].models"),
            (format!("{}{COMP}", HEAD.replace("2014-02-20", "2014-13-01")), "release.date"),
            (format!("{}{COMP}", HEAD.replace("\"2014.02.0\"", "\"a/b\"")), "release.id"),
            (HEAD.to_owned(), "component"),
        ];
        for (text, field) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.starts_with("release.toml: ") && e.contains(field), "{field}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}
