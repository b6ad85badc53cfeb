//! The RAM each type takes, pinned with `core::mem::size_of` on 64-bit targets.
//!
//! smolsock promises fixed memory: everything a connection needs is in these
//! types and the socket buffers the caller hands in. The numbers below are exact,
//! so any change to a type's size shows up here and the table in MEMORY.md (and
//! the README) can be updated with it. Run with `--nocapture` to print the table.
//!
//! On 32-bit targets (thumbv7em) pointers, `usize` and `SocketHandle` are half the
//! size, so most types shrink a little. The table (`memory/table.rs`) pins those
//! figures too, and the `no_std` crate in `tests/thumb` includes the same table
//! and does not build for `thumbv7em-none-eabihf` unless each is the size there;
//! MEMORY.md and the README must show them.

/// A row of the table: the type's name, what it holds, its size here, and the
/// bytes MEMORY.md gives it on a 64-bit target and on thumbv7em.
type Row = (&'static str, &'static str, usize, usize, usize);

macro_rules! sizes {
    ($(($name:literal, $what:literal, $size:expr, $bits64:literal, $thumb:literal)),* $(,)?) => {
        /// Each type, what it is, its size here, and its pinned sizes.
        fn table() -> Vec<Row> {
            vec![$(($name, $what, $size, $bits64, $thumb)),*]
        }
    };
}

include!("memory/table.rs");

#[test]
#[cfg(target_pointer_width = "64")]
fn every_type_takes_the_pinned_number_of_bytes() {
    println!("| type | bytes (64-bit) | what |");
    println!("|---|---:|---|");
    for (name, what, size, ..) in table() {
        println!("| `{name}` | {size} | {what} |");
    }
    let wrong: Vec<String> = table()
        .into_iter()
        .filter(|(_, _, size, pinned, _)| size != pinned)
        .map(|(name, _, size, pinned, _)| format!("{name}: {size} bytes, pinned {pinned}"))
        .collect();
    assert!(wrong.is_empty(), "sizes changed:\n{}", wrong.join("\n"));
}

/// The 64-bit column of the size table under `heading` in a document, by type name.
fn documented_sizes(text: &str, heading: &str) -> Vec<(String, usize)> {
    documented_columns(text, heading)
        .into_iter()
        .map(|(name, bits64, _)| (name, bits64))
        .collect()
}

/// Both columns (64-bit, thumbv7em) of the size table under `heading`, by type
/// name.
fn documented_columns(text: &str, heading: &str) -> Vec<(String, usize, usize)> {
    let number = |cell: &str| cell.replace(',', "").parse().ok();
    text.lines()
        .skip_while(|line| !line.starts_with(heading))
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // "", "`type`", "64-bit", "thumbv7em", "what", ""
            let name = cells.get(1)?.replace('`', "");
            Some((name, number(cells.get(2)?)?, number(cells.get(3)?)?))
        })
        .collect()
}

/// The measured size of the type a document names (`TcpServer<_, N>, fixed part`
/// there is `TcpServer<_, N>: fixed part` here).
fn measured(name: &str) -> Option<usize> {
    table()
        .into_iter()
        .find(|(measured, ..)| measured.replace(": ", ", ") == name)
        .map(|(_, _, size, ..)| size)
}

/// Every row of the document's table shows the measured size.
fn mismatches(document: &str, rows: &[(String, usize)]) -> Vec<String> {
    rows.iter()
        .filter_map(|(name, bytes)| match measured(name) {
            Some(size) if size == *bytes => None,
            Some(size) => Some(format!("{document}: {name} is {bytes}, measured {size}")),
            None => Some(format!(
                "{document}: {name} is not measured by tests/memory.rs"
            )),
        })
        .collect()
}

#[test]
#[cfg(target_pointer_width = "64")]
fn memory_md_shows_the_measured_size_of_every_type() {
    let rows = documented_sizes(include_str!("../MEMORY.md"), "## Size of each type");
    let mut wrong = mismatches("MEMORY.md", &rows);
    for (name, _, size, ..) in table() {
        let key = name.replace(": ", ", ");
        if !rows.iter().any(|(doc, _)| *doc == key) {
            wrong.push(format!("MEMORY.md: {name} is missing ({size} bytes)"));
        }
    }
    assert!(wrong.is_empty(), "out of date:\n{}", wrong.join("\n"));
}

#[test]
#[cfg(target_pointer_width = "64")]
fn readme_memory_table_shows_measured_sizes() {
    let rows = documented_sizes(include_str!("../README.md"), "## Memory");
    assert!(
        rows.len() >= 8,
        "the README's memory table is missing: {rows:?}"
    );
    let wrong = mismatches("README.md", &rows);
    assert!(wrong.is_empty(), "out of date:\n{}", wrong.join("\n"));
}

/// The thumbv7em column: what `tests/memory/table.rs` pins, which a build of
/// `tests/thumb` for thumbv7em-none-eabihf checks against the real sizes (CI
/// runs it); MEMORY.md and the README must show those figures, and no type is
/// larger on a 32-bit target than on a 64-bit one.
#[test]
fn readme_and_memory_md_show_the_pinned_thumbv7em_sizes() {
    let pinned = |name: &str| {
        table()
            .into_iter()
            .find(|(pinned, ..)| pinned.replace(": ", ", ") == name)
            .map(|(.., thumb)| thumb)
    };
    let memory = documented_columns(include_str!("../MEMORY.md"), "## Size of each type");
    let readme = documented_columns(include_str!("../README.md"), "## Memory");
    assert!(readme.len() >= 8, "the README's memory table is missing");
    let mut wrong = Vec::new();
    for (document, rows) in [("MEMORY.md", &memory), ("README.md", &readme)] {
        for (name, bits64, thumb) in rows {
            match pinned(name) {
                Some(size) if size == *thumb => {}
                Some(size) => wrong.push(format!(
                    "{document}: {name} is {thumb} on thumbv7em, pinned {size}"
                )),
                None => wrong.push(format!("{document}: {name} is not in the table")),
            }
            if thumb > bits64 {
                wrong.push(format!(
                    "{document}: {name} is {thumb} on thumbv7em, {bits64} on 64-bit"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "out of date:\n{}", wrong.join("\n"));
}
