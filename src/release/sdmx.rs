//! SDMX-CSV 2.0 data files and SDMX-JSON 2.0 structure files of a release
//! (docs/RELEASES.md §3, §4), written and read back.
//!
//! Data: `STRUCTURE,STRUCTURE_ID,ACTION,<dimensions>,OBS_VALUE,OBS_STATUS`,
//! one row per observation: `dataflow`, `REGISTRY:<ID>(1.0)`, `I`, the
//! codes, the count (empty when suppressed) and its observation status
//! (`observed`, `suppressed`, `zero`, the codes of `registry stats`).
//! Structure: one SDMX-JSON structure message per table holding its
//! dataflow, data structure definition, codelists and concept scheme.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::tables::{DataRow, DataTable, TableSpec, TOTAL_CODE};
use crate::projection::export::ObsStatus;

/// The maintenance agency of every artefact of a release.
pub const AGENCY: &str = "REGISTRY";
/// The version of every artefact.
pub const VERSION: &str = "1.0";
/// SDMX-JSON structure message schema the structure files follow.
pub const STRUCTURE_SCHEMA: &str =
    "https://raw.githubusercontent.com/sdmx-twg/sdmx-json/master/structure-message/tools/schemas/2.0.0/sdmx-json-structure-schema.json";

/// `REGISTRY:<ID>(1.0)`.
pub fn structure_id(spec: &TableSpec) -> String {
    format!("{AGENCY}:{}({VERSION})", spec.id)
}

/// The header row of a table's data file.
pub fn header(spec: &TableSpec) -> Vec<String> {
    ["STRUCTURE", "STRUCTURE_ID", "ACTION"]
        .into_iter()
        .map(String::from)
        .chain(spec.dims.iter().map(|(d, _)| d.to_string()))
        .chain(["OBS_VALUE".to_string(), "OBS_STATUS".to_string()])
        .collect()
}

/// The SDMX-CSV 2.0 bytes of a table (RFC 4180, `\n` line ends, UTF-8).
pub fn write_csv(t: &DataTable) -> Result<Vec<u8>, SdmxError> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(header(t.spec))?;
    let sid = structure_id(t.spec);
    for r in &t.rows {
        let mut rec = vec!["dataflow".to_string(), sid.clone(), "I".to_string()];
        rec.extend(r.key.iter().cloned());
        rec.push(r.value.map_or_else(String::new, |v| v.to_string()));
        rec.push(r.obs_status().as_str().to_string());
        w.write_record(&rec)?;
    }
    w.into_inner().map_err(|e| SdmxError::Flush(e.into_error()))
}

fn obs_status(code: &str) -> Option<ObsStatus> {
    ObsStatus::ALL.into_iter().find(|s| s.as_str() == code)
}

/// Why a data file could not be written, or a data or structure file does
/// not read back; a data file's errors name its row (1 is the header) and
/// the column.
#[derive(Debug, thiserror::Error)]
pub enum SdmxError {
    /// Writing a row of a data file failed.
    #[error(transparent)]
    Write(#[from] csv::Error),
    /// Flushing a written data file failed.
    #[error(transparent)]
    Flush(std::io::Error),
    /// The data file has no header row.
    #[error("empty file: no header row")]
    Empty,
    /// A row of the data file is not well-formed CSV.
    #[error("row {row}: {source}")]
    Csv {
        /// The file's row, 1-based (1 is the header).
        row: usize,
        /// The CSV reader's error.
        source: csv::Error,
    },
    /// The header row is not the table's.
    #[error("row 1: header is {found:?}, expected {expected:?}")]
    Header {
        /// The header in the file.
        found: Vec<String>,
        /// The table's header ([`header`]).
        expected: Vec<String>,
    },
    /// A row has another number of fields than the header.
    #[error("row {row}: {found} fields, expected {expected}")]
    FieldCount {
        /// The file's row, 1-based (1 is the header).
        row: usize,
        /// Fields in the row.
        found: usize,
        /// Fields in the table's header.
        expected: usize,
    },
    /// A row's first three fields are not `dataflow`, the table's
    /// structure id, `I`.
    #[error("row {row}: STRUCTURE,STRUCTURE_ID,ACTION are {},{},{}; expected dataflow,{structure_id},I", found[0], found[1], found[2])]
    Structure {
        /// The file's row, 1-based (1 is the header).
        row: usize,
        /// STRUCTURE, STRUCTURE_ID and ACTION as found.
        found: [String; 3],
        /// The table's structure id, `REGISTRY:<ID>(1.0)`.
        structure_id: String,
    },
    /// An `OBS_VALUE` of digits too large for a u64.
    #[error("row {row}: OBS_VALUE {value} does not fit in 64 bits")]
    ValueTooLarge {
        /// The file's row, 1-based (1 is the header).
        row: usize,
        /// The `OBS_VALUE` as found.
        value: String,
        /// The parser's error.
        source: std::num::ParseIntError,
    },
    /// An `OBS_VALUE` that is neither empty nor a decimal count without
    /// leading zeros.
    #[error("row {row}: OBS_VALUE {value:?} is not a count")]
    NotACount {
        /// The file's row, 1-based (1 is the header).
        row: usize,
        /// The `OBS_VALUE` as found.
        value: String,
    },
    /// An `OBS_STATUS` that is not `observed`, `suppressed` or `zero`.
    #[error("row {row}: OBS_STATUS {value:?} is not observed, suppressed or zero")]
    Status {
        /// The file's row, 1-based (1 is the header).
        row: usize,
        /// The `OBS_STATUS` as found.
        value: String,
    },
    /// An `OBS_STATUS` that contradicts the `OBS_VALUE` (empty is
    /// suppressed, 0 is zero, more is observed).
    #[error("row {row}: OBS_STATUS {status} does not match OBS_VALUE {value:?}")]
    StatusMismatch {
        /// The file's row, 1-based (1 is the header).
        row: usize,
        /// The `OBS_STATUS` as found.
        status: &'static str,
        /// The `OBS_VALUE` as found.
        value: String,
    },
    /// Two rows with the same dimension codes.
    #[error("row {row}: the key {key:?} appears twice")]
    DuplicateKey {
        /// The file's row of the second one, 1-based (1 is the header).
        row: usize,
        /// The dimension codes, in column order.
        key: Vec<String>,
    },
    /// The structure file is not JSON.
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A part of the structure file that is missing (the message names it).
    #[error("{0}")]
    Missing(&'static str),
    /// A dimension (this id) of the structure file has no `position`.
    #[error("dimension {0} has no position")]
    NoPosition(String),
    /// A dimension (this id) has no codelist enumeration URN.
    #[error("dimension {0} has no codelist")]
    NoCodelist(String),
    /// A dimension's codelist URN does not end in `:<id>(<version>)`.
    #[error("dimension {dimension}: codelist URN {urn:?} not understood")]
    CodelistUrn {
        /// The dimension's id.
        dimension: String,
        /// The URN as found.
        urn: String,
    },
    /// The codelist a dimension names is not among the file's codelists.
    #[error("codelist {codelist} of dimension {dimension} is missing")]
    CodelistMissing {
        /// The codelist id the URN names.
        codelist: String,
        /// The dimension's id.
        dimension: String,
    },
    /// A codelist (this id) has no `codes` array.
    #[error("codelist {0} has no codes")]
    NoCodes(String),
}

/// Reads a table's data file back, checking every row; errors name the
/// file's row (1 is the header) and the column.
pub fn read_csv(spec: &'static TableSpec, bytes: &[u8]) -> Result<DataTable, SdmxError> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes);
    let mut records = r.records();
    let head = records
        .next()
        .ok_or(SdmxError::Empty)?
        .map_err(|source| SdmxError::Csv { row: 1, source })?;
    let want = header(spec);
    if head.iter().ne(want.iter().map(String::as_str)) {
        return Err(SdmxError::Header {
            found: head.iter().map(String::from).collect(),
            expected: want,
        });
    }
    let sid = structure_id(spec);
    let n = spec.dims.len();
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, rec) in records.enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|source| SdmxError::Csv { row: line, source })?;
        let f: Vec<&str> = rec.iter().collect();
        if f.len() != want.len() {
            return Err(SdmxError::FieldCount {
                row: line,
                found: f.len(),
                expected: want.len(),
            });
        }
        if f[0] != "dataflow" || f[1] != sid || f[2] != "I" {
            return Err(SdmxError::Structure {
                row: line,
                found: [f[0].into(), f[1].into(), f[2].into()],
                structure_id: sid.clone(),
            });
        }
        let key: Vec<String> = f[3..3 + n].iter().map(|s| s.to_string()).collect();
        let value = match f[3 + n] {
            "" => None,
            v if v.bytes().all(|b| b.is_ascii_digit()) && (v == "0" || !v.starts_with('0')) => {
                Some(v.parse::<u64>().map_err(|source| SdmxError::ValueTooLarge {
                    row: line,
                    value: v.into(),
                    source,
                })?)
            }
            v => {
                return Err(SdmxError::NotACount {
                    row: line,
                    value: v.into(),
                })
            }
        };
        let status = obs_status(f[4 + n]).ok_or_else(|| SdmxError::Status {
            row: line,
            value: f[4 + n].into(),
        })?;
        let row = DataRow { key, value };
        if row.obs_status() != status {
            return Err(SdmxError::StatusMismatch {
                row: line,
                status: status.as_str(),
                value: f[3 + n].into(),
            });
        }
        if !seen.insert(row.key.clone()) {
            return Err(SdmxError::DuplicateKey {
                row: line,
                key: row.key,
            });
        }
        rows.push(row);
    }
    Ok(DataTable { spec, rows })
}

fn urn_concept(id: &str) -> String {
    format!("urn:sdmx:org.sdmx.infomodel.conceptscheme.Concept={AGENCY}:CS_RELEASE({VERSION}).{id}")
}

fn urn_codelist(id: &str) -> String {
    format!("urn:sdmx:org.sdmx.infomodel.codelist.Codelist={AGENCY}:{id}({VERSION})")
}

fn named(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name, "names": {"en": name}})
}

/// The codelist id of a coded dimension.
pub fn codelist_id(dim: &str) -> String {
    format!("CL_{dim}")
}

/// Codes of a codebook dimension (`codebook.dimensions.<dim>.codes`), plus
/// `_T` for status, plus any code found in the table but not listed.
fn code_list(
    codebook: &Value,
    dim: &str,
    sdmx_dim: &str,
    table: &DataTable,
    col: usize,
) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = codebook["dimensions"][dim]["codes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["code"].as_str().unwrap_or_default().to_string(),
                        c["label"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if sdmx_dim == "STATUS" {
        list.push((TOTAL_CODE.to_string(), "Total: every status".to_string()));
    }
    let mut extra: Vec<&String> = table
        .rows
        .iter()
        .map(|r| &r.key[col])
        .filter(|v| !list.iter().any(|(c, _)| c == *v))
        .collect();
    extra.sort();
    extra.dedup();
    for e in extra {
        list.push((
            e.clone(),
            "(not in the codebook's list: recorded as found in the log)".to_string(),
        ));
    }
    list
}

/// The SDMX-JSON 2.0 structure message of a table: its dataflow, data
/// structure definition (dimensions in column order, `TIME_PERIOD` as the
/// time dimension, measure `OBS_VALUE`, attribute `OBS_STATUS` at
/// observation level), the codelists of its coded dimensions and of
/// `OBS_STATUS`, and the concepts. `prepared`: the message's time (taken
/// from the log, so the file is reproducible).
pub fn structure(t: &DataTable, codebook: &Value, prepared: &str) -> Value {
    let spec = t.spec;
    let mut dimensions = Vec::new();
    let mut time_dimension = Value::Null;
    let mut codelists = Vec::new();
    let mut concepts = Vec::new();
    for (pos, (d, cb)) in spec.dims.iter().enumerate() {
        concepts.push(named(d, crate::projection::export::dim_description(cb)));
        if *d == "TIME_PERIOD" {
            time_dimension = json!({
                "id": d,
                "position": pos,
                "conceptIdentity": urn_concept(d),
                "localRepresentation": {"format": {"dataType": "GregorianYearMonth"}},
            });
            continue;
        }
        let cl = codelist_id(d);
        codelists.push(json!({
            "id": cl,
            "agencyID": AGENCY,
            "version": VERSION,
            "name": format!("Codes of {d}"),
            "names": {"en": format!("Codes of {d}")},
            "isFinal": true,
            "codes": code_list(codebook, cb, d, t, pos)
                .iter()
                .map(|(c, l)| named(c, l))
                .collect::<Vec<_>>(),
        }));
        dimensions.push(json!({
            "id": d,
            "position": pos,
            "conceptIdentity": urn_concept(d),
            "localRepresentation": {"enumeration": urn_codelist(&cl)},
        }));
    }
    codelists.push(json!({
        "id": "CL_OBS_STATUS",
        "agencyID": AGENCY,
        "version": VERSION,
        "name": "Observation status",
        "names": {"en": "Observation status"},
        "isFinal": true,
        "codes": codebook["obs_status"]
            .as_array()
            .map(|a| a.iter().map(|s| named(s["code"].as_str().unwrap_or_default(), s["definition"].as_str().unwrap_or_default())).collect::<Vec<_>>())
            .unwrap_or_default(),
    }));
    concepts.push(named("OBS_VALUE", "the count (empty when suppressed)"));
    concepts.push(named("OBS_STATUS", "observation status"));
    let mut dimension_list = json!({"id": "DimensionDescriptor", "dimensions": dimensions});
    if !time_dimension.is_null() {
        dimension_list["timeDimension"] = time_dimension;
    }
    let dsd = format!("DSD_{}", spec.id);
    json!({
        "meta": {
            "schema": STRUCTURE_SCHEMA,
            "id": format!("{}_STRUCTURE", spec.id),
            "test": false,
            "prepared": prepared,
            "contentLanguages": ["en"],
            "sender": {"id": AGENCY},
        },
        "data": {
            "dataflows": [{
                "id": spec.id,
                "agencyID": AGENCY,
                "version": VERSION,
                "name": spec.description,
                "names": {"en": spec.description},
                "isFinal": true,
                "structure": format!("urn:sdmx:org.sdmx.infomodel.datastructure.DataStructure={AGENCY}:{dsd}({VERSION})"),
            }],
            "dataStructures": [{
                "id": dsd,
                "agencyID": AGENCY,
                "version": VERSION,
                "name": spec.description,
                "names": {"en": spec.description},
                "isFinal": true,
                "dataStructureComponents": {
                    "dimensionList": dimension_list,
                    "measureList": {"id": "MeasureDescriptor", "measures": [{
                        "id": "OBS_VALUE",
                        "conceptIdentity": urn_concept("OBS_VALUE"),
                        "localRepresentation": {"format": {"dataType": "Integer", "minValue": 0}},
                        "usage": "optional",
                    }]},
                    "attributeList": {"id": "AttributeDescriptor", "attributes": [{
                        "id": "OBS_STATUS",
                        "conceptIdentity": urn_concept("OBS_STATUS"),
                        "localRepresentation": {"enumeration": urn_codelist("CL_OBS_STATUS")},
                        "attributeRelationship": {"observation": {}},
                        "usage": "mandatory",
                    }]},
                },
            }],
            "codelists": codelists,
            "conceptSchemes": [{
                "id": "CS_RELEASE",
                "agencyID": AGENCY,
                "version": VERSION,
                "name": "Concepts of a registry statistics release",
                "names": {"en": "Concepts of a registry statistics release"},
                "isFinal": true,
                "concepts": concepts,
            }],
        },
    })
}

/// What a verifier takes from a structure file: the dataflow id, the
/// dimension ids in column order, and each coded dimension's codes.
#[derive(Debug)]
pub struct ParsedStructure {
    /// The dataflow id.
    pub dataflow: String,
    /// The dimension ids, in column order.
    pub dims: Vec<String>,
    /// Each coded dimension's codes, by dimension id.
    pub codes: BTreeMap<String, Vec<String>>,
}

/// Reads a structure file back (the parts [`ParsedStructure`] names).
pub fn read_structure(bytes: &[u8]) -> Result<ParsedStructure, SdmxError> {
    let v: Value = serde_json::from_slice(bytes).map_err(SdmxError::Json)?;
    let data = &v["data"];
    let dataflow = data["dataflows"][0]["id"]
        .as_str()
        .ok_or(SdmxError::Missing("data.dataflows[0].id is missing"))?
        .to_string();
    let comps = &data["dataStructures"][0]["dataStructureComponents"]["dimensionList"];
    let mut dims: Vec<(u64, String)> = Vec::new();
    let mut codes = BTreeMap::new();
    for d in comps["dimensions"]
        .as_array()
        .ok_or(SdmxError::Missing("dimensionList.dimensions is missing"))?
    {
        let id = d["id"]
            .as_str()
            .ok_or(SdmxError::Missing("a dimension has no id"))?
            .to_string();
        let pos = d["position"]
            .as_u64()
            .ok_or_else(|| SdmxError::NoPosition(id.clone()))?;
        let urn = d["localRepresentation"]["enumeration"]
            .as_str()
            .ok_or_else(|| SdmxError::NoCodelist(id.clone()))?;
        let cl_id = urn
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split_once('('))
            .map(|(id, _)| id)
            .ok_or_else(|| SdmxError::CodelistUrn {
                dimension: id.clone(),
                urn: urn.into(),
            })?;
        let cl = data["codelists"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == cl_id))
            .ok_or_else(|| SdmxError::CodelistMissing {
                codelist: cl_id.into(),
                dimension: id.clone(),
            })?;
        let list: Vec<String> = cl["codes"]
            .as_array()
            .ok_or_else(|| SdmxError::NoCodes(cl_id.into()))?
            .iter()
            .filter_map(|c| c["id"].as_str().map(String::from))
            .collect();
        codes.insert(id.clone(), list);
        dims.push((pos, id));
    }
    if let Some(t) = comps.get("timeDimension") {
        let id = t["id"]
            .as_str()
            .ok_or(SdmxError::Missing("timeDimension has no id"))?
            .to_string();
        let pos = t["position"]
            .as_u64()
            .ok_or(SdmxError::Missing("timeDimension has no position"))?;
        dims.push((pos, id));
    }
    dims.sort();
    Ok(ParsedStructure {
        dataflow,
        dims: dims.into_iter().map(|(_, d)| d).collect(),
        codes,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tables::TABLES;
    use super::*;

    #[test]
    fn a_table_round_trips_and_a_flag_that_contradicts_its_value_is_refused() {
        let t = DataTable {
            spec: &TABLES[1],
            rows: vec![
                DataRow {
                    key: vec!["05".into(), "IRREGULAR".into()],
                    value: Some(12),
                },
                DataRow {
                    key: vec!["08".into(), "IRREGULAR".into()],
                    value: None,
                },
                DataRow {
                    key: vec!["11".into(), "IRREGULAR".into()],
                    value: Some(0),
                },
            ],
        };
        let bytes = write_csv(&t).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            "STRUCTURE,STRUCTURE_ID,ACTION,DEPARTMENT,STATUS,OBS_VALUE,OBS_STATUS\n\
             dataflow,REGISTRY:CASELOAD_DEPARTMENT_STATUS(1.0),I,05,IRREGULAR,12,observed\n\
             dataflow,REGISTRY:CASELOAD_DEPARTMENT_STATUS(1.0),I,08,IRREGULAR,,suppressed\n\
             dataflow,REGISTRY:CASELOAD_DEPARTMENT_STATUS(1.0),I,11,IRREGULAR,0,zero\n"
        );
        assert_eq!(read_csv(&TABLES[1], &bytes).unwrap(), t);
        let bad = text.replace("12,observed", "12,zero");
        let e = read_csv(&TABLES[1], bad.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("row 2: OBS_STATUS zero"), "{e}");
        let bad = text.replace(",,suppressed", ",007,observed");
        assert!(read_csv(&TABLES[1], bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("not a count"));
    }
}
