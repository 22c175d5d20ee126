//! The CSV side of an import, with no IO: which delimiter the file uses, its header row, the
//! first rows for the mapping screen, and the parser that turns the file into validated, sealed
//! batches for the writer. Values never appear in errors: a row error names the row and the column.

use super::{BATCH_ROWS, MAX_COLUMNS};
use crate::contacts::email_bidx;
use crate::contacts::record::{self, ContactRecord, SealedContact};
use crate::crypto::keyring::DataKey;
use crate::error::{ServiceError, ServiceResult};
use domain::Phi;
use domain::contacts::{CustomField, Dedupe};
use domain::ids::OrganisationId;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;
use tokio::sync::mpsc;
use uuid::Uuid;

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

fn csv_reader<R: Read>(r: R, delimiter: u8) -> csv::Reader<R> {
    csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(r)
}

/// The delimiters a file may use, in order of preference when several fit as well.
const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];
/// Rows (header included) looked at to tell the delimiter.
const SNIFF_ROWS: usize = 20;

/// Which delimiter the file uses (spreadsheets in many locales save CSV with semicolons; some
/// tools export tabs). The file is not told which, so the first rows decide, read by the `csv`
/// parser itself (quotes respected): a candidate must split the header into more than one column;
/// among those, the one under which most of the first rows have the header's width wins, then the
/// one with more columns, then the order above. When none splits the header, the file has one
/// column and the comma reads it. The same bytes always give the same answer, so the upload, the
/// preview and the job agree without storing it.
pub fn detect_delimiter(first_chunk: &[u8]) -> u8 {
    let mut best: Option<(usize, usize, u8)> = None;
    for d in DELIMITERS {
        let mut rdr = csv_reader(strip_bom(first_chunk), d);
        let mut rec = csv::ByteRecord::new();
        let mut width = 0;
        let mut fitting = 0;
        for i in 0..SNIFF_ROWS {
            match rdr.read_byte_record(&mut rec) {
                Ok(true) if i == 0 => {
                    width = rec.len();
                    fitting = 1;
                }
                Ok(true) => fitting += usize::from(rec.len() == width),
                _ => break,
            }
        }
        if width > 1 && best.is_none_or(|(f, w, _)| (fitting, width) > (f, w)) {
            best = Some((fitting, width, d));
        }
    }
    best.map_or(b',', |(_, _, d)| d)
}

/// The delimiter in words, for the mapping screen.
pub fn delimiter_name(d: u8) -> &'static str {
    match d {
        b';' => "semicolons",
        b'\t' => "tabs",
        _ => "commas",
    }
}

/// The header row (column names) of the file. `whole` says the chunk is the whole file: a file
/// with a header row and nothing under it is refused (an import of nobody is a mistake).
pub(super) fn read_headers(first_chunk: &[u8], whole: bool) -> ServiceResult<Vec<String>> {
    if first_chunk.contains(&0) {
        return Err(ServiceError::invalid("file", "is not a text CSV file (it contains binary data)"));
    }
    let mut rdr = csv_reader(strip_bom(first_chunk), detect_delimiter(first_chunk));
    let mut rec = csv::ByteRecord::new();
    match rdr.read_byte_record(&mut rec) {
        Ok(true) => {}
        Ok(false) => return Err(ServiceError::invalid("file", "has no header row")),
        Err(_) => return Err(ServiceError::invalid("file", "is not a CSV file Hermetic can read")),
    }
    if rec.len() > MAX_COLUMNS {
        return Err(ServiceError::invalid("file", format!("has more than {MAX_COLUMNS} columns")));
    }
    if rec.is_empty() || rec.iter().all(|f| f.trim_ascii().is_empty()) {
        return Err(ServiceError::invalid("file", "has an empty header row"));
    }
    let headers = rec.iter().map(|f| String::from_utf8_lossy(f).trim().chars().take(100).collect()).collect();
    if whole {
        let mut data = false;
        while let Ok(true) = rdr.read_byte_record(&mut rec) {
            if rec.iter().any(|f| !f.trim_ascii().is_empty()) {
                data = true;
                break;
            }
        }
        if !data {
            return Err(ServiceError::invalid(
                "file",
                "has a header row but no contacts under it: add one row per contact below the header and upload it again",
            ));
        }
    }
    Ok(headers)
}

/// The first `n` data rows under the header, for the mapping screen (cells cut to 200 characters,
/// invalid UTF-8 shown with replacement characters).
pub(super) fn preview_rows(data: &[u8], delimiter: u8, n: usize) -> Vec<Vec<Phi<String>>> {
    let mut rdr = csv_reader(strip_bom(data), delimiter);
    let mut rows = Vec::new();
    let mut rec = csv::ByteRecord::new();
    let mut first = true;
    while rows.len() < n {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) if first => first = false,
            Ok(true) => rows
                .push(rec.iter().map(|f| Phi::new(String::from_utf8_lossy(f).chars().take(200).collect())).collect()),
            _ => break,
        }
    }
    rows
}

/// A validated row ready to write, sealed for a new contact id (re-sealed if it updates one).
pub(super) struct Prepared {
    pub(super) bidx: Vec<u8>,
    pub(super) rec: ContactRecord,
    pub(super) new_id: Uuid,
    pub(super) sealed: SealedContact,
}

pub(super) struct RowError {
    pub(super) row: i64,
    pub(super) column: String,
    pub(super) message: String,
}

pub(super) struct Batch {
    pub(super) rows: Vec<Prepared>,
    pub(super) errors: Vec<RowError>,
    pub(super) last_row: i64,
    pub(super) bytes: u64,
    /// Rows that repeated an address already in this batch (merged, or skipped).
    pub(super) dup_updated: i64,
    pub(super) dup_skipped: i64,
    /// A row repeats an address of the previous batch: write this batch only after that one
    /// commits (two open transactions inserting one address would wait on each other).
    pub(super) after_previous: bool,
}

impl Batch {
    pub(super) fn new(last_row: i64) -> Self {
        Batch {
            rows: Vec::with_capacity(BATCH_ROWS),
            errors: Vec::new(),
            last_row,
            bytes: 0,
            dup_updated: 0,
            dup_skipped: 0,
            after_previous: false,
        }
    }
}

/// A later row for the same address fills in or overrides the earlier one's fields.
fn merge(into: &mut ContactRecord, from: ContactRecord) {
    into.first_name = from.first_name.or(into.first_name.take());
    into.last_name = from.last_name.or(into.last_name.take());
    into.phone = from.phone.or(into.phone.take());
    into.date_of_birth = from.date_of_birth.or(into.date_of_birth.take());
    into.time_zone = from.time_zone.or(into.time_zone.take());
    into.locale = from.locale.or(into.locale.take());
    into.attrs.extend(from.attrs);
    let mut phi = std::mem::take(&mut into.phi_attrs).into_inner();
    phi.extend(from.phi_attrs.into_inner());
    into.phi_attrs = Phi::new(phi);
}

/// A `Read` over decrypted chunks arriving on a channel (the parser runs on a blocking thread).
pub(super) struct ChunkReader {
    rx: mpsc::Receiver<Result<Vec<u8>, String>>,
    cur: Vec<u8>,
    pos: usize,
    first: bool,
}

impl ChunkReader {
    pub(super) fn new(rx: mpsc::Receiver<Result<Vec<u8>, String>>) -> Self {
        ChunkReader { rx, cur: Vec::new(), pos: 0, first: true }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos < self.cur.len() {
                let n = out.len().min(self.cur.len() - self.pos);
                out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match self.rx.blocking_recv() {
                Some(Ok(v)) => {
                    self.cur = v;
                    self.pos = 0;
                    if self.first {
                        self.first = false;
                        if self.cur.starts_with(b"\xEF\xBB\xBF") {
                            self.pos = 3;
                        }
                    }
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
    }
}

pub(super) struct ParseCtx {
    pub(super) org: OrganisationId,
    pub(super) mapping: Vec<Option<String>>,
    pub(super) columns: usize,
    pub(super) catalogue: Vec<CustomField>,
    pub(super) data_key: Arc<DataKey>,
    pub(super) bidx_key: Arc<DataKey>,
    pub(super) skip: i64,
    pub(super) dedupe: Dedupe,
    pub(super) delimiter: u8,
}

fn parse_row(ctx: &ParseCtx, row: i64, rec: &csv::ByteRecord) -> Result<Prepared, Vec<RowError>> {
    let err = |column: &str, message: &str| RowError { row, column: column.to_string(), message: message.to_string() };
    if rec.len() != ctx.columns {
        return Err(vec![err("(row)", &format!("has {} columns; the header has {}", rec.len(), ctx.columns))]);
    }
    let mut raw = BTreeMap::new();
    let mut errors = Vec::new();
    for (field, key) in rec.iter().zip(&ctx.mapping) {
        let Some(key) = key else { continue };
        match std::str::from_utf8(field) {
            Ok(v) => {
                raw.insert(key.clone(), Phi::new(v.to_string()));
            }
            Err(_) => errors.push(err(key, "is not valid UTF-8 text (save the file as UTF-8)")),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let rec = record::validate(&raw, &ctx.catalogue)
        .map_err(|es| es.into_iter().map(|e| err(&e.field, &e.message)).collect::<Vec<_>>())?;
    let new_id = Uuid::now_v7();
    let sealed =
        record::seal(&ctx.data_key, ctx.org, new_id, &rec).map_err(|_| vec![err("(row)", "could not be encrypted")])?;
    Ok(Prepared { bidx: email_bidx(&ctx.bidx_key, rec.email.expose()), rec, new_id, sealed })
}

/// Parse the stream on a blocking thread, sending validated, sealed batches. Returns Err with a
/// value-free message when the file cannot be read as CSV.
pub(super) fn parse_all(ctx: ParseCtx, reader: ChunkReader, out: mpsc::Sender<Batch>) -> Result<(), String> {
    let mut rdr = csv_reader(reader, ctx.delimiter);
    let mut rec = csv::ByteRecord::new();
    let mut row: i64 = -1; // the header row is row 0
    let mut batch = Batch::new(0);
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut previous: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map(|p| p.record() as i64).unwrap_or(row + 1);
                return Err(match e.kind() {
                    csv::ErrorKind::Io(_) => "the uploaded file could not be read back".to_string(),
                    _ => format!("the file is not valid CSV near row {at}"),
                });
            }
        }
        row += 1;
        if row == 0 || row <= ctx.skip {
            continue;
        }
        match parse_row(&ctx, row, &rec) {
            Ok(p) => match seen.get(&p.bidx) {
                Some(&i) if ctx.dedupe == Dedupe::Update => {
                    let earlier = &mut batch.rows[i];
                    merge(&mut earlier.rec, p.rec);
                    match record::seal(&ctx.data_key, ctx.org, earlier.new_id, &earlier.rec) {
                        Ok(s) => earlier.sealed = s,
                        Err(_) => batch.errors.push(RowError {
                            row,
                            column: "(row)".into(),
                            message: "could not be encrypted".into(),
                        }),
                    }
                    batch.dup_updated += 1;
                }
                Some(_) => batch.dup_skipped += 1,
                None => {
                    if previous.contains(&p.bidx) {
                        batch.after_previous = true;
                    }
                    seen.insert(p.bidx.clone(), batch.rows.len());
                    batch.rows.push(p);
                }
            },
            Err(es) => batch.errors.extend(es),
        }
        batch.last_row = row;
        if batch.rows.len() + batch.errors.len() >= BATCH_ROWS {
            batch.bytes = rdr.position().byte();
            previous = std::mem::take(&mut seen).into_keys().collect();
            let full = std::mem::replace(&mut batch, Batch::new(row));
            if out.blocking_send(full).is_err() {
                return Ok(()); // the writer stopped (cancelled or failed)
            }
        }
    }
    batch.bytes = rdr.position().byte();
    if batch.last_row > ctx.skip || !batch.rows.is_empty() || !batch.errors.is_empty() {
        let _ = out.blocking_send(batch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(columns: usize, mapping: &[Option<&str>], delimiter: u8, dedupe: Dedupe) -> ParseCtx {
        ParseCtx {
            org: OrganisationId(Uuid::now_v7()),
            mapping: mapping.iter().map(|m| m.map(str::to_string)).collect(),
            columns,
            catalogue: vec![],
            data_key: Arc::new(DataKey::for_benchmark([7; 32])),
            bidx_key: Arc::new(DataKey::for_benchmark([9; 32])),
            skip: 0,
            dedupe,
            delimiter,
        }
    }

    fn email_name(delimiter: u8) -> ParseCtx {
        ctx(2, &[Some("email"), Some("first_name")], delimiter, Dedupe::Update)
    }

    /// Feed `file` to the parser in chunks of `chunk` bytes (as the job does, from sealed chunks)
    /// and collect what it sends.
    fn run(ctx: ParseCtx, file: &[u8], chunk: usize) -> (Result<(), String>, Vec<Batch>) {
        let parts: Vec<Vec<u8>> = file.chunks(chunk.max(1)).map(<[u8]>::to_vec).collect();
        let (chunk_tx, chunk_rx) = mpsc::channel(parts.len().max(1));
        for p in parts {
            chunk_tx.try_send(Ok(p)).unwrap();
        }
        drop(chunk_tx);
        let (out_tx, mut out_rx) = mpsc::channel(64);
        let result = parse_all(ctx, ChunkReader::new(chunk_rx), out_tx);
        let mut batches = Vec::new();
        while let Ok(b) = out_rx.try_recv() {
            batches.push(b);
        }
        (result, batches)
    }

    fn names(b: &Batch) -> Vec<String> {
        b.rows.iter().map(|p| p.rec.first_name.as_ref().map(|n| n.expose().clone()).unwrap_or_default()).collect()
    }

    fn emails(b: &Batch) -> Vec<String> {
        b.rows.iter().map(|p| p.rec.email.expose().clone()).collect()
    }

    #[test]
    fn quoted_cells_keep_delimiters_and_doubled_quotes() {
        let file = b"email,first_name\n\"ann@example.com\",\"O\"\"Brien, Jr\"\n";
        let (r, batches) = run(email_name(b','), file, 1 << 20);
        assert_eq!(r, Ok(()));
        assert_eq!(batches.len(), 1);
        assert_eq!(names(&batches[0]), ["O\"Brien, Jr"]);
        assert!(batches[0].errors.is_empty());
    }

    #[test]
    fn a_quoted_newline_stays_in_its_cell_and_rows_count_records_not_lines() {
        let file = b"email,first_name\nann@example.com,\"Ann\nMarie\"\nbob@example.com,Bob\r\n";
        let (r, batches) = run(email_name(b','), file, 1 << 20);
        assert_eq!(r, Ok(()));
        assert_eq!(names(&batches[0]), ["Ann\nMarie", "Bob"]);
        assert_eq!(batches[0].last_row, 2, "two records, although three lines");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_header_or_cell() {
        let file = b"\xEF\xBB\xBFemail,first_name\nann@example.com,Ann\n";
        assert_eq!(read_headers(file, true).unwrap(), ["email", "first_name"]);
        assert_eq!(detect_delimiter(file), b',');
        let (r, batches) = run(email_name(b','), file, 2); // the BOM split over chunks
        assert_eq!(r, Ok(()));
        assert_eq!(emails(&batches[0]), ["ann@example.com"]);
        assert_eq!(preview_rows(file, b',', 5).len(), 1);
    }

    #[test]
    fn semicolon_and_tab_files_are_told_apart_from_commas() {
        let semi = b"email;first_name\nann@example.com;Ann, the first\nbob@example.com;Bob\n";
        assert_eq!(detect_delimiter(semi), b';');
        assert_eq!(delimiter_name(b';'), "semicolons");
        let (r, batches) = run(email_name(b';'), semi, 1 << 20);
        assert_eq!(r, Ok(()));
        assert_eq!(names(&batches[0]), ["Ann, the first", "Bob"]);
        assert_eq!(detect_delimiter(b"email\tname\na@example.com\tA\n"), b'\t');
        // A one-column file is read with commas.
        assert_eq!(detect_delimiter(b"email\na@example.com\n"), b',');
        // Quoted semicolons do not make a comma file a semicolon file.
        assert_eq!(detect_delimiter(b"email,note\na@example.com,\"x;y;z\"\n"), b',');
    }

    #[test]
    fn ragged_rows_are_row_errors_and_the_rest_of_the_file_still_imports() {
        let file = b"email,first_name\nann@example.com\nbob@example.com,Bob,extra\ncat@example.com,Cat\n";
        let (r, batches) = run(email_name(b','), file, 1 << 20);
        assert_eq!(r, Ok(()));
        let b = &batches[0];
        assert_eq!(emails(b), ["cat@example.com"]);
        let errs: Vec<(i64, &str, &str)> =
            b.errors.iter().map(|e| (e.row, e.column.as_str(), e.message.as_str())).collect();
        assert_eq!(
            errs,
            [(1, "(row)", "has 1 columns; the header has 2"), (2, "(row)", "has 3 columns; the header has 2")]
        );
    }

    #[test]
    fn invalid_utf8_in_a_mapped_column_is_named_without_its_value() {
        let file = b"email,first_name,ignored\nann@example.com,An\xFFn,x\nbob@example.com,Bob,\xFE\xFF\n";
        let c = ctx(3, &[Some("email"), Some("first_name"), None], b',', Dedupe::Update);
        let (r, batches) = run(c, file, 1 << 20);
        assert_eq!(r, Ok(()));
        let b = &batches[0];
        assert_eq!(emails(b), ["bob@example.com"], "an unmapped column's bytes do not matter");
        assert_eq!(b.errors.len(), 1);
        assert_eq!((b.errors[0].row, b.errors[0].column.as_str()), (1, "first_name"));
        assert_eq!(b.errors[0].message, "is not valid UTF-8 text (save the file as UTF-8)");
    }

    #[test]
    fn row_errors_never_carry_the_cell_value() {
        let file = b"email,first_name\nnot-an-address-secret,Ann\n";
        let (_, batches) = run(email_name(b','), file, 1 << 20);
        let b = &batches[0];
        assert!(b.rows.is_empty());
        assert_eq!(b.errors.len(), 1);
        assert_eq!(b.errors[0].column, "email");
        assert!(!b.errors[0].message.contains("secret"), "{}", b.errors[0].message);
    }

    #[test]
    fn empty_and_header_only_files_are_refused_with_a_reason() {
        let msg = |r: ServiceResult<Vec<String>>| match r {
            Err(ServiceError::Invalid(domain::DomainError::Invalid { reason, .. })) => reason,
            other => panic!("expected a field error, got {other:?}"),
        };
        assert_eq!(msg(read_headers(b"", true)), "has no header row");
        assert!(msg(read_headers(b"email,first_name\n", true)).starts_with("has a header row but no contacts"));
        assert!(msg(read_headers(b"email\n,\n\n", true)).starts_with("has a header row but no contacts"));
        assert_eq!(msg(read_headers(b" , \nann@example.com,Ann\n", true)), "has an empty header row");
        assert!(msg(read_headers(b"email\0,x\n", true)).contains("binary data"));
        let wide = vec!["c"; MAX_COLUMNS + 1].join(",");
        assert!(msg(read_headers(wide.as_bytes(), false)).contains("columns"));
        // The job on an empty stream sends nothing and does not fail.
        let (r, batches) = run(email_name(b','), b"", 1);
        assert_eq!(r, Ok(()));
        assert!(batches.is_empty());
    }

    #[test]
    fn cells_split_across_chunks_read_as_one() {
        let file = b"email,first_name\n\"ann@example.com\",\"A long, quoted\nname\"\nbob@example.com,Bob\n";
        for size in [1, 3, 7, 16] {
            let (r, batches) = run(email_name(b','), file, size);
            assert_eq!(r, Ok(()));
            assert_eq!(names(&batches[0]), ["A long, quoted\nname", "Bob"], "chunk size {size}");
        }
    }

    #[test]
    fn a_repeated_address_is_merged_or_skipped_as_the_dedupe_choice_says() {
        let file = b"email,first_name\nann@example.com,Ann\nANN@example.com,Annie\n";
        let (_, batches) = run(email_name(b','), file, 1 << 20);
        assert_eq!((names(&batches[0]), batches[0].dup_updated), (vec!["Annie".to_string()], 1));
        let skip = ctx(2, &[Some("email"), Some("first_name")], b',', Dedupe::Skip);
        let (_, batches) = run(skip, file, 1 << 20);
        assert_eq!((names(&batches[0]), batches[0].dup_skipped), (vec!["Ann".to_string()], 1));
    }

    #[test]
    fn a_resumed_import_skips_the_rows_already_committed() {
        let file = b"email\na@example.com\nb@example.com\nc@example.com\n";
        let mut c = ctx(1, &[Some("email")], b',', Dedupe::Update);
        c.skip = 2;
        let (_, batches) = run(c, file, 1 << 20);
        assert_eq!(emails(&batches[0]), ["c@example.com"]);
        assert_eq!(batches[0].last_row, 3);
    }

    #[test]
    fn an_unreadable_stream_fails_the_import_without_values() {
        let (chunk_tx, chunk_rx) = mpsc::channel(2);
        chunk_tx.try_send(Ok(b"email\nann@example.com\n".to_vec())).unwrap();
        chunk_tx.try_send(Err("the uploaded file could not be read back".to_string())).unwrap();
        drop(chunk_tx);
        let (out_tx, _out_rx) = mpsc::channel(4);
        let r = parse_all(ctx(1, &[Some("email")], b',', Dedupe::Update), ChunkReader::new(chunk_rx), out_tx);
        assert_eq!(r, Err("the uploaded file could not be read back".to_string()));
    }

    #[test]
    fn preview_cuts_long_cells_and_shows_invalid_utf8_as_replacement_characters() {
        let long = "x".repeat(500);
        let file = format!("email,note\na@example.com,{long}\nb@example.com,ok\n");
        let rows = preview_rows(file.as_bytes(), b',', 1);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][1].expose().chars().count(), 200);
        let rows = preview_rows(b"email\n\xFF@example.com\n", b',', 5);
        assert_eq!(rows[0][0].expose(), "\u{FFFD}@example.com");
    }
}
