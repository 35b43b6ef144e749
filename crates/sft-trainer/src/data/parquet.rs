//! Parquet files (as the hub's `data/train-*.parquet`) through arrow-rs, read column by column
//! into [`Cell`]s: `string` columns become text, `binary` columns keep their bytes (so invalid
//! UTF-8 is reported per row), nested columns (`messages: list<struct<role, content>>`) become
//! JSON. Only the snappy codec is compiled in, which is what `datasets`/pyarrow write.

use std::fs::File;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Number, Value};

use super::report::SkipReason;
use super::rows::{Cell, RawRow, RowContent};
use super::{Error, Result};

const BATCH_ROWS: usize = 1024;

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> Error {
    let mut detail = e.to_string();
    if detail.contains("compression") || detail.contains("feature") {
        detail.push_str(" (this build reads uncompressed and snappy-compressed parquet)");
    }
    Error::Parquet { path: path.to_path_buf(), detail }
}

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))
}

/// The top-level column names of a parquet file.
///
/// # Errors
/// [`Error::Io`] or [`Error::Parquet`] naming the file.
pub(crate) fn columns(path: &Path) -> Result<Vec<String>> {
    Ok(builder(path)?.schema().fields().iter().map(|f| f.name().clone()).collect())
}

/// Reads `columns` (which must exist) of the first `limit` rows.
///
/// # Errors
/// [`Error::Io`] or [`Error::Parquet`] naming the file.
pub(crate) fn read(path: &Path, columns: &[String], limit: Option<usize>) -> Result<Vec<RawRow>> {
    let builder = builder(path)?;
    let schema = builder.schema().clone();
    let indices = columns.iter().map(|c| schema.index_of(c).map_err(|e| parquet_error(path, e))).collect::<Result<Vec<usize>>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let mut builder = builder.with_projection(mask).with_batch_size(BATCH_ROWS);
    if let Some(limit) = limit {
        builder = builder.with_limit(limit);
    }
    let reader = builder.build().map_err(|e| parquet_error(path, e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        let mut per_column = Vec::with_capacity(columns.len());
        for name in columns {
            let array =
                batch.column_by_name(name).ok_or_else(|| parquet_error(path, format!("column `{name}` missing from a record batch")))?;
            per_column.push(cells(array.as_ref()));
        }
        for i in 0..batch.num_rows() {
            let fields = columns.iter().zip(&per_column).map(|(name, cells)| (name.clone(), cells[i].clone())).collect();
            rows.push(RawRow { row: rows.len(), line: None, content: RowContent::Fields(fields) });
        }
    }
    Ok(rows)
}

/// Every value of a column as a cell.
fn cells(array: &dyn Array) -> Vec<Cell> {
    let n = array.len();
    let each = |f: &dyn Fn(usize) -> Cell| (0..n).map(|i| if array.is_null(i) { Cell::Null } else { f(i) }).collect();
    match array.data_type() {
        DataType::Utf8 => each(&|i| Cell::Text(array.as_string::<i32>().value(i).to_string())),
        DataType::LargeUtf8 => each(&|i| Cell::Text(array.as_string::<i64>().value(i).to_string())),
        DataType::Utf8View => each(&|i| Cell::Text(array.as_string_view().value(i).to_string())),
        DataType::Binary => each(&|i| Cell::Bytes(array.as_binary::<i32>().value(i).to_vec())),
        DataType::LargeBinary => each(&|i| Cell::Bytes(array.as_binary::<i64>().value(i).to_vec())),
        DataType::BinaryView => each(&|i| Cell::Bytes(array.as_binary_view().value(i).to_vec())),
        DataType::FixedSizeBinary(_) => each(&|i| Cell::Bytes(array.as_fixed_size_binary().value(i).to_vec())),
        DataType::Dictionary(..) => {
            let dictionary = array.as_any_dictionary();
            let values = cells(dictionary.values().as_ref());
            let keys = dictionary.normalized_keys();
            each(&|i| keys.get(i).and_then(|k| values.get(*k)).cloned().unwrap_or(Cell::Null))
        }
        _ => each(&|i| match json_at(array, i) {
            Ok(value) => Cell::from_json(value),
            Err((reason, detail)) => Cell::Invalid(reason, detail),
        }),
    }
}

/// One value of any (nested) column as JSON.
fn json_at(array: &dyn Array, i: usize) -> std::result::Result<Value, (SkipReason, String)> {
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    let bytes = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map(Value::String)
            .map_err(|e| (SkipReason::NotUtf8, format!("invalid UTF-8 at byte {} of a nested value", e.utf8_error().valid_up_to())))
    };
    let float = |f: f64| Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null);
    let list =
        |values: &dyn Array| (0..values.len()).map(|j| json_at(values, j)).collect::<std::result::Result<Vec<_>, _>>().map(Value::Array);
    Ok(match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(i)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(i).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(i).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(i).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(i).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(i).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(i).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(i).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(i).into(),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(i).to_string()),
        DataType::Binary => bytes(array.as_binary::<i32>().value(i))?,
        DataType::LargeBinary => bytes(array.as_binary::<i64>().value(i))?,
        DataType::BinaryView => bytes(array.as_binary_view().value(i))?,
        DataType::List(_) => list(array.as_list::<i32>().value(i).as_ref())?,
        DataType::LargeList(_) => list(array.as_list::<i64>().value(i).as_ref())?,
        DataType::FixedSizeList(..) => list(array.as_fixed_size_list().value(i).as_ref())?,
        DataType::Struct(fields) => {
            let columns = array.as_struct().columns();
            let mut map = Map::new();
            for (field, column) in fields.iter().zip(columns) {
                map.insert(field.name().clone(), json_at(column.as_ref(), i)?);
            }
            Value::Object(map)
        }
        DataType::Dictionary(..) => {
            let dictionary = array.as_any_dictionary();
            match dictionary.normalized_keys().get(i) {
                Some(key) => json_at(dictionary.values().as_ref(), *key)?,
                None => Value::Null,
            }
        }
        other => return Err((SkipReason::WrongType, format!("unsupported parquet column type {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
    use arrow_array::{ArrayRef, BinaryArray, Int64Array, StringArray};
    use arrow_schema::{Field, Fields};

    use super::*;

    #[test]
    fn strings_binaries_and_nulls() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None]));
        assert_eq!(cells(text.as_ref()), vec![Cell::Text("a".into()), Cell::Null]);
        let bin: ArrayRef = Arc::new(BinaryArray::from(vec![b"\xff".as_ref(), b"ok".as_ref()]));
        assert_eq!(cells(bin.as_ref())[0], Cell::Bytes(vec![0xff]));
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![7]));
        assert_eq!(cells(ints.as_ref()), vec![Cell::Json(serde_json::json!(7))]);
    }

    #[test]
    fn messages_become_json() {
        let fields = Fields::from(vec![Field::new("role", DataType::Utf8, true), Field::new("content", DataType::Utf8, true)]);
        let structs = StructBuilder::new(fields, vec![Box::new(StringBuilder::new()), Box::new(StringBuilder::new())]);
        let mut list = ListBuilder::new(structs);
        for (role, content) in [("user", "hi"), ("assistant", "yo")] {
            let s = list.values();
            s.field_builder::<StringBuilder>(0).expect("role").append_value(role);
            s.field_builder::<StringBuilder>(1).expect("content").append_value(content);
            s.append(true);
        }
        list.append(true);
        let array = list.finish();
        assert_eq!(
            cells(&array),
            vec![Cell::Json(serde_json::json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]))]
        );
    }
}
