//! `src/mapped.rs` (the binary maps replay's input file): a regular file maps byte for byte;
//! what cannot be mapped (empty, a directory) is declined, so the caller reads it instead;
//! pages given back after use read back as the file's bytes.

#[path = "../../src/mapped.rs"]
mod mapped;

use mapped::Mapped;
use std::io::Write;

#[test]
fn maps_a_file_byte_for_byte_and_declines_what_is_not_one() {
    let dir = std::env::temp_dir().join(format!("dialguard-mapped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("in.jsonl");
    let text: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&text)
        .unwrap();
    let m = Mapped::new(&std::fs::File::open(&path).unwrap()).expect("a regular file maps");
    assert_eq!(m.bytes(), &text[..]);
    // Parts done with give their pages back; read again, they are the file's bytes.
    use dialguard::replay::InMemory;
    m.done(1000..300_000);
    m.done(0..text.len());
    assert_eq!(m.bytes(), &text[..]);
    drop(m);
    let empty = dir.join("empty");
    std::fs::File::create(&empty).unwrap();
    assert!(Mapped::new(&std::fs::File::open(&empty).unwrap()).is_none());
    assert!(Mapped::new(&std::fs::File::open(&dir).unwrap()).is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}
