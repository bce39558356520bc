//! CSV and JSON forms of entitlement records: parsing an import file into a [`RecordSet`]
//! (pure, all or nothing) and writing records back out.
//!
//! A CSV file holds one kind of record, told by its header row (see
//! [`RecordKind::csv_header`]); list fields separate items with `;`; dates are ISO 8601
//! (`2025-12-31`); booleans are `true`/`false`. A JSON file is one object with any of the keys
//! `serials`, `agreements`, `partners`, each an array of records whose field names are the CSV
//! header names — the same document [`to_json`] writes.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::marker::PhantomData;

use chrono::NaiveDate;
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::ids::{AgreementId, Level, Model, ModelSet, PartnerId, Serial};
use crate::records::{Agreement, CredentialHash, Partner, RecordKind, SerialRecord, Status};

/// Records read from one import file, applied together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSet {
    #[serde(default, deserialize_with = "unique")]
    pub serials: Vec<SerialRecord>,
    #[serde(default, deserialize_with = "unique")]
    pub agreements: Vec<Agreement>,
    #[serde(default, deserialize_with = "unique")]
    pub partners: Vec<Partner>,
}

impl RecordSet {
    pub fn len(&self) -> usize {
        self.serials.len() + self.agreements.len() + self.partners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses an import file. `file` names it in errors; the format is JSON when the first
/// non-blank byte is `{`, CSV otherwise. A UTF-8 byte-order mark is skipped.
pub fn parse(file: &str, bytes: &[u8]) -> Result<RecordSet> {
    // Spreadsheet programs like to start their CSV exports with a byte-order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') { parse_json(file, bytes) } else { parse_csv(file, bytes) }
}

/// Parses the JSON form.
pub fn parse_json(file: &str, bytes: &[u8]) -> Result<RecordSet> {
    serde_json::from_slice(bytes).map_err(|e| Error::Import {
        file: file.to_owned(),
        line: e.line() as u64,
        column: e.column() as u64,
        field: "json".to_owned(),
        reason: strip_position(&e.to_string()),
    })
}

/// serde_json appends " at line L column C" to its messages; we report those separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Parses the CSV form.
pub fn parse_csv(file: &str, bytes: &[u8]) -> Result<RecordSet> {
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(bytes);
    let mut rows = reader.records();
    let header = match rows.next() {
        None => return Err(Row { file, line: 1, columns: &["header"] }.error(0, "empty file: no header row")),
        Some(Err(e)) => return Err(csv_error(file, &e)),
        Some(Ok(h)) => h,
    };
    let names: Vec<&str> = header.iter().collect();
    let Some(kind) = RecordKind::ALL.into_iter().find(|k| k.csv_header() == names.as_slice()) else {
        let expected = RecordKind::ALL.iter().map(|k| k.csv_header().join(",")).collect::<Vec<_>>().join(" | ");
        let reason = format!("header is not one of: {expected}");
        return Err(Row { file, line: 1, columns: &["header"] }.error(0, reason));
    };
    let columns = kind.csv_header();

    let mut set = RecordSet::default();
    let mut seen = HashSet::new();
    for record in rows {
        let record = record.map_err(|e| csv_error(file, &e))?;
        let at = Row { file, line: record.position().map(|p| p.line()).unwrap_or(0), columns };
        if record.len() != columns.len() {
            let reason = format!("{} fields, expected {}", record.len(), columns.len());
            return Err(at.error(record.len().min(columns.len()), reason));
        }
        let r = &record;
        let key = match kind {
            RecordKind::Serials => {
                let rec = SerialRecord {
                    serial: at.cell(r, 0, Serial::new)?,
                    model: at.cell(r, 1, Model::new)?,
                    warranty_end: at.cell(r, 2, date)?,
                };
                let key = rec.serial.to_string();
                set.serials.push(rec);
                key
            }
            RecordKind::Agreements => {
                let rec = Agreement {
                    id: at.cell(r, 0, AgreementId::new)?,
                    serials: at.cell(r, 1, serial_list)?,
                    models: at.cell(r, 2, ModelSet::parse_list)?,
                    start: at.cell(r, 3, date)?,
                    end: at.cell(r, 4, date)?,
                    status: at.cell(r, 5, Status::parse)?,
                };
                if rec.serials.is_empty() && rec.models.is_empty() {
                    return Err(at.error(1, "agreement covers no serial and no model"));
                }
                if rec.end < rec.start {
                    return Err(at.error(4, "end is before start"));
                }
                let key = rec.id.to_string();
                set.agreements.push(rec);
                key
            }
            RecordKind::Partners => {
                let rec = Partner {
                    id: at.cell(r, 0, PartnerId::new)?,
                    name: r[1].to_owned(),
                    level: at.cell(r, 2, Level::new)?,
                    status: at.cell(r, 3, Status::parse)?,
                    models: at.cell(r, 4, ModelSet::parse_list)?,
                    may_mirror: at.cell(r, 5, boolean)?,
                    credential_sha256: at.cell(r, 6, credential)?,
                };
                rec.validate().map_err(|e| at.error(1, reason_of(e)))?;
                let key = rec.id.to_string();
                set.partners.push(rec);
                key
            }
        };
        if !seen.insert(key.clone()) {
            return Err(at.error(0, format!("{key} appears twice in this file")));
        }
    }
    Ok(set)
}

/// Where a CSV row is, to place errors at its line and column.
struct Row<'a> {
    file: &'a str,
    line: u64,
    columns: &'a [&'a str],
}

impl Row<'_> {
    /// An error at 0-based column `i`.
    fn error(&self, i: usize, reason: impl Into<String>) -> Error {
        Error::Import {
            file: self.file.to_owned(),
            line: self.line,
            column: i as u64 + 1,
            field: self.columns.get(i).copied().unwrap_or("(extra field)").to_owned(),
            reason: reason.into(),
        }
    }

    /// Parses column `i` of `record` with `parse`.
    fn cell<T>(&self, record: &csv::StringRecord, i: usize, parse: impl FnOnce(&str) -> Result<T>) -> Result<T> {
        parse(&record[i]).map_err(|e| self.error(i, reason_of(e)))
    }
}

fn reason_of(e: Error) -> String {
    match e {
        Error::Invalid { what, value, reason } => format!("invalid {what} {value:?}: {reason}"),
        other => other.to_string(),
    }
}

fn csv_error(file: &str, e: &csv::Error) -> Error {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    Error::Import { file: file.to_owned(), line, column: 1, field: "csv".to_owned(), reason: e.to_string() }
}

fn date(v: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| Error::invalid("date", v, "must be YYYY-MM-DD"))
}

fn serial_list(v: &str) -> Result<BTreeSet<Serial>> {
    v.split(';').map(str::trim).filter(|s| !s.is_empty()).map(Serial::new).collect()
}

fn boolean(v: &str) -> Result<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::invalid("boolean", v, "must be true or false")),
    }
}

fn credential(v: &str) -> Result<Option<CredentialHash>> {
    if v.is_empty() { Ok(None) } else { CredentialHash::from_hex(v).map(Some) }
}

/// Records with a key that must be unique within one file.
trait Keyed {
    fn key(&self) -> String;
}

impl Keyed for SerialRecord {
    fn key(&self) -> String {
        self.serial.to_string()
    }
}

impl Keyed for Agreement {
    fn key(&self) -> String {
        self.id.to_string()
    }
}

impl Keyed for Partner {
    fn key(&self) -> String {
        self.id.to_string()
    }
}

/// Deserializes an array, failing on the first duplicate key and on the first record that
/// fails validation — inside the deserializer, so that serde_json reports the position.
fn unique<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Keyed + Validate,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de> + Keyed + Validate> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Vec<T>, A::Error> {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            while let Some(rec) = seq.next_element::<T>()? {
                rec.check().map_err(|e| serde::de::Error::custom(reason_of(e)))?;
                if !seen.insert(rec.key()) {
                    return Err(serde::de::Error::custom(format!("{} appears twice in this file", rec.key())));
                }
                out.push(rec);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V(PhantomData))
}

trait Validate {
    fn check(&self) -> Result<()>;
}

impl Validate for SerialRecord {
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

impl Validate for Agreement {
    fn check(&self) -> Result<()> {
        self.validate()
    }
}

impl Validate for Partner {
    fn check(&self) -> Result<()> {
        self.validate()
    }
}

/// Writes `set` as one JSON document (the form [`parse_json`] reads).
pub fn to_json(set: &RecordSet) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(set).expect("records serialize to JSON");
    out.push(b'\n');
    out
}

/// Writes the records of `kind` in `set` as CSV with its header row.
pub fn to_csv(set: &RecordSet, kind: RecordKind) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to a Vec cannot fail; the only errors csv reports here are IO errors.
    let mut row = |fields: &[&str]| w.write_record(fields).expect("CSV into memory");
    row(kind.csv_header());
    match kind {
        RecordKind::Serials => {
            for r in &set.serials {
                row(&[r.serial.as_str(), r.model.as_str(), &r.warranty_end.to_string()]);
            }
        }
        RecordKind::Agreements => {
            for r in &set.agreements {
                let serials = r.serials.iter().map(Serial::as_str).collect::<Vec<_>>().join(";");
                row(&[
                    r.id.as_str(),
                    &serials,
                    &r.models.to_list(),
                    &r.start.to_string(),
                    &r.end.to_string(),
                    r.status.as_str(),
                ]);
            }
        }
        RecordKind::Partners => {
            for r in &set.partners {
                let cred = r.credential_sha256.map(|c| c.to_hex()).unwrap_or_default();
                row(&[
                    r.id.as_str(),
                    &r.name,
                    r.level.as_str(),
                    r.status.as_str(),
                    &r.models.to_list(),
                    if r.may_mirror { "true" } else { "false" },
                    &cred,
                ]);
            }
        }
    }
    w.into_inner().expect("CSV into memory")
}
