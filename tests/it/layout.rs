//! The architecture rule, checked: the engine is pure. Nothing under `src/engine/` may use an
//! async runtime, Kafka, metrics, logging, a concurrent map, the wall clock or I/O.

use std::path::Path;

#[test]
fn the_engine_imports_no_edges() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let crates = [
        "tokio",
        "rdkafka",
        "prometheus",
        "tracing",
        "dashmap",
        "log",
    ];
    let mut banned: Vec<String> = crates
        .iter()
        .flat_map(|c| [format!("{c}::"), format!("use {c}")])
        .collect();
    banned.extend(
        [
            "std::time::Instant",
            "SystemTime",
            "Timestamp::now",
            "std::fs",
            "std::net",
            "std::io",
            "println!",
            "eprintln!",
        ]
        .map(String::from),
    );
    let mut files = 0;
    let mut dirs = vec![dir];
    let mut paths = Vec::new();
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                paths.push(p);
            }
        }
    }
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        files += 1;
        for b in &banned {
            assert!(
                !text.contains(b.as_str()),
                "{} mentions {b}: the engine must stay pure",
                p.display()
            );
        }
    }
    assert!(files >= 10);
}
