//! examples/herald.toml documents every setting: it must stay a file herald accepts,
//! including the commented-out `[[apps]]` table once uncommented.

use herald::config::FileConfig;

const EXAMPLE: &str = include_str!("../examples/herald.toml");

#[test]
fn the_example_file_parses() {
    toml::from_str::<FileConfig>(EXAMPLE).expect("examples/herald.toml is valid");
}

#[test]
fn every_commented_setting_parses_when_uncommented() {
    let uncommented: String = EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") || rest.starts_with("[[") => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(uncommented.contains("\n[[apps]]"));
    assert!(uncommented.contains("\nrequirepass = "));
    toml::from_str::<FileConfig>(&uncommented).expect("uncommented example is valid");
}
