//! Subject id files: one UTF-8 id per line, one line per embedding row.

use std::path::Path;

use crate::error::{GalleryError, InputError};
use crate::format::validate_subject_id;

/// Reads an ids file, checking every id; errors name the file and line.
pub fn read_ids(path: impl AsRef<Path>) -> Result<Vec<String>, GalleryError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| GalleryError::io(path, e))?;
    let name = path.display().to_string();
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        InputError::BadId {
            what: format!("{name} line {line}"),
            reason: "not valid UTF-8".into(),
        }
    })?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Err(InputError::Empty(name).into());
    }
    let mut ids = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        let id = line.strip_suffix('\r').unwrap_or(line);
        validate_subject_id(id, &|| format!("{name} line {}", i + 1))?;
        ids.push(id.to_owned());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_and_names_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.txt");
        std::fs::write(&p, "a\r\nb\nb\n").unwrap();
        assert_eq!(read_ids(&p).unwrap(), ["a", "b", "b"]);
        std::fs::write(&p, "a\n\nc\n").unwrap();
        let err = read_ids(&p).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("empty"), "{err}");
        std::fs::write(&p, "").unwrap();
        assert!(read_ids(&p).unwrap_err().to_string().contains("no rows"));
    }
}
